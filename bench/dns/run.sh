#!/usr/bin/env bash
# DNS queries per second: Tandem's dnsd beside NSD (Debian), same zone, same load
# generator, same run. Prints both figures and the ratio dnsd/NSD.
#
#   sudo bench/dns/run.sh
#   sudo NAMES=1000 DURATION=4s ROUNDS=9 WORKERS=4 WINDOW=20 bench/dns/run.sh
#   sudo WIRED=1 bench/dns/run.sh    # the real tandem binary (--dns-addr), zone from the
#                                    # replicated store, records added through the CLI
#
# Needs root only for apt-get (NSD is installed if missing). Listens on 127.0.0.1
# only: NSD on $NSD_PORT, dnsd on $DNSD_PORT.
set -euo pipefail

NAMES=${NAMES:-1000}
DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-9}
WORKERS=${WORKERS:-4}
WINDOW=${WINDOW:-20}
NSD_PORT=${NSD_PORT:-5301}
DNSD_PORT=${DNSD_PORT:-5302}
CPUS=$(nproc)
NSD_SERVERS=${NSD_SERVERS:-$CPUS}
WIRED=${WIRED:-0}

cd "$(dirname "$0")/../.."
if ! command -v nsd >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nsd >/dev/null
fi
command -v dig >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils >/dev/null

WORK=$(mktemp -d /tmp/tandem-dnsbench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$WORK/qload" ./bench/dns/qload
go build -o "$WORK/serve" ./bench/dns/serve
"$WORK/serve" -write-only -names "$NAMES" -zone-out "$WORK/bench.test.zone" -queries-out "$WORK/queries.txt"
DNSD_PATTERN="$WORK/serve -names"
if [ "$WIRED" = 1 ]; then
	# The wired node: domain bench.test made at first start (SOA, NS, MX, SPF, DMARC,
	# DKIM derived), the benchmark's host records added one by one through the CLI
	# (each a Raft write), then the zone the node serves exported for NSD, so both
	# serve exactly the same records.
	go build -o "$WORK/tandem" ./cmd/tandem
	T() { "$WORK/tandem" --data "$WORK/tandem-data" "$@"; }
	"$WORK/tandem" serve --data "$WORK/tandem-data" --domain bench.test --hostname mail.bench.test \
		--smtp-addr '' --submission-addr '' --submissions-addr '' --imap-addr '' --imaps-addr '' \
		--pop3-addr '' --pop3s-addr '' --http-addr '' --log-level warn \
		--dns-addr "127.0.0.1:$DNSD_PORT" --dns-host-ip 192.0.2.1,2001:db8::1 --dns-rate-limit -1 \
		>"$WORK/tandem.out" 2>"$WORK/dnsd.log" &
	PIDS+=($!)
	for _ in $(seq 100); do T status >/dev/null 2>&1 && break; sleep 0.2; done
	start=$(date +%s)
	grep -P '^host\d+\.' "$WORK/bench.test.zone" | while IFS=$'\t' read -r name ttl _ type value; do
		T dns record add bench.test "$name" "$type" "$value" --ttl "$ttl" >/dev/null
	done
	echo "wired: $(grep -cP '^host\d+\.' "$WORK/bench.test.zone") records added through the CLI in $(($(date +%s) - start)) s"
	# Wait for the DKIM keys the leader makes for a new domain, then export.
	for _ in $(seq 50); do T dns zone bench.test | grep -q _domainkey && break; sleep 0.2; done
	T dns zone bench.test >"$WORK/bench.test.zone"
	{ awk -F'\t' '$3 == "IN" { print $1 " " $4 }' "$WORK/bench.test.zone"
	  for i in $(seq 0 $(($(grep -c $'\tIN\t' "$WORK/bench.test.zone") / 50 - 1))); do echo "nx$i.bench.test. A"; done
	} | shuf --random-source=<(yes) >"$WORK/queries.txt"
	DNSD_PATTERN="$WORK/tandem serve"
fi
echo "zone: $(grep -c $'\tIN\t' "$WORK/bench.test.zone") records, $NAMES hosts; $(wc -l <"$WORK/queries.txt") distinct queries; $CPUS CPUs"

# NSD: as many server processes as CPUs (NSD_SERVERS) with SO_REUSEPORT (its recommended fast
# set-up), response rate limiting off (its default 200 qps per /24 would throttle a
# loopback benchmark), no privilege drop, everything in $WORK.
cat >"$WORK/nsd.conf" <<EOF
server:
	ip-address: 127.0.0.1@$NSD_PORT
	server-count: $NSD_SERVERS
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
	hide-version: yes
	rrl-ratelimit: 0
	rrl-whitelist-ratelimit: 0
remote-control:
	control-enable: no
zone:
	name: bench.test
	zonefile: bench.test.zone
EOF
nsd-checkconf "$WORK/nsd.conf"
nsd -d -c "$WORK/nsd.conf" &
PIDS+=($!)
if [ "$WIRED" != 1 ]; then
	"$WORK/serve" -names "$NAMES" -addr "127.0.0.1:$DNSD_PORT" >"$WORK/dnsd.log" 2>&1 &
	PIDS+=($!)
fi

ready() { dig @127.0.0.1 -p "$1" +short +tries=1 +time=1 host0001.bench.test A 2>/dev/null | grep -q '^10\.'; }
for port in "$NSD_PORT" "$DNSD_PORT"; do
	for _ in $(seq 50); do ready "$port" && break; sleep 0.2; done
	ready "$port" || { echo "server on port $port did not come up"; cat "$WORK"/*.log; exit 1; }
done

# Same answers from both (TTLs and order aside) for a sample of the queries.
head -200 "$WORK/queries.txt" | while read -r name type; do
	a=$(dig @127.0.0.1 -p "$NSD_PORT" +short "$name" "$type" | sort)
	b=$(dig @127.0.0.1 -p "$DNSD_PORT" +short "$name" "$type" | sort)
	[ "$a" = "$b" ] || { echo "answers differ for $name $type: nsd [$a] dnsd [$b]"; exit 1; }
done
echo "answers agree on the first 200 queries"

# CPU ticks (user+system, all threads) of the processes matching a pattern, from
# /proc: the server's own cost per query, which background load on a shared machine
# disturbs much less than queries per second.
ticks() {
	local t=0 p s
	for p in $(pgrep -f "$1"); do
		for s in /proc/"$p"/task/*/stat; do
			t=$((t + $(sed 's/.*) //' "$s" | awk '{print $12 + $13}')))
		done
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)
load() { # label port process-pattern
	local t0 t1 out
	t0=$(ticks "$3")
	out=$("$WORK/qload" -server "127.0.0.1:$2" -queries "$WORK/queries.txt" -label "$1" \
		-workers "$WORKERS" -window "$WINDOW" -duration "$DURATION")
	t1=$(ticks "$3")
	echo "$out" | awk -v t=$((t1 - t0)) -v hz="$HZ" '{ split($0, f, "received="); split(f[2], g, " ");
		printf "%s cpu_us_per_query=%.2f\n", $0, t * 1e6 / hz / g[1] }' | tee -a "$WORK/results"
}
# Warm-up, then alternate the order each round so neither server always goes first.
"$WORK/qload" -server "127.0.0.1:$NSD_PORT" -queries "$WORK/queries.txt" -duration 2s >/dev/null
"$WORK/qload" -server "127.0.0.1:$DNSD_PORT" -queries "$WORK/queries.txt" -duration 2s >/dev/null
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		load nsd "$NSD_PORT" "$WORK/nsd.conf"; load dnsd "$DNSD_PORT" "$DNSD_PATTERN"
	else
		load dnsd "$DNSD_PORT" "$DNSD_PATTERN"; load nsd "$NSD_PORT" "$WORK/nsd.conf"
	fi
done

# Per round, the ratio of the two back-to-back measurements: background load on a
# shared machine moves both alike, so the median ratio is steadier than either qps.
awk '/^RESULT/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	q[v["label"], ++n[v["label"]]] = v["qps"] }
	END {
		for (r = 1; r <= n["nsd"]; r++) { printf "round %d: nsd %d dnsd %d ratio %.2f\n", r, q["nsd", r], q["dnsd", r], q["dnsd", r] / q["nsd", r] }
	}' "$WORK/results" | tee "$WORK/rounds"
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
N=$(grep -o 'label=nsd qps=[0-9]*' "$WORK/results" | cut -d= -f3 | med)
D=$(grep -o 'label=dnsd qps=[0-9]*' "$WORK/results" | cut -d= -f3 | med)
R=$(awk '{print $NF}' "$WORK/rounds" | med)
NC=$(grep -o 'label=nsd .*cpu_us_per_query=[0-9.]*' "$WORK/results" | sed 's/.*=//' | med)
DC=$(grep -o 'label=dnsd .*cpu_us_per_query=[0-9.]*' "$WORK/results" | sed 's/.*=//' | med)
echo
echo "| server | qps (median of $ROUNDS × $DURATION) | server CPU µs per query (median) |"
echo "|---|---|---|"
echo "| NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}') ($NSD_SERVERS processes) | $N | $NC |"
LABEL="Tandem dnsd"; [ "$WIRED" = 1 ] && LABEL="Tandem node (tandem serve --dns-addr, replicated zone)"
echo "| $LABEL | $D | $DC |"
echo "| ratio dnsd/NSD (median of per-round qps ratios) | $R | |"
echo "RESULT wired=$WIRED dns_ratio=$R dnsd_qps=$D nsd_qps=$N dnsd_cpu_us=$DC nsd_cpu_us=$NC"

# Cross-check with dnsperf (Debian package) when it is installed: a second,
# independent load generator, same order alternation.
if command -v dnsperf >/dev/null; then
	perf() { dnsperf -s 127.0.0.1 -p "$2" -d "$WORK/queries.txt" -l "${DURATION%s}" -c "$WORKERS" -q $((WORKERS * WINDOW)) 2>/dev/null |
		awk -v l="$1" '/Queries per second/ { printf "RESULT tool=dnsperf label=%s qps=%d\n", l, $4 }'; }
	perf nsd "$NSD_PORT"; perf dnsd "$DNSD_PORT"; perf dnsd "$DNSD_PORT"; perf nsd "$NSD_PORT"
fi
