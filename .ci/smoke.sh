#!/usr/bin/env bash
# CI smoke stage: the README's `make run` as a fresh machine runs it (a new HOME, so no
# ~/.ray/auth_token), then one real request per surface (.ci/smoke.py). On a failure it
# prints the tail of the `make run` log and of Ray's Serve logs and exits non-zero; the
# cluster is stopped in every case. SMOKE_WAIT_S bounds the wait for /health (900 s).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started))"; }
log() { printf '\n== [%ss] %s\n' "$(elapsed)" "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

work=$(mktemp -d /tmp/visionserve-smoke.XXXXXX)
run_log="$work/make-run.log"
server_pid=""
server_sid=""
# Ray links session_latest to the newest session: ours, once it differs from this.
session_before=$(readlink -f /tmp/ray/session_latest 2>/dev/null || true)

# The Ray session of our cluster (its processes name it), else the newest one if it is
# not the one from before the smoke stage.
session_dir() {
  local pid args
  if [ -n "$server_sid" ]; then
    for pid in $(pgrep -s "$server_sid" 2>/dev/null || true); do
      args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
      if [[ $args =~ --session-dir=(/[^ ]*) ]] || [[ $args =~ --log_dir=(/[^ ]*)/logs ]]; then
        echo "${BASH_REMATCH[1]}"
        return
      fi
    done
  fi
  local latest
  latest=$(readlink -f /tmp/ray/session_latest 2>/dev/null || true)
  if [ "$latest" != "$session_before" ]; then echo "$latest"; fi
}

show_logs() {
  local dir f
  dir=$(session_dir || true)
  printf '\n---- last 60 lines of the make run log (%s)\n' "$run_log"
  sed 's/\x1b\[[0-9;]*m//g' "$run_log" 2>/dev/null | tail -n 60 || echo "(none)"
  if [ -n "$dir" ] && [ -d "$dir/logs/serve" ]; then
    # The controller, the proxy and the replicas that logged last, errors first.
    for f in $(grep -lE 'ERROR|Traceback' "$dir"/logs/serve/*.log 2>/dev/null | head -n 4) \
      $(ls -t "$dir"/logs/serve/*.log 2>/dev/null | head -n 3); do
      printf '\n---- last 30 lines of %s\n' "$f"
      tail -n 30 "$f"
    done
  else
    echo "(no Serve logs: ${dir:-this smoke stage started no Ray session}${dir:+/logs/serve is missing})"
  fi
}

# `make stop` stops every Ray process of the machine. Where another Ray runs beside
# ours (a developer's test session), stop only ours: everything in our session id.
stop_cluster() {
  local foreign="" pid
  for pid in $(pgrep -x raylet 2>/dev/null || true); do
    [ -n "$server_sid" ] && [ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$server_sid" ] || foreign=1
  done
  if [ -z "$foreign" ]; then
    # `ray stop` names every process it kills, arguments and all: keep that in a file.
    make --no-print-directory stop >"$work/make-stop.log" 2>&1 || true
    grep -aoE '(Stopped all [0-9]+ Ray processes|Did not find any active Ray processes)' \
      "$work/make-stop.log" | tail -n 1 || tail -n 3 "$work/make-stop.log"
  else
    echo "another Ray runs on this machine: stopping only the smoke cluster (session $server_sid)"
  fi
  if [ -n "$server_sid" ]; then
    pkill -TERM -s "$server_sid" 2>/dev/null || true
    for _ in $(seq 20); do pgrep -s "$server_sid" >/dev/null || break; sleep 0.5; done
    pkill -KILL -s "$server_sid" 2>/dev/null || true
  fi
}

finish() {
  local rc=$?
  trap - EXIT INT TERM
  set +e # clean up whatever fails on the way
  if [ "$rc" != 0 ]; then
    show_logs
  fi
  log "make stop"
  stop_cluster
  if [ "$rc" = 0 ]; then
    rm -rf "$work"
  else
    echo "smoke: failed (exit $rc) after $(elapsed) s; logs kept in $work" >&2
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

log "smoke: fresh HOME $work/home, make run log $run_log"
for port in 6390 8000 8265; do
  if port_open "$port"; then
    echo "port $port is taken: stop what serves it (make stop) before the smoke stage" >&2
    exit 1
  fi
done
mkdir -p "$work/home"
export HOME="$work/home"
# The edit check's callback receiver listens on loopback, which egress refuses by default.
export VISIONSERVE_EGRESS__ALLOW='["127.0.0.1"]'

log "make run (in the background)"
# Its own session, so that everything it starts (Ray included) can be found and stopped.
setsid make --no-print-directory run >"$run_log" 2>&1 </dev/null &
server_pid=$!
sleep 1
server_sid=$(ps -o sid= -p "$server_pid" | tr -d ' ' || true)

rc=0
"$REPO/.venv/bin/python" "$REPO/.ci/smoke.py" --server-pid "$server_pid" \
  --wait "${SMOKE_WAIT_S:-900}" | tee "$work/checks.log" || rc=$?

# What the fresh machine showed: the token line and the OCR engine the replica chose.
grep -h -m1 '^Ray auth token' "$run_log" || echo "no 'Ray auth token' line in the make run log"
if [ -s "$HOME/.ray/auth_token" ]; then echo "token created: $HOME/.ray/auth_token"; fi
dir=$(session_dir || true)
ocr_line=$(grep -rhoE 'OCR engine: .*' "$run_log" "$dir/logs" 2>/dev/null | head -n 1 || true)
echo "${ocr_line:-no 'OCR engine:' line found in the logs}"
if [ -z "$ocr_line" ] && [ "$rc" = 0 ]; then
  echo "smoke: the OCR replica did not log its engine" >&2
  rc=1
fi

log "smoke stage took $(elapsed) s"
counts=$(sed -n 's/^checks: \([0-9]* passed, 0 failed\)$/\1/p' "$work/checks.log")
if [ "$rc" = 0 ] && [ -n "$counts" ]; then
  echo "smoke: $counts"
else
  exit "$((rc == 0 ? 1 : rc))"
fi
