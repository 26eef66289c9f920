#!/usr/bin/env bash
# High-availability figures (issue: HA): failover time from the leader's
# SIGKILL to the first "250 OK" on the virtual IP over many drills, and the
# durable intake of three replicated nodes as a ratio of one node, measured
# in one run. Runs as root: it builds network namespaces on this machine
# (traffic stays inside them).
#   RUNS=20 MESSAGES=3000 bench/ha.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ping >/dev/null || apt-get install -y -qq iputils-ping >/dev/null
export TANDEM_BENCH=1
export TANDEM_FAILOVER_RUNS="${RUNS:-20}"
export TANDEM_REPL_MESSAGES="${MESSAGES:-3000}"
go test -count=1 -timeout 60m -run 'TestBench' -v ./node/hatest 2>&1 | grep -E '^RESULT|run [0-9]+:|FAIL|^ok'
echo "anchors: keepalived's default VRRP failover is about 3-4 s; Pacemaker's tens of seconds"
