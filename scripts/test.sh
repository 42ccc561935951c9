#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the unit tests, short fuzzing runs,
# the cross-compilation check and the integration tests (network namespaces, as root).
#
#   ./scripts/test.sh            everything
#   FUZZTIME=10s ./scripts/test.sh
#   SKIP_FUZZ=1 ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

FUZZTIME=${FUZZTIME:-3s}

log() { printf '\n== %s\n' "$*"; }

# --- packages ---------------------------------------------------------------
# Debian/Ubuntu packages the integration tests use. Only missing ones are installed.
PKGS=(iproute2 iputils-ping iperf3 nftables tcpdump tshark procps conntrack util-linux
	strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins strongswan-pki)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	missing=()
	for p in "${PKGS[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

command -v go >/dev/null || { echo "Go is not installed (expected /usr/local/go/bin/go)" >&2; exit 1; }
log "$(go version)"
go mod download

# --- static checks ------------------------------------------------------------
log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
log "go vet"
go vet ./...
# staticcheck (honnef.co/go/tools), pinned; it must report nothing. The import rules of
# ARCHITECTURE.md are checked by internal/layers among the unit tests.
log "staticcheck, exhaustive switches"
gobin="$(go env GOPATH)/bin"
GOBIN="$gobin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
"$gobin/staticcheck" ./...
# Switches marked //exhaustive:enforce list every constant of their enum, and type
# switches over the sealed interfaces marked //sumtype:decl (the engine's actions, the
# path manager's decisions) every implementation.
GOBIN="$gobin" go install github.com/nishanths/exhaustive/cmd/exhaustive@v0.17.1
"$gobin/exhaustive" -e ./...
GOBIN="$gobin" go install github.com/alecthomas/go-check-sumtype/cmd/go-check-sumtype@v0.4.0
"$gobin/go-check-sumtype" ./...

# --- build ----------------------------------------------------------------------
log "build"
mkdir -p bin
go build -o bin/mobikevpn ./cmd/mobikevpn
log "cross-compile"
for os in linux darwin windows freebsd; do
	for arch in amd64 arm64; do
		GOOS=$os GOARCH=$arch go build -o /dev/null ./cmd/mobikevpn
		echo "ok $os/$arch"
	done
done

# --- unit tests -----------------------------------------------------------------
log "unit tests"
go test -count=1 $(go list ./... | grep -v /integration)
log "race detector (engine, datapath, sockets, control)"
go test -count=1 -race ./ike/ ./esp/ ./udp/... ./internal/control/

# --- fuzzing ------------------------------------------------------------------------
if [ -z "${SKIP_FUZZ:-}" ]; then
	log "fuzzing, $FUZZTIME per target"
	for pkg in $(go list ./... | grep -v /integration); do
		dir=$(go list -f '{{.Dir}}' "$pkg")
		for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //' | sort -u); do
			echo "fuzz $pkg $target"
			for attempt in 1 2; do
				if go test "$pkg" -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=10x >/tmp/mobikevpn-fuzz.log 2>&1; then
					break
				fi
				# Go's fuzzer sometimes reports "context deadline exceeded" when the time
				# runs out mid-run; only a written failing input is a finding.
				if grep -q 'Failing input written to' /tmp/mobikevpn-fuzz.log || [ $attempt = 2 ]; then
					cat /tmp/mobikevpn-fuzz.log >&2
					echo "fuzzing $pkg $target failed; a failing input is kept under $dir/testdata/fuzz" >&2
					exit 1
				fi
			done
		done
	done
fi

# --- integration --------------------------------------------------------------------
log "integration tests"
if [ "$(id -u)" != 0 ]; then
	echo "not root: the integration tests will skip (they need network namespaces)"
fi
# The progress shows one line per test and message; the whole output of every test that
# failed (its daemons' logs, the captures) is printed at the end, from a log of this run.
ilog=$(mktemp /tmp/mobikevpn-integration.XXXXXX.log)
MOBIKEVPN_BIN="$PWD/bin/mobikevpn" go test -count=1 -v -timeout 20m ./integration/ 2>&1 | tee "$ilog" | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+\S+_test.go)' || true
if ! grep -q '^ok' "$ilog"; then
	echo "--- the output of each failed test, in full:" >&2
	# A top-level test's output runs from its "=== RUN" to its "--- FAIL" (they do not
	# run in parallel); a panic or timeout ends the log instead.
	awk '/^=== RUN   [^\/]+$/ { buf = ""; name = $3 }
	     /^panic:/ { printing = 1; printf "%s", buf }
	     printing { print; next }
	     { buf = buf $0 "\n" }
	     /^--- FAIL: / && $3 == name { printf "%s", buf; buf = "" }' "$ilog" >&2
	tail -20 "$ilog" >&2
	echo "integration tests failed (the whole log: $ilog)" >&2
	exit 1
fi
rm -f "$ilog"
log "all tests passed"
