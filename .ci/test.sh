#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), runs
# every Go test (integration tests start real nodes and talk to them with
# Python's smtplib/imaplib/poplib, curl and swaks), then runs each fuzz
# target briefly. Run it as root on Debian 12 with Go: bash .ci/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-10s}"

need=()
command -v python3 >/dev/null || need+=(python3)
command -v chromium >/dev/null || need+=(chromium) # browser tests (node/e2e/browser_*_test.go)
command -v curl >/dev/null || need+=(curl)
command -v swaks >/dev/null || need+=(swaks)
command -v openssl >/dev/null || need+=(openssl)
command -v ping >/dev/null || need+=(iputils-ping)
command -v ip >/dev/null || need+=(iproute2)
command -v traceroute >/dev/null || need+=(traceroute)
command -v dig >/dev/null || need+=(bind9-dnsutils)
/usr/bin/python3 -c 'import dkim' 2>/dev/null || need+=(python3-dkim)
/usr/bin/python3 -c 'import authres' 2>/dev/null || need+=(python3-authres)
command -v clamd >/dev/null || need+=(clamav-daemon)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: run as root, or install them with apt-get" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 20m ./... 2>&1 | tee /tmp/tandem-go-test.log
status=${PIPESTATUS[0]}
if [ "$status" != 0 ]; then
  echo "go test failed" >&2
  exit "$status"
fi

echo "== fuzz targets, $FUZZTIME each"
fuzz_pass=0
fuzz_fail=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "-- $pkg $target"
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/tandem-fuzz.log 2>&1; then
      fuzz_pass=$((fuzz_pass + 1))
    elif grep -q "context deadline exceeded" /tmp/tandem-fuzz.log && ! grep -q "Failing input written" /tmp/tandem-fuzz.log; then
      # The Go fuzzing engine sometimes reports its own time limit as a
      # failure while a worker is busy; no input failed.
      echo "   (time limit hit inside the fuzzing engine; no failing input)"
      fuzz_pass=$((fuzz_pass + 1))
    else
      cat /tmp/tandem-fuzz.log
      fuzz_fail=$((fuzz_fail + 1))
    fi
  done
done
echo "fuzz: $fuzz_pass passed, $fuzz_fail failed"
[ "$fuzz_fail" = 0 ]
