#!/bin/bash
# Install the peer mail servers used as baselines by bench/run.sh (idempotent).
#   - Postfix + Dovecot (imapd, lmtpd) from Debian's apt archive (smtp-source comes with postfix).
#   - maddy v0.8.1 built from the Go module proxy into $MADDY (default /var/lib/tandem-bench/bin/maddy, see env.sh).
# Only packages are installed; nothing is started (setup scripts start the daemons on loopback).
set -euo pipefail

PKGS="postfix dovecot-imapd dovecot-lmtpd strace"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  # policy-rc.d 101: do not let the packages start their system services (ports 25/143/...);
  # the peers are started by our setup scripts on loopback high ports only.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# maddy v0.8.1. `go install github.com/foxcpp/maddy/cmd/maddy@v0.8.1` is refused because
# maddy's go.mod has replace directives, so build it as a tool of a scratch module that
# repeats those replace directives. Nothing of maddy is written into the repository.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
MADDY_DIR=$(dirname "$MADDY")
MADDY_BIN=$MADDY
if [ "${SKIP_MADDY:-0}" != 1 ] && ! [ -x "$MADDY_BIN" ]; then
  MOD=${TMPDIR:-/tmp}/tandem-bench-maddy-mod
  mkdir -p "$MOD" "$MADDY_DIR"
  (
    cd "$MOD"
    export GOFLAGS=-mod=mod GOWORK=off
    [ -f go.mod ] || go mod init scratch >/dev/null 2>&1
    grep -q 'foxcpp/go-imap v1.0.0-beta' go.mod || cat >> go.mod <<'MOD'

replace github.com/emersion/go-imap => github.com/foxcpp/go-imap v1.0.0-beta.1.0.20220623182312-df940c324887

replace github.com/emersion/go-smtp => github.com/foxcpp/go-smtp v1.21.4-0.20250124171104-c8519ae4fb23

replace github.com/libdns/gandi => github.com/foxcpp/libdns-gandi v1.0.4-0.20240127130558-4782f9d5ce3e
MOD
    timeout 900 go get -tool github.com/foxcpp/maddy/cmd/maddy@v0.8.1
    timeout 900 go mod tidy
    GOBIN=$MADDY_DIR timeout 900 go install github.com/foxcpp/maddy/cmd/maddy
  )
fi
echo "install: postfix $(postconf -d -h mail_version 2>/dev/null) dovecot $(dovecot --version | cut -d' ' -f1)" \
  "maddy $([ -x "$MADDY_BIN" ] && "$MADDY_BIN" version 2>/dev/null | head -1 || echo missing)" \
  "smtp-source $(command -v smtp-source || echo /usr/sbin/smtp-source)"
