#!/bin/bash
# Stop the peers and remove everything the bench set up: the peers' mail stores and maddy
# state under $BENCH_STATE (the maddy binary is kept unless --all), the Dovecot config
# and user file, the Postfix queue, and Debian's original /etc/postfix/{main,master}.cf.
# Packages stay installed (apt-get purge postfix dovecot-imapd dovecot-lmtpd to remove them).
# Usage: cleanup.sh [--all]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
"$HERE/stop.sh"
command -v postsuper >/dev/null && postsuper -d ALL >/dev/null 2>&1
rm -rf "${VMAIL:?}" "${MADDY_STATE:?}" "${MADDY_TEMPLATE:?}" "$MADDY_CONF" "$MADDY_RUN" "$DBASE"
rm -f "$DCONF" /etc/dovecot/tandem-bench-users /etc/postfix/tandem-bench-vmailbox /etc/postfix/tandem-bench-vmailbox.db
for f in main.cf master.cf; do
  orig=/etc/postfix/$f.tandem-bench-orig
  [ -f "$orig" ] || continue
  if grep -q '^# no main.cf before tandem-bench' "$orig"; then rm -f "/etc/postfix/$f"; else cp "$orig" "/etc/postfix/$f"; fi
  rm -f "$orig"
done
[ "${1:-}" = "--all" ] && rm -rf "${BENCH_STATE:?}"
echo "cleanup: done"
