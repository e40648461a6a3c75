# TAP helpers for the shell tests (sourced, not run):
#   tap_ok STATUS NAME     prints "ok N - NAME" when STATUS is 0, else "not ok N - NAME"
#   tap_skip NAME REASON   prints "ok N - NAME # SKIP REASON"
#   tap_diag TEXT...       prints "# TEXT" (shown with a failure)
#   tap_end                prints the plan "1..N"; its status is 1 if anything failed
tap_count=0
tap_failures=0

tap_ok() {
    tap_count=$((tap_count + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $tap_count - $2"
    else
        echo "not ok $tap_count - $2"
        tap_failures=$((tap_failures + 1))
    fi
}

tap_skip() {
    tap_count=$((tap_count + 1))
    echo "ok $tap_count - $1 # SKIP $2"
}

tap_diag() {
    printf '%s\n' "$*" | sed 's/^/# /'
}

tap_end() {
    echo "1..$tap_count"
    [ "$tap_failures" -eq 0 ]
}
