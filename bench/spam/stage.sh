#!/usr/bin/env bash
# The spam *stage* (filter/spamstage: the classifier as the mail pipeline runs it, with its
# learned state in the replicated KV store, policy lookups and X-Spam headers) on one core,
# beside bogofilter in the same run, on the corpus bench/spam/run.sh builds.
#
#   bench/spam/stage.sh        # needs bench/out/spamcorpus (run.sh builds it) and bogofilter
#
# Tandem trains the train split through the KV store (as `tandem filter train` does) and scores
# the test split in one goroutine (taskset -c 0, GOMAXPROCS=1); bogofilter is trained on the same
# split and classifies the same files in one process (-b) on the same core. Three rounds; prints
# RESULT lines (median msgs/s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${OUT:-$repo/bench/out}
corpus=${CORPUS:-$out/spamcorpus}
work=$out/spam-stage
[ -d "$corpus/test" ] || { echo "no corpus in $corpus: run bench/spam/run.sh first (or set CORPUS=)" >&2; exit 1; }
command -v bogofilter >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bogofilter >/dev/null; }
rm -rf "$work"; mkdir -p "$work/bogo"
(cd "$repo" && go test -c -o "$work/spamstage.test" ./filter/spamstage)
find "$corpus/train/ham" -type f | bogofilter -d "$work/bogo" -b -n
find "$corpus/train/spam" -type f | bogofilter -d "$work/bogo" -b -s
find "$corpus/test" -type f | sort >"$work/test-files"
n=$(wc -l <"$work/test-files")
for round in 1 2 3; do
  TANDEM_SPAM_CORPUS=$corpus taskset -c 0 env GOMAXPROCS=1 "$work/spamstage.test" -test.run 'TestStageCorpus$' -test.count=1 | grep '^RESULT' | tee "$work/tandem.$round"
  t=$( { /usr/bin/env time -f "%U %S %e" sh -c "taskset -c 0 bogofilter -d $work/bogo -T -b <$work/test-files" >"$work/bogo.out"; } 2>&1 | tail -1)
  bw=$(awk -v n="$n" -v t="$t" 'BEGIN{split(t,a," "); printf "%.0f", n/a[3]}')
  bc=$(awk -v n="$n" -v t="$t" 'BEGIN{split(t,a," "); printf "%.0f", n/(a[1]+a[2])}')
  tw=$(sed -nE 's/.*stage_msgs_per_s=([0-9]+).*/\1/p' "$work/tandem.$round")
  echo "RESULT round=$round tandem_stage_msgs_per_s=$tw bogofilter_msgs_per_s=$bw bogofilter_msgs_per_cpu_s=$bc ratio=$(awk -v a="$tw" -v b="$bw" 'BEGIN{printf "%.2f", a/b}')" | tee -a "$work/rounds"
done
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
tw=$(sed -nE 's/.*tandem_stage_msgs_per_s=([0-9]+).*/\1/p' "$work/rounds" | med)
bw=$(sed -nE 's/.*bogofilter_msgs_per_s=([0-9]+).*/\1/p' "$work/rounds" | med)
echo "RESULT median tandem_stage_msgs_per_s=$tw bogofilter_msgs_per_s=$bw ratio=$(awk -v a="$tw" -v b="$bw" 'BEGIN{printf "%.2f", a/b}')"
