#!/usr/bin/env bash
# Docker as installed, for benchmarks that compare against `docker run`:
#   scripts/stock-docker.sh start   starts `dockerd` with no options on the default socket
#                                   (its default `bridge` network, docker0, as Debian's
#                                   docker.io service runs it) and waits until it answers
#   scripts/stock-docker.sh stop    stops it and removes docker0 and the firewall rules
#                                   that name it
# scripts/docker.sh's daemon (the one the tests use) runs with --bridge=none instead, so
# its containers get no network unless asked. Refuses to start while any daemon answers.
source "$(dirname "$0")/lib.sh"
SOCKET=/var/run/docker.sock
PIDFILE=/run/sandstream-stock-dockerd.pid
LOG=/var/log/sandstream-stock-dockerd.log
[ "$(id -u)" = 0 ] || { echo "scripts/stock-docker.sh: need root" >&2; exit 1; }

case "${1:-}" in
  start)
    docker_answers "$SOCKET" && { echo "scripts/stock-docker.sh: a Docker daemon already answers on $SOCKET; stop it first" >&2; exit 1; }
    log "starting dockerd as installed (default bridge network; log: $LOG)"
    setsid dockerd --pidfile "$PIDFILE" </dev/null >>"$LOG" 2>&1 &
    wait_for_docker "$SOCKET" && exit 0
    echo "scripts/stock-docker.sh: dockerd did not answer within 30 s; see $LOG" >&2
    exit 1
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid="$(cat "$PIDFILE")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    for table in filter nat; do
      iptables-save -t "$table" | grep -E '^-A .*(docker0|172\.17\.0\.0/16)' | sed 's/^-A //' |
        while read -r rule; do
          # shellcheck disable=SC2086 # the rule is iptables-save's words
          iptables -w -t "$table" -D $rule
        done
    done
    ip link del docker0 2>/dev/null || true
    ;;
  *)
    echo "usage: scripts/stock-docker.sh start|stop" >&2
    exit 2
    ;;
esac
