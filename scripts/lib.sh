# Shared by setup.sh, test.sh and .ci/run: timed phases with a summary at the end.
# shellcheck shell=bash

PHASES=()

phase() {
    local name=$1
    shift
    local t0=$SECONDS
    printf '\n==> %s\n' "$name"
    if "$@"; then
        PHASES+=("$(printf '%-28s %5ds' "$name" $((SECONDS - t0)))")
    else
        local rc=$?
        PHASES+=("$(printf '%-28s %5ds  FAILED (exit %d)' "$name" $((SECONDS - t0)) "$rc")")
        phase_summary
        exit "$rc"
    fi
}

phase_summary() {
    printf '\n==> phase times\n'
    printf '    %s\n' "${PHASES[@]}"
}

need() {
    command -v "$1" >/dev/null 2>&1 || {
        printf 'error: `%s` is not installed. %s\n' "$1" "$2" >&2
        exit 3
    }
}
