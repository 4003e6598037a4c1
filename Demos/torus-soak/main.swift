print("torus-soak: not yet")
