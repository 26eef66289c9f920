#!/bin/bash
# Stop the peers started by pfdc-setup.sh and maddy-setup.sh (idempotent). Uses each
# server's own control command or PID file; never kills by process name. Data is kept.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then
  postfix stop >/dev/null 2>&1 && echo "stop: postfix stopped"
fi
if [ -f "$DCONF" ] && [ -f "$DBASE/master.pid" ] && kill -0 "$(cat "$DBASE/master.pid")" 2>/dev/null; then
  doveadm -c "$DCONF" stop 2>/dev/null || dovecot -c "$DCONF" stop
  for _ in $(seq 1 50); do [ -f "$DBASE/master.pid" ] || break; sleep 0.1; done
  echo "stop: dovecot stopped"
fi
[ -f "$MADDY_RUN/maddy.pid" ] && "$HERE/maddy-setup.sh" --stop
exit 0
