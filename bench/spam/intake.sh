#!/usr/bin/env bash
# SMTP intake with every filter stage on (trained spam filter, sender authentication, DNSBL and
# list checks as configured by default) against the same binary with --filters=false, same
# machine, same run, alternating, with bench/loadgen (the load generator of bench/run.sh).
#
#   bench/spam/intake.sh              # MESSAGES=2000 SIZE=10240 CONNS=10 ROUNDS=2
#
# The spam filter is trained first (bench/out/spamcorpus train split if bench/spam/run.sh built
# it, else the small test corpus), so classification runs against a real model. ClamAV is not
# part of it (reported separately). Prints RESULT lines and the on/off ratio of intake msgs/s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/bench/peers/env.sh"
MESSAGES=${MESSAGES:-2000}; SIZE=${SIZE:-10240}; CONNS=${CONNS:-10}; ROUNDS=${ROUNDS:-2}
out=${OUT:-$repo/bench/out}/spam-intake
corpus=${CORPUS:-$repo/bench/out/spamcorpus/train}
[ -d "$corpus/spam" ] || corpus=$repo/filter/spam/testdata/corpus
rm -rf "$out"; mkdir -p "$out"
if [ -n "${TANDEM_BIN:-}" ]; then cp "$TANDEM_BIN" "$out/tandem"; else (cd "$repo" && go build -o "$out/tandem" ./cmd/tandem); fi
(cd "$repo" && go build -o "$out/loadgen" ./bench/loadgen)
T=$out/tandem
# No DNS leaves the machine: SPF/DMARC and DNS-list queries go to a closed loopback port and fail
# at once (ICMP port unreachable), so the figure is the filters' own cost, not a resolver's.
DNS=${DNS:-127.0.0.1:9}
# The load generator is one client IP with many connections: the firewall's per-IP connection
# limits are lifted (its checks still run). In a 04:10 UTC run its default limits answered 421
# to the second connection from 127.0.0.1.
read -r -a FW <<<"${FIREWALL_FLAGS:---firewall-max-conn-ip -1 --firewall-max-conn-net -1}"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
run_one() { # mode round
  local mode=$1 data=$out/data-$1-$2 extra=()
  [ "$mode" = off ] && extra+=(--filters=false)
  [ "$mode" = on ] && extra+=("${FW[@]}")
  "$T" serve --data "$data" --domain "$BENCH_DOMAIN" --hostname tandem.localdomain \
    --smtp-addr "127.0.0.1:$TANDEM_SMTP_PORT" --submission-addr '' --submissions-addr '' \
    --imap-addr "127.0.0.1:$TANDEM_IMAP_PORT" --imaps-addr '' --pop3-addr '' --pop3s-addr '' --http-addr '' \
    --dns-resolver "$DNS" --allow-insecure-auth --log-level warn "${extra[@]}" >"$out/tandem-$mode-$2.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do
    port_open "$TANDEM_SMTP_PORT" && [ -S "$data/admin.sock" ] && break; sleep 0.2
  done
  for i in $(seq 1 "$BENCH_NUSERS"); do echo "user$i@$BENCH_DOMAIN,$BENCH_PASSWORD,User $i,"; done >"$out/accounts.csv"
  "$T" --data "$data" account import "$out/accounts.csv" >/dev/null
  "$T" --data "$data" filter train --spam "$corpus/spam" --ham "$corpus/ham" | tail -1 >&2
  "$out/loadgen" smtp -name "tandem-filters-$mode" -addr "127.0.0.1:$TANDEM_SMTP_PORT" -imap-addr "127.0.0.1:$TANDEM_IMAP_PORT" \
    -conns "$CONNS" -messages "$MESSAGES" -size "$SIZE" -users "$BENCH_NUSERS" -password "$BENCH_PASSWORD" \
    -user-fmt "user%d@$BENCH_DOMAIN" -run-id "r$2" -timeout 300s | tee -a "$out/results.txt"
  stop
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run_one on "$r"; run_one off "$r"; else run_one off "$r"; run_one on "$r"; fi
done
rate() { grep "name=tandem-filters-$1 " "$out/results.txt" | sed -nE "s/.* $2=([0-9.]+).*/\\1/p" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for f in accept_rate e2e_rate; do
  on=$(rate on $f); off=$(rate off $f)
  echo "RESULT filters_on_$f=$on filters_off_$f=$off ratio=$(awk -v a="$on" -v b="$off" 'BEGIN{printf "%.2f", a/b}')"
done
