# Sourced by the measuring scripts that run one server at a time in a scratch folder
# (server-callgrind.sh, request-cost.sh, redis-callgrind.sh).
#
#   scratch_begin   makes $WORK, a fresh temporary folder, and sets $SERVER to "";
#                   on exit the server whose PID the script put in $SERVER (when
#                   there is one) is stopped and $WORK is removed. A script clears
#                   $SERVER once it has stopped that server itself.
#   scratch_stop_server
#                   stops the server in $SERVER, if any: for a subshell that starts
#                   its own server (bash runs no parent's EXIT trap there), as
#                   `trap scratch_stop_server EXIT` inside it
scratch_begin() {
    WORK="$(mktemp -d)"
    SERVER=""
    trap scratch_end EXIT
}

scratch_stop_server() {
    if [ -n "${SERVER:-}" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
}

scratch_end() {
    scratch_stop_server
    rm -rf "$WORK"
}
