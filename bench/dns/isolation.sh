#!/usr/bin/env bash
# DNS load isolation (RELIABILITY #35): SMTP intake of one Tandem node alone, and
# again while dnsperf sends RATE queries per second to the same node's built-in DNS
# server. A one-query-at-a-time probe (qload, window 1) measures DNS latency under
# that load. Prints both intake rates, their ratio, dnsperf's answered/lost counts
# and the probe's p50/p99. As a control, the same DNS load is also sent to NSD on the
# same machine (zone exported from the node) during another SMTP run: the load
# generator and the second server take CPU from the mail server too, so Tandem's
# isolation is judged against that figure, not against an idle machine.
#
#   sudo bench/dns/isolation.sh
#   sudo RATE=50000 DNS_SECONDS=15 MESSAGES=2000 CONNS=10 ROUNDS=3 bench/dns/isolation.sh
#
# Needs dnsperf (Debian package; installed if missing). Loopback only.
set -euo pipefail

RATE=${RATE:-50000}
DNS_SECONDS=${DNS_SECONDS:-15}
MESSAGES=${MESSAGES:-2000}
CONNS=${CONNS:-10}
SIZE=${SIZE:-10240}
ROUNDS=${ROUNDS:-3}
SMTP_PORT=${SMTP_PORT:-12627}
DNS_PORT=${DNS_PORT:-5321}

cd "$(dirname "$0")/../.."
command -v dnsperf >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null; }

WORK=$(mktemp -d /tmp/tandem-dnsiso.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$WORK/tandem" ./cmd/tandem
go build -o "$WORK/loadgen" ./bench/loadgen
go build -o "$WORK/qload" ./bench/dns/qload
T() { "$WORK/tandem" --data "$WORK/data" "$@"; }
"$WORK/tandem" serve --data "$WORK/data" --domain example.test --hostname mail.example.test \
	--smtp-addr "127.0.0.1:$SMTP_PORT" --submission-addr '' --submissions-addr '' --imap-addr '' \
	--imaps-addr '' --pop3-addr '' --pop3s-addr '' --http-addr '' --log-level warn \
	--dns-addr "127.0.0.1:$DNS_PORT" --dns-host-ip 192.0.2.1 --dns-rate-limit -1 \
	>"$WORK/tandem.out" 2>"$WORK/tandem.log" &
PIDS+=($!)
for _ in $(seq 100); do T status >/dev/null 2>&1 && break; sleep 0.2; done
for i in $(seq 100); do echo "user$i@example.test,pw,User $i,"; done >"$WORK/accounts.csv"
T account import "$WORK/accounts.csv" >/dev/null
for i in $(seq 0 49); do T dns record add example.test "host$i" A "10.0.0.$i" >/dev/null; done
sleep 1
# Every (name, type) of the zone, plus a few names that do not exist.
{ T dns zone example.test | awk -F'\t' '$3 == "IN" { print $1 " " $4 }'
  for i in $(seq 0 4); do echo "nx$i.example.test. A"; done; } >"$WORK/queries.txt"
echo "zone example.test: $(wc -l <"$WORK/queries.txt") distinct queries; $(nproc) CPUs; dnsperf at $RATE qps"
NSD_PORT=${NSD_PORT:-5322}
command -v nsd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nsd >/dev/null; }
T dns zone example.test >"$WORK/example.test.zone"
cat >"$WORK/nsd.conf" <<NSDCONF
server:
	ip-address: 127.0.0.1@$NSD_PORT
	server-count: $(nproc)
	reuseport: yes
	username: ""
	chroot: ""
	zonesdir: "$WORK"
	database: ""
	zonelistfile: "$WORK/zone.list"
	xfrdfile: "$WORK/xfrd.state"
	xfrdir: "$WORK"
	pidfile: "$WORK/nsd.pid"
	logfile: "$WORK/nsd.log"
	verbosity: 0
	rrl-ratelimit: 0
remote-control:
	control-enable: no
zone:
	name: example.test
	zonefile: example.test.zone
NSDCONF
nsd -d -c "$WORK/nsd.conf" &
PIDS+=($!)
for _ in $(seq 50); do dig @127.0.0.1 -p "$NSD_PORT" +short +tries=1 +time=1 example.test SOA | grep -q . && break; sleep 0.2; done

smtp() { # label
	"$WORK/loadgen" smtp -addr "127.0.0.1:$SMTP_PORT" -name "$1" -messages "$MESSAGES" -conns "$CONNS" \
		-size "$SIZE" -users 100 -user-fmt 'user%d@example.test' -timeout 5m | tee -a "$WORK/results"
}
with_dns() { # label port
	local label=$1 port=$2
	dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -Q "$RATE" -l "$DNS_SECONDS" -c 4 -q 500 \
		>"$WORK/dnsperf.out" 2>&1 &
	local dp=$!
	"$WORK/qload" -server "127.0.0.1:$port" -queries "$WORK/queries.txt" -label "probe-$label" -workers 1 -window 1 \
		-duration "$((DNS_SECONDS - 2))s" >"$WORK/probe.out" &
	local qp=$!
	sleep 1
	smtp "$label"
	wait "$qp" "$dp"
	awk '/Queries sent/ {s=$3} /Queries completed/ {c=$3} /Queries lost/ {l=$3} /Queries per second/ {q=$4}
		/Average Latency/ {a=$4; m=$8} END { printf "RESULT tool=dnsperf label='"$label"' sent=%s completed=%s lost=%s qps=%s avg_latency_s=%s max_latency_s=%s\n", s, c, l, q, a, m }' \
		"$WORK/dnsperf.out" | tee -a "$WORK/results"
	tee -a "$WORK/results" <"$WORK/probe.out"
}
smtp warmup >/dev/null
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		smtp alone; with_dns dns-tandem "$DNS_PORT"; with_dns dns-nsd "$NSD_PORT"
	else
		with_dns dns-nsd "$NSD_PORT"; with_dns dns-tandem "$DNS_PORT"; smtp alone
	fi
done

med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate() { grep "name=$1 " "$WORK/results" | grep -o 'accept_rate=[0-9.]*' | cut -d= -f2 | med; }
field() { grep "$1" "$WORK/results" | grep -o " $2=[0-9.]*" | cut -d= -f2 | med; }
A=$(rate alone)
echo
echo "| DNS load ($RATE qps) sent to | SMTP intake msg/s (median of $ROUNDS) | vs alone | DNS qps answered | DNS lost (worst round) | probe p50 / p99 µs |"
echo "|---|---|---|---|---|---|"
printf "| nothing (SMTP alone) | %.0f | 1.00 | | | |\n" "$A"
for l in dns-tandem dns-nsd; do
	B=$(rate "$l")
	Q=$(field "tool=dnsperf label=$l " qps)
	L=$(grep "tool=dnsperf label=$l " "$WORK/results" | grep -o 'lost=[0-9]*' | cut -d= -f2 | sort -n | tail -1)
	P50=$(field "label=probe-$l " p50_us)
	P99=$(field "label=probe-$l " p99_us)
	name=$([ "$l" = dns-tandem ] && echo "the same Tandem node" || echo "NSD beside it (control)")
	awk -v n="$name" -v a="$A" -v b="$B" -v q="$Q" -v l="$L" -v p="$P50" -v p9="$P99" \
		'BEGIN { printf "| %s | %.0f | %.2f | %.0f | %s | %s / %s |\n", n, b, b / a, q, l, p, p9 }'
	echo "RESULT isolation=$l smtp_alone=$A smtp_with_dns=$B dns_qps=$Q dns_lost=$L probe_p50_us=$P50 probe_p99_us=$P99" >>"$WORK/summary"
done
cat "$WORK/summary"
