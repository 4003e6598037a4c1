# Sourced by scripts that start servers on a port of their own: on fixed port
# offsets (soak.sh, cluster-smoke.sh), or on one port the kernel picks (the
# measuring scripts).
#
#   free_port                      prints a port that is free on 127.0.0.1 now (the
#                                  kernel's choice, from its ephemeral range)
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

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
