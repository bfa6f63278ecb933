#!/usr/bin/env bash
# Run a local Label Studio server for Shoal (development, tests, CI).
#
# Label Studio pins old Django/redis, so it lives in its own venv, never in
# Shoal's environment (Shoal itself only uses label-studio-sdk).
#
# Usage:
#   scripts/labelstudio.sh install            # venv + label-studio==1.23.2 (no-op when present)
#   scripts/labelstudio.sh template           # migrated template data dir (once, ~40 s)
#   scripts/labelstudio.sh start [--port N] [--data-dir D] [--files-root R] [--timeout S]
#   scripts/labelstudio.sh stop [--data-dir D]
#   scripts/labelstudio.sh status [--data-dir D]   # exit 0 running, 1 not
#
# Environment (defaults in brackets):
#   SHOAL_LS_VENV        venv path, relative to the repo root [.venv-labelstudio]
#   SHOAL_LS_TEMPLATE    migrated template data dir [.cache/labelstudio-template]
#   SHOAL_LS_PORT        port [8080]
#   SHOAL_DATA_DIR       data root; data dir is $SHOAL_DATA_DIR/labelstudio, files
#                        root (local-files serving document root) is $SHOAL_DATA_DIR [./shoal-data]
#   SHOAL_LS_USERNAME    admin e-mail [admin@shoal.local]
#   SHOAL_LS_PASSWORD    admin password [shoal-admin-pass]
#   SHOAL_LABEL_STUDIO_TOKEN  admin API token (legacy token auth, "Authorization: Token ...")
#                        [5ba1f1e1d0c0ffee5ba1f1e1d0c0ffee5ba1f1e1: a fixed, public
#                        development token; never use it on a reachable server]
#   SHOAL_LS_ALLOW_LOOPBACK_WEBHOOKS=1  disable SSRF protection so webhooks may target
#                        127.0.0.1 (tests only)
#   SHOAL_LS_START_TIMEOUT  seconds to wait for /health [120]
#
# The admin user and token are created from the environment when a data dir is
# first initialised; the template is made with the same values, so a copied
# template already holds them. Changing them later needs a new template
# (delete $SHOAL_LS_TEMPLATE) and a new data dir.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LS_VERSION="1.23.2"
DEV_TOKEN="5ba1f1e1d0c0ffee5ba1f1e1d0c0ffee5ba1f1e1"

abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

VENV="${SHOAL_LS_VENV:-.venv-labelstudio}"
case "$VENV" in /*) ;; *) VENV="$REPO_ROOT/$VENV" ;; esac
TEMPLATE="${SHOAL_LS_TEMPLATE:-.cache/labelstudio-template}"
case "$TEMPLATE" in /*) ;; *) TEMPLATE="$REPO_ROOT/$TEMPLATE" ;; esac
DATA_ROOT="$(abspath "${SHOAL_DATA_DIR:-./shoal-data}")"
PORT="${SHOAL_LS_PORT:-8080}"
DATA_DIR="$DATA_ROOT/labelstudio"
FILES_ROOT="$DATA_ROOT"
START_TIMEOUT="${SHOAL_LS_START_TIMEOUT:-120}"
LS_USERNAME="${SHOAL_LS_USERNAME:-admin@shoal.local}"
LS_PASSWORD="${SHOAL_LS_PASSWORD:-shoal-admin-pass}"
LS_TOKEN="${SHOAL_LABEL_STUDIO_TOKEN:-$DEV_TOKEN}"

die() { echo "labelstudio.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

parse_opts() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --port) PORT="${2:?--port needs a value}"; shift 2 ;;
            --data-dir) DATA_DIR="$(abspath "${2:?--data-dir needs a value}")"; shift 2 ;;
            --files-root) FILES_ROOT="$(abspath "${2:?--files-root needs a value}")"; shift 2 ;;
            --timeout) START_TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option: $1" ;;
        esac
    done
}

ls_bin() { printf '%s\n' "$VENV/bin/label-studio"; }

installed() {
    [ -x "$(ls_bin)" ] &&
        [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" = "$LS_VERSION" ]
}

cmd_install() {
    if installed; then
        echo "label-studio $LS_VERSION already installed in $VENV"
        return 0
    fi
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "label-studio==$LS_VERSION"
    installed || die "label-studio $LS_VERSION not importable after install"
    echo "installed label-studio $LS_VERSION in $VENV"
}

pid_file() { printf '%s\n' "$1/labelstudio.pid"; }
log_file() { printf '%s\n' "$1/labelstudio.log"; }
port_file() { printf '%s\n' "$1/labelstudio.port"; }

# pid of a live server for data dir $1, or nothing
running_pid() {
    local pf pid
    pf="$(pid_file "$1")"
    [ -f "$pf" ] || return 1
    pid="$(cat "$pf")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q label-studio || return 1
    printf '%s\n' "$pid"
}

health_ok() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null
}

# Launch the server in its own session. $1 data dir, $2 port, $3 files root.
launch() {
    local dir="$1" port="$2" files_root="$3" ssrf=true
    [ "${SHOAL_LS_ALLOW_LOOPBACK_WEBHOOKS:-0}" = "1" ] && ssrf=false
    mkdir -p "$dir" "$files_root"
    # setsid: the server (and its workers) survive the calling shell; the pid
    # is the session leader, so stop can signal the whole process group.
    env \
        LABEL_STUDIO_BASE_DATA_DIR="$dir" \
        LATEST_VERSION_CHECK=false \
        SENTRY_DSN= FRONTEND_SENTRY_DSN= \
        COLLECT_ANALYTICS=false \
        LABEL_STUDIO_USERNAME="$LS_USERNAME" \
        LABEL_STUDIO_PASSWORD="$LS_PASSWORD" \
        LABEL_STUDIO_USER_TOKEN="$LS_TOKEN" \
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$files_root" \
        SSRF_PROTECTION_ENABLED="$ssrf" \
        setsid nohup "$(ls_bin)" start \
            --data-dir "$dir" \
            --internal-host 127.0.0.1 \
            --port "$port" \
            --no-browser \
        </dev/null >>"$(log_file "$dir")" 2>&1 &
    echo $! >"$(pid_file "$dir")"
    echo "$port" >"$(port_file "$dir")"
}

# Wait for /health. $1 data dir, $2 port, $3 timeout seconds.
wait_healthy() {
    local dir="$1" port="$2" timeout="$3" start now pid
    pid="$(cat "$(pid_file "$dir")")"
    start=$(date +%s)
    while :; do
        if health_ok "$port"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "labelstudio.sh: server exited before answering /health; log tail ($(log_file "$dir")):" >&2
            tail -n 40 "$(log_file "$dir")" >&2 || true
            rm -f "$(pid_file "$dir")"
            return 1
        fi
        now=$(date +%s)
        if [ $((now - start)) -ge "$timeout" ]; then
            echo "labelstudio.sh: no /health on port $port after ${timeout}s; log tail ($(log_file "$dir")):" >&2
            tail -n 40 "$(log_file "$dir")" >&2 || true
            stop_dir "$dir" >/dev/null 2>&1 || true
            return 1
        fi
        sleep 0.5
    done
}

# Stop the server of data dir $1; waits up to 30 s, then SIGKILL.
stop_dir() {
    local dir="$1" pid i
    if ! pid="$(running_pid "$dir")"; then
        rm -f "$(pid_file "$dir")" "$(port_file "$dir")"
        echo "not running ($dir)"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pid_file "$dir")" "$(port_file "$dir")"
    echo "stopped (pid $pid)"
}

port_free() {
    ! health_ok "$1" &&
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_template() {
    if [ -f "$TEMPLATE/label_studio.sqlite3" ]; then
        echo "template exists: $TEMPLATE"
        return 0
    fi
    installed || die "label-studio not installed; run: $0 install"
    local tmp port t0
    mkdir -p "$(dirname "$TEMPLATE")"
    tmp="$(mktemp -d "$(dirname "$TEMPLATE")/.template.XXXXXX")"
    # a free port for the throw-away start
    port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    t0=$(date +%s)
    launch "$tmp" "$port" "$tmp/files"
    if ! wait_healthy "$tmp" "$port" "${SHOAL_LS_START_TIMEOUT:-300}"; then
        rm -rf "$tmp"
        die "template start failed"
    fi
    stop_dir "$tmp" >/dev/null
    rm -rf "$tmp/files" "$(pid_file "$tmp")" "$(log_file "$tmp")" "$(port_file "$tmp")"
    # another process may have won the race; keep theirs
    if [ -f "$TEMPLATE/label_studio.sqlite3" ]; then
        rm -rf "$tmp"
    else
        rm -rf "$TEMPLATE"
        mv "$tmp" "$TEMPLATE"
    fi
    echo "template ready: $TEMPLATE (first start took $(( $(date +%s) - t0 ))s)"
}

cmd_start() {
    parse_opts "$@"
    installed || die "label-studio not installed; run: $0 install"
    local pid t0 ms
    if pid="$(running_pid "$DATA_DIR")"; then
        echo "already running (pid $pid)" >&2
        echo "http://127.0.0.1:$(cat "$(port_file "$DATA_DIR")" 2>/dev/null || echo "$PORT")"
        return 0
    fi
    port_free "$PORT" || die "port $PORT is already in use"
    mkdir -p "$DATA_DIR"
    if [ ! -f "$DATA_DIR/label_studio.sqlite3" ]; then
        if [ -f "$TEMPLATE/label_studio.sqlite3" ]; then
            cp -a "$TEMPLATE/." "$DATA_DIR/"
        else
            echo "no template at $TEMPLATE (run '$0 template' for fast starts); migrating from scratch" >&2
        fi
    fi
    t0=$(date +%s%N)
    launch "$DATA_DIR" "$PORT" "$FILES_ROOT"
    wait_healthy "$DATA_DIR" "$PORT" "$START_TIMEOUT" || die "Label Studio did not start"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "Label Studio up in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s" \
        "(pid $(cat "$(pid_file "$DATA_DIR")"), data $DATA_DIR)" >&2
    echo "http://127.0.0.1:$PORT"
}

cmd_stop() {
    parse_opts "$@"
    stop_dir "$DATA_DIR"
}

cmd_status() {
    parse_opts "$@"
    local pid
    if pid="$(running_pid "$DATA_DIR")"; then
        echo "running (pid $pid, http://127.0.0.1:$(cat "$(port_file "$DATA_DIR")" 2>/dev/null || echo '?'), data $DATA_DIR)"
        return 0
    fi
    echo "not running (data $DATA_DIR)"
    return 1
}

main() {
    local cmd="${1:-}"
    [ $# -gt 0 ] && shift
    case "$cmd" in
        install) cmd_install ;;
        template) cmd_template ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
