# Sourced by the scripts that use ../shared (the benchmarks' anchors and load
# generators): present for the developers and for CI, absent for someone who cloned
# the repository alone.
#
#   shared_absent WHO WHAT   says that WHAT (under ../shared) is absent and exits:
#                            2 (the step is skipped), or 1 (a failure) under CI=true
shared_absent() {
    if [ "${CI:-}" = true ]; then
        echo "$1: $2 absent (../shared); under CI=true that is a failure" >&2
        exit 1
    fi
    echo "$1: $2 absent (../shared), skipped" >&2
    exit 2
}
