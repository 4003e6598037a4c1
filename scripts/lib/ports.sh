# Sourced by scripts that start servers on fixed port offsets (soak.sh,
# cluster-smoke.sh).
#
#   free_base LOW HIGH OFFSET...   prints a port P in [LOW, HIGH) such that P+OFFSET
#                                  is free on 127.0.0.1 for every OFFSET (choose a
#                                  range below the kernel's ephemeral ports, which
#                                  start at 32768)
free_base() {
  python3 - "$@" <<'PY'
import random, socket, sys
low, high, offsets = int(sys.argv[1]), int(sys.argv[2]), [int(o) for o in sys.argv[3:]]
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    p = random.randrange(low, high)
    if all(free(p + o) for o in offsets):
        print(p)
        sys.exit(0)
sys.exit("no free ports")
PY
}
