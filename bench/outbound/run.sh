#!/bin/bash
# Outbound throughput: Tandem's outbound engine against Postfix, both draining a queue of
# MESSAGES messages of SIZE bytes into the same Postfix smtp-sink, with 1 and 20 connections.
#
#   Tandem:  bench/outbound (Go) fills a fresh single-node store's queue, then starts the
#            engine with a smarthost = the sink (no TLS) and times until the queue is empty.
#   Postfix: a separate instance (config $PFO_CONF, queue $PFO_QUEUE, smtpd 127.0.0.1:$PFO_PORT,
#            relayhost = the sink) gets the messages from smtp-source while defer_transports=smtp
#            holds them; then deferral is lifted, the queue flushed and timed until empty.
#            smtp_destination_concurrency_limit = the connection count.
# Both queue the message durably before delivery and delete it after; neither does DNS.
# Everything listens on 127.0.0.1 high ports. Must run as root (Postfix). Debian: apt-get install postfix.
#
# Environment: MESSAGES=2000 SIZE=10240 CONNS="1 20" REPEAT=3 (runs per cell, alternating Tandem
# and Postfix; the table shows the median) SINK_PORT=12600 PFO_PORT=12601 KEEP=1 (leave the
# Postfix instance and its files)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-10240}
CONNS=${CONNS:-"1 20"}
REPEAT=${REPEAT:-3}
SINK_PORT=${SINK_PORT:-12600}
PFO_PORT=${PFO_PORT:-12601}
PFO_CONF=/etc/postfix-outbench
PFO_QUEUE=/var/spool/postfix-outbench
PFO_DATA=/var/lib/postfix-outbench
OUT=${OUT:-/tmp/outbound-bench-$(date -u +%Y%m%dT%H%M%SZ)}

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (Postfix)" >&2; exit 1; }
for c in postfix smtp-sink smtp-source postconf postqueue; do
  command -v $c >/dev/null || { echo "run.sh: $c missing: apt-get install postfix" >&2; exit 1; }
done
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

log "building bench/outbound"
(cd "$ROOT" && go build -o "$OUT/outbound-bench" ./bench/outbound)

# ---------- the sink ----------
smtp-sink -u nobody 127.0.0.1:$SINK_PORT 1024 &
SINK_PID=$!
pf() { postfix -c "$PFO_CONF" "$@"; }
cleanup() {
  kill "$SINK_PID" 2>/dev/null || true
  if [ -z "${KEEP:-}" ]; then
    pf stop >/dev/null 2>&1 || true
    rm -rf "$PFO_CONF" "$PFO_QUEUE" "$PFO_DATA"
  fi
}
trap cleanup EXIT

# ---------- the Postfix instance ----------
pf stop >/dev/null 2>&1 || true
rm -rf "$PFO_QUEUE" && mkdir -p "$PFO_CONF" "$PFO_QUEUE" "$PFO_DATA"
chown postfix:postfix "$PFO_DATA"
cp /usr/share/postfix/master.cf.dist "$PFO_CONF/master.cf"
cp /etc/postfix/dynamicmaps.cf "$PFO_CONF/" 2>/dev/null || true
: > "$PFO_CONF/main.cf"
sed -i -E "s/^smtp([[:space:]]+)inet[[:space:]]/127.0.0.1:$PFO_PORT inet /" "$PFO_CONF/master.cf"
postconf -c "$PFO_CONF" -F '*/*/chroot = n'
pfconf() { postconf -c "$PFO_CONF" -e "$@"; }
pfconf "queue_directory = $PFO_QUEUE" "data_directory = $PFO_DATA" "meta_directory = /etc/postfix" \
  "myhostname = outbench.localdomain" "mydomain = localdomain" "mydestination =" \
  "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" "mynetworks = 127.0.0.0/8" \
  "relayhost = [127.0.0.1]:$SINK_PORT" "smtp_tls_security_level = none" "smtpd_tls_security_level = none" \
  "alias_maps =" "alias_database =" "local_recipient_maps =" "compatibility_level = 3.6" \
  "syslog_name = postfix-outbench" "maillog_file = /var/log/postfix-outbench.log" \
  "message_size_limit = 52428800" "default_process_limit = 100" "defer_transports = smtp"
pf check >/dev/null 2>&1 || pf set-permissions >/dev/null 2>&1 || true
pf start >/dev/null
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PFO_PORT) 2>/dev/null && break; sleep 0.1; done

queued() { find "$PFO_QUEUE"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l; }

postfix_run() { # conns → prints a RESULT line
  local c=$1
  pfconf "smtp_destination_concurrency_limit = $c" "default_destination_concurrency_limit = $c" \
    "initial_destination_concurrency = $c" "defer_transports = smtp"
  pf reload >/dev/null 2>&1
  smtp-source -c -s 20 -m "$MESSAGES" -l "$SIZE" -f bench@src.test -t sink@sink.test 127.0.0.1:$PFO_PORT >/dev/null
  for _ in $(seq 1 600); do
    [ "$(find "$PFO_QUEUE/deferred" -type f | wc -l)" -ge "$MESSAGES" ] && break; sleep 0.1
  done
  pfconf "defer_transports ="
  pf reload >/dev/null 2>&1
  sleep 1 # let the reloaded qmgr start
  local start end
  start=$(date +%s.%N)
  postqueue -c "$PFO_CONF" -f
  while [ "$(queued)" -gt 0 ]; do sleep 0.02; done
  end=$(date +%s.%N)
  awk -v c="$c" -v n="$MESSAGES" -v s="$SIZE" -v a="$start" -v b="$end" \
    'BEGIN { printf "RESULT mode=outbound name=postfix conns=%d messages=%d size=%d secs=%.3f msg_per_sec=%.1f\n", c, n, s, b-a, n/(b-a) }'
}

: > "$OUT/results.txt"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $CONNS; do
  for r in $(seq 1 "$REPEAT"); do
    log "tandem, $c connection(s), run $r"
    "$OUT/outbound-bench" -sink 127.0.0.1:$SINK_PORT -messages "$MESSAGES" -size "$SIZE" -conns "$c" | tee -a "$OUT/results.txt"
    log "postfix, $c connection(s), run $r"
    postfix_run "$c" | tee -a "$OUT/results.txt"
  done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rate() { grep "name=$1 conns=$2 " "$OUT/results.txt" | sed -E 's/.*msg_per_sec=([0-9.]+).*/\1/' | median; }
echo
echo "| connections | Tandem msg/s | Postfix msg/s | Tandem/Postfix |"
echo "|---|---|---|---|"
for c in $CONNS; do
  t=$(rate tandem "$c"); p=$(rate postfix "$c")
  awk -v c="$c" -v t="$t" -v p="$p" 'BEGIN { printf "| %s | %.0f | %.0f | %.2f |\n", c, t, p, t / p }'
done
echo
echo "messages=$MESSAGES size=$SIZE, median of $REPEAT runs; load average before $LOAD_BEFORE," \
  "after $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; raw results in $OUT/results.txt"
