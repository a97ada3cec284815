#!/bin/sh
# Container entrypoint for tus-staging.
#
#   (no args) | -flags...      -> tus-staging serve --host $TUS_STAGING_HOST(0.0.0.0) -flags...
#   serve|cleanup|upload|ls|info|get|mv|rm|mkdir ...
#                              -> tus-staging <subcommand> ...
#   anything else              -> run as given (e.g. `sh`, `python`; `sh -c 'ls /data'`
#                                 for the shell's own ls)
#
# Before serve/cleanup it checks that the data dir is writable, so a volume owned by the
# wrong UID fails at once with one clear line instead of deep inside the first upload.
# TUS_STAGING_BIN overrides the binary (tests point it at a stub).
set -eu

bin="${TUS_STAGING_BIN:-tus-staging}"

# A container is only reachable from outside on 0.0.0.0; flags and env read by the
# server still win (`serve --host ...`). The server itself refuses a non-loopback host
# without --tokens-file or --auth-url.
TUS_STAGING_HOST="${TUS_STAGING_HOST:-0.0.0.0}"
export TUS_STAGING_HOST

if [ "$#" -eq 0 ] || [ -z "$1" ]; then
    [ "$#" -eq 0 ] || shift
    set -- "$bin" serve --host "$TUS_STAGING_HOST" "$@"
else
    case "$1" in
        -*) set -- "$bin" serve --host "$TUS_STAGING_HOST" "$@" ;;
        serve | cleanup | upload | ls | info | get | mv | rm | mkdir) set -- "$bin" "$@" ;;
        *) exec "$@" ;;
    esac
fi

# Only the server side uses the data dir; the other subcommands are clients.
if [ "$2" = serve ] || [ "$2" = cleanup ]; then
    data_dir="${TUS_STAGING_DATA_DIR:-./data}"
    take_next=false
    for arg in "$@"; do
        if $take_next; then
            data_dir="$arg"
            take_next=false
            continue
        fi
        case "$arg" in
            --data-dir) take_next=true ;;
            --data-dir=*) data_dir="${arg#--data-dir=}" ;;
        esac
    done

    # Test by writing a real file: `[ -w ]` says yes to root even on a read-only mount.
    probe=""
    if ! mkdir -p -- "$data_dir" 2>/dev/null \
        || ! probe="$(mktemp "$data_dir/.write-test.XXXXXX" 2>/dev/null)"; then
        echo "docker-entrypoint: data dir '$data_dir' is not writable by UID $(id -u) (GID $(id -g)):" \
            "chown the volume to that UID, or rebuild the image with" \
            "--build-arg APP_UID=<owner uid> --build-arg APP_GID=<owner gid>" >&2
        exit 1
    fi
    rm -f -- "$probe"
fi

exec "$@"
