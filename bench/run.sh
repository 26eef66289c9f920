#!/bin/bash
# Tandem performance harness: measures Tandem and its peers the same way, in one run, on
# this machine, and prints a side-by-side table with ratios (see docs/benchmarks.md).
#
#   1. builds bench/loadgen and cmd/tandem, installs the peers (bench/peers/install.sh)
#   2. starts Postfix->LMTP->Dovecot, maddy and Tandem on loopback high ports, empty stores,
#      users user1..user100@example.test (password "pw")
#   3. SMTP matrix: SIZES x CONNS, MESSAGES each, against every server; a message counts as
#      delivered when STATUS INBOX (MESSAGES) over IMAP shows it ("e2e")
#   4. fsync count: FSYNC_MESSAGES 10 KB messages per server with strace attached to every
#      process of that server, counting fsync/fdatasync (and the rarer sync calls)
#   5. IMAP: IMAP_PREFILL 10 KB messages into user1..user10, then FETCH/SEARCH phases
#      against Tandem, Dovecot (the Postfix+Dovecot store) and maddy
#   6. prints the table (also written to $OUT/table.md); raw RESULT lines in $OUT/results.txt
#
# Must run as root on a Debian machine (apt-get, postfix). Everything listens on 127.0.0.1.
# Environment (defaults give a full run of about 10 minutes on 2 cores):
#   SIZES="1024 10240 102400"  CONNS="10 50"  MESSAGES=3000  REPEAT=1
#   TARGETS="tandem pfdc maddy"  IMAP_TARGETS="tandem dovecot maddy"
#   IMAP_PREFILL=2000  IMAP_CONNS=10  IMAP_SECS=10  FSYNC_MESSAGES=500
#   OUT=/tmp/tandem-bench-DATE  SKIP_INSTALL=1  KEEP_PEERS=1 (leave peers running)
#   TANDEM_BIN=path (use this binary instead of building cmd/tandem)
# Quick smoke run: MESSAGES=200 SIZES=1024 CONNS=10 IMAP_SECS=2 FSYNC_MESSAGES=100 bench/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/peers/env.sh"

SIZES=${SIZES:-"1024 10240 102400"}
CONNS=${CONNS:-"10 50"}
MESSAGES=${MESSAGES:-3000}
REPEAT=${REPEAT:-1}
TARGETS=${TARGETS:-"tandem pfdc maddy"}
IMAP_TARGETS=${IMAP_TARGETS:-"tandem dovecot maddy"}
IMAP_PREFILL=${IMAP_PREFILL:-2000}
IMAP_CONNS=${IMAP_CONNS:-10}
IMAP_SECS=${IMAP_SECS:-10}
FSYNC_MESSAGES=${FSYNC_MESSAGES:-500}
OUT=${OUT:-/tmp/tandem-bench-$(date -u +%Y%m%dT%H%M%SZ)}
CELL_TIMEOUT=${CELL_TIMEOUT:-300s}

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (installs and runs Postfix/Dovecot)" >&2; exit 1; }
# One run at a time: two runs would wipe each other's peer stores and share the two cores.
# (The servers are started with fd 9 closed so that peers left running do not hold the lock.)
exec 9>/run/tandem-bench.lock
if ! flock -n 9; then
  echo "run.sh: another bench/run.sh is running; waiting for it (at most 30 minutes)" >&2
  flock -w 1800 9 || { echo "run.sh: still locked, giving up" >&2; exit 1; }
fi
mkdir -p "$OUT/bin"
RESULTS=$OUT/results.txt
: > "$RESULTS"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
note() { echo "NOTE $*" >> "$RESULTS"; log "$*"; }

note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"

# ---------- build ----------
log "building loadgen and tandem into $OUT/bin"
(cd "$ROOT" && go build -o "$OUT/bin/loadgen" ./bench/loadgen)
LOADGEN=$OUT/bin/loadgen
TANDEM=${TANDEM_BIN:-}
if [[ " $TARGETS $IMAP_TARGETS " == *" tandem "* ]] && [ -z "$TANDEM" ]; then
  if (cd "$ROOT" && go build -o "$OUT/bin/tandem" ./cmd/tandem) 2>"$OUT/tandem-build.log"; then
    TANDEM=$OUT/bin/tandem
  else
    note "tandem: build failed (see $OUT/tandem-build.log); Tandem is not measured"
  fi
fi

# ---------- peers ----------
[ "${SKIP_INSTALL:-0}" = 1 ] || "$HERE/peers/install.sh" | tee -a "$OUT/run.log"
"$HERE/peers/pfdc-setup.sh" --wipe 9>&- | tee -a "$OUT/run.log"
"$HERE/peers/maddy-setup.sh" --wipe 9>&- | tee -a "$OUT/run.log"

# ---------- tandem ----------
TPID=
stop_tandem() {
  [ -n "$TPID" ] || return 0
  kill -TERM "$TPID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$TPID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$TPID" 2>/dev/null || true
  TPID=
}
cleanup() {
  stop_tandem
  [ "${KEEP_PEERS:-0}" = 1 ] || "$HERE/peers/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_tandem() {
  local data=$OUT/tandem-data extra=()
  rm -rf "$data"
  # plaintext IMAP LOGIN on loopback, like the peers, when the binary offers it; otherwise
  # the load generator uses STARTTLS (imap-tls=auto)
  if "$TANDEM" serve -h 2>&1 | grep -q -- '-allow-insecure-auth'; then extra+=(--allow-insecure-auth); fi
  "$TANDEM" serve --data "$data" --domain "$BENCH_DOMAIN" --hostname tandem.localdomain \
    --smtp-addr "127.0.0.1:$TANDEM_SMTP_PORT" --submission-addr '' --submissions-addr '' \
    --imap-addr "127.0.0.1:$TANDEM_IMAP_PORT" --imaps-addr '' \
    --pop3-addr "127.0.0.1:$TANDEM_POP3_PORT" --pop3s-addr '' --http-addr '' \
    --log-level warn "${extra[@]}" >"$OUT/tandem.log" 2>&1 9>&- &
  TPID=$!
  for _ in $(seq 1 150); do
    if ! kill -0 "$TPID" 2>/dev/null; then TPID=; return 1; fi
    if port_open "$TANDEM_SMTP_PORT" && port_open "$TANDEM_IMAP_PORT" && [ -S "$data/admin.sock" ]; then break; fi
    sleep 0.2
  done
  port_open "$TANDEM_SMTP_PORT" && port_open "$TANDEM_IMAP_PORT" || return 1
  for i in $(seq 1 "$BENCH_NUSERS"); do echo "user$i@$BENCH_DOMAIN,$BENCH_PASSWORD,User $i,"; done > "$OUT/accounts.csv"
  "$TANDEM" --data "$data" account import "$OUT/accounts.csv" >"$OUT/tandem-import.log" 2>&1 || return 1
  log "tandem: up pid=$TPID smtp=127.0.0.1:$TANDEM_SMTP_PORT imap=127.0.0.1:$TANDEM_IMAP_PORT ${extra[*]}"
}
if [ -n "$TANDEM" ]; then
  if ! start_tandem; then
    note "tandem: did not come up with SMTP and IMAP listeners (see $OUT/tandem.log); Tandem is not measured"
    stop_tandem
    TANDEM=
  fi
fi

# name, SMTP port, IMAP port of each target (empty when the target is not available)
target() {
  case "$1" in
    tandem) [ -n "$TANDEM" ] && echo "tandem $TANDEM_SMTP_PORT $TANDEM_IMAP_PORT" ;;
    pfdc|dovecot) echo "$([ "$1" = pfdc ] && echo postfix+dovecot || echo dovecot) $PF_SMTP_PORT $DC_IMAP_PORT" ;;
    maddy) echo "maddy $MADDY_SMTP_PORT $MADDY_IMAP_PORT" ;;
  esac
}

# ---------- SMTP matrix ----------
# The servers take turns within each cell, and the order rotates from cell to cell, so that
# a drift in the machine's load does not always favour the same server.
read -r -a tlist <<<"$TARGETS"
cell=0
for size in $SIZES; do
  for conns in $CONNS; do
    for rep in $(seq 1 "$REPEAT"); do
      for j in "${!tlist[@]}"; do
        t=${tlist[$(( (j + cell) % ${#tlist[@]} ))]}
        read -r name sport iport <<<"$(target "$t")" || continue
        [ -n "${name:-}" ] || continue
        log "smtp $name size=$size conns=$conns messages=$MESSAGES rep=$rep"
        "$LOADGEN" smtp -name "$name" -addr "127.0.0.1:$sport" -imap-addr "127.0.0.1:$iport" \
          -conns "$conns" -messages "$MESSAGES" -size "$size" -users "$BENCH_NUSERS" \
          -password "$BENCH_PASSWORD" -user-fmt "user%d@$BENCH_DOMAIN" \
          -run-id "s${size}c${conns}r${rep}" -timeout "$CELL_TIMEOUT" 2>>"$OUT/loadgen.err" \
          | tee -a "$RESULTS" || log "loadgen failed for $name (see $OUT/loadgen.err)"
      done
      cell=$((cell + 1))
    done
  done
done

# ---------- fsync count ----------
# pids of the given processes and all their descendants (Postfix and Dovecot are process
# trees: master, smtpd, cleanup, qmgr, lmtp, dovecot-lmtp, ...)
descendants() {
  ps -e -o pid=,ppid= | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { changed = 0
        for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 }
      } while (changed)
      for (p in keep) print p
    }'
}
wait_file() { for _ in $(seq 1 1200); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }

fsync_count() {   # fsync_count NAME SMTP_PORT IMAP_PORT ROOT_PID...
  local name=$1 sport=$2 iport=$3; shift 3
  local hold=$OUT/hold-$name trace=$OUT/strace-$name.txt lg spid pids
  rm -rf "$hold"; mkdir -p "$hold"
  "$LOADGEN" smtp -name "$name-fsync" -addr "127.0.0.1:$sport" -imap-addr "127.0.0.1:$iport" \
    -conns 10 -messages "$FSYNC_MESSAGES" -size 10240 -users "$BENCH_NUSERS" -poll 1s \
    -password "$BENCH_PASSWORD" -user-fmt "user%d@$BENCH_DOMAIN" -run-id fsync \
    -timeout "$CELL_TIMEOUT" -hold-dir "$hold" >"$OUT/fsync-$name.out" 2>>"$OUT/loadgen.err" &
  lg=$!
  if ! wait_file "$hold/ready"; then log "fsync $name: loadgen not ready"; kill "$lg" 2>/dev/null; return; fi
  # every thread (-f with -p attaches all threads) of every process of the server, and
  # whatever they fork while the messages go through
  pids=$(descendants "$@")
  # shellcheck disable=SC2046
  strace -f -c -o "$trace" -e trace=fsync,fdatasync,sync_file_range,syncfs,sync,msync \
    $(for p in $pids; do echo "-p $p"; done) 2>"$OUT/strace-$name.err" &
  spid=$!
  sleep 2   # let strace attach to every thread
  touch "$hold/go"
  wait_file "$hold/delivered" || log "fsync $name: delivery not seen"
  sleep 1   # trailing work after delivery (queue file removal, index updates)
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  touch "$hold/release"
  wait "$lg" 2>/dev/null || true
  grep '^RESULT' "$OUT/fsync-$name.out" | sed 's/^RESULT /RESULT-RUN /' >> "$RESULTS" || true
  awk -v name="$name" -v msgs="$FSYNC_MESSAGES" -v procs="$(echo $pids | wc -w)" '
    $NF == "fsync" { f = $4 } $NF == "fdatasync" { d = $4 }
    $NF ~ /^(sync_file_range|syncfs|sync|msync)$/ { o += $4 }
    END { printf "RESULT mode=fsync name=%s messages=%d size=10240 fsync=%d fdatasync=%d other=%d per_msg=%.2f processes=%d\n",
          name, msgs, f, d, o, (f + d + o) / msgs, procs }' "$trace" | tee -a "$RESULTS"
}
for t in $TARGETS; do
  read -r name sport iport <<<"$(target "$t")" || continue
  [ -n "${name:-}" ] || continue
  case "$t" in
    tandem) roots=$TPID ;;
    pfdc) roots="$(tr -d ' ' </var/spool/postfix/pid/master.pid) $(cat "$DBASE/master.pid")" ;;
    maddy) roots=$(cat "$MADDY_RUN/maddy.pid") ;;
  esac
  log "fsync count $name ($FSYNC_MESSAGES x 10 KB under strace)"
  fsync_count "$name" "$sport" "$iport" $roots
done

# ---------- IMAP ----------
for t in $IMAP_TARGETS; do
  read -r name sport iport <<<"$(target "$t")" || continue
  [ -n "${name:-}" ] || continue
  log "imap $name: prefill $IMAP_PREFILL x 10 KB into user1..user10"
  "$LOADGEN" smtp -name "$name-prefill" -addr "127.0.0.1:$sport" -imap-addr "127.0.0.1:$iport" \
    -conns 10 -messages "$IMAP_PREFILL" -size 10240 -users 10 -run-id prefill \
    -password "$BENCH_PASSWORD" -user-fmt "user%d@$BENCH_DOMAIN" -timeout "$CELL_TIMEOUT" \
    2>>"$OUT/loadgen.err" | sed 's/^RESULT /RESULT-RUN /' >> "$RESULTS" || true
  for c in $IMAP_CONNS; do
    log "imap $name conns=$c ${IMAP_SECS}s per operation"
    "$LOADGEN" imap -name "$name" -addr "127.0.0.1:$iport" -conns "$c" -users 10 \
      -password "$BENCH_PASSWORD" -user-fmt "user%d@$BENCH_DOMAIN" -duration "${IMAP_SECS}s" \
      2>>"$OUT/loadgen.err" | tee -a "$RESULTS" || log "loadgen imap failed for $name"
  done
done

# ---------- report ----------
note "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), " \
       "$(free -g | awk '/^Mem:/ {print $2}') GB RAM, $(uname -sr), store on $(df -T "$BENCH_STATE" | awk 'NR==2 {print $2}')" \
       "($(df "$BENCH_STATE" | awk 'NR==2 {print $1}')); tandem $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)," \
       "Postfix $(postconf -h mail_version 2>/dev/null), Dovecot $(dovecot --version | cut -d' ' -f1), maddy $("$MADDY" version 2>/dev/null | awk 'NR == 1 {print $1}')."
  echo "MESSAGES=$MESSAGES per cell, REPEAT=$REPEAT (median), one message per SMTP connection, recipients round robin over $BENCH_NUSERS users."
  grep '^NOTE' "$RESULTS" | sed 's/^NOTE /- /' || true
  echo
  "$LOADGEN" report "$RESULTS"
} | tee "$OUT/table.md"
log "done: $OUT/table.md, raw results $RESULTS"
