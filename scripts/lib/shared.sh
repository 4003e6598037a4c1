# Sourced by the scripts that use ../shared (the benchmarks' anchors and load
# generators): present for the developers and for CI, absent for someone who cloned
# the repository alone.
#
#   shared_absent WHO WHAT   says that WHAT (under ../shared) is absent and exits:
#                            2 (the step is skipped), or 1 (a failure) under CI=true
#   shared_c_reference WHO DIR
#                            builds ../shared/bench's C liburing reference server as
#                            DIR/c-uring (absent: shared_absent); needs ROOT, cc and
#                            liburing-dev
#   BENCH_HTTP_FIELDS        wrk's -H arguments for the request ../shared/bench/http.sh
#                            sends, so that every measuring script loads the same way
shared_absent() {
    if [ "${CI:-}" = true ]; then
        echo "$1: $2 absent (../shared); under CI=true that is a failure" >&2
        exit 1
    fi
    echo "$1: $2 absent (../shared), skipped" >&2
    exit 2
}

shared_c_reference() {
    local src="${ROOT:?}/../shared/bench/anchors/c-uring/server.c"
    [ -f "$src" ] || shared_absent "$1" "$src"
    cc -O2 -o "$2/c-uring" "$src" -I"$ROOT/../shared/bench/tools" -luring
}

# shellcheck disable=SC2034  # used by the scripts that source this file
BENCH_HTTP_FIELDS=(-H 'Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7'
                   -H 'Connection: keep-alive')
