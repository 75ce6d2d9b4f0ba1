#!/bin/sh
# Stands in for sidecore-executor in the plugin's unit tests. Takes the same arguments, writes a card
# that records what it was given, and stops on SIGTERM. FAKE_EXECUTOR_MODE (from the job's
# environment) picks a misbehaviour: exit (dies before its card), error (writes an error line where
# the card goes and exits, as sidecore-executor does when it cannot start), hang (never ready),
# stubborn (ignores SIGTERM). FAKE_EXECUTOR_LOG, if set, gets one line per event.
card=""
cores=""
args="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --card-file) card=$2; shift ;;
    --cores) cores=$2; shift ;;
  esac
  shift
done
log() { [ -n "$FAKE_EXECUTOR_LOG" ] && echo "$*" >> "$FAKE_EXECUTOR_LOG"; return 0; }
case "$FAKE_EXECUTOR_MODE" in
  exit) echo "fake executor: failing on purpose" >&2; exit 3 ;;
  error)
    echo "error: fake executor: no provider on purpose" > "$card.tmp"
    mv "$card.tmp" "$card"
    exit 1 ;;
  hang) while :; do sleep 1; done ;;
  stubborn) trap 'log ignored-term' TERM ;;
  *) trap 'log stopped; rm -f "$card"; exit 0' TERM ;;
esac
log "started $args"
printf 'fake cores=%s token=%s uid=%s args=%s\n' "$cores" "$SIDECORE_TOKEN" "$(id -u)" "$args" > "$card.tmp"
mv "$card.tmp" "$card"
while :; do sleep 0.02; done
