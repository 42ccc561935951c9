#!/usr/bin/env bash
# The datapath benchmark: mobikevpn against wireguard-go and strongSwan (kernel-libipsec)
# on one topology, in one run, in alternation.
#
#   client 192.0.2.10 -- router -- 198.51.100.1 gateway      (scripts/lab.sh, veth links)
#
# Variants, each measured in every round (A B C ... A B C ...):
#   plain       iperf3 over the veth path itself (the limit)
#   mvpn-aes128 mobikevpn, esp_proposals aes128gcm16        inner 198.18.0.0/24
#   mvpn-aes256 mobikevpn, aes256gcm16
#   mvpn-chacha mobikevpn, chacha20poly1305
#   wggo        wireguard-go (built from the Go module proxy, version below)   198.18.1.0/24
#   swan        strongSwan charon with kernel-libipsec, aes128gcm16, UDP encap  198.18.2.0/24
# Every tunnel runs with an inner MTU of 1400.
#
# Measures per variant and round: TCP single stream, TCP 4 streams (iperf3 -P 4), UDP
# packets per second delivered (receiver side, iperf3 -u -b 0) with 1400-byte and 64-byte
# IP packets (-l 1372 and -l 36: payload plus 28 bytes of IPv4 and UDP header, so
# that no tunnel fragments), and the VPN daemons' CPU seconds (utime+stime of both ends
# from /proc/PID/stat) per GB moved in the TCP single-stream test.
#
# Prints medians (min-max) and the ratios mobikevpn/wireguard-go and
# mobikevpn/strongSwan, and writes everything as JSON.
#
#   sudo ./scripts/bench.sh                         3 rounds, 10 s TCP, 5 s UDP (~12 min)
#   ROUNDS=5 TCP_TIME=10 UDP_TIME=10 OUT=bench.json ./scripts/bench.sh
#   VARIANTS="mvpn-aes128 wggo" ./scripts/bench.sh  a subset
#   PERF_DIR=/tmp/prof ./scripts/bench.sh           also records `perf` profiles of the
#                                                   mobikevpn daemons (TCP single stream)
#   VARIANTS="mvpn-aes128 mvpn-aes128-1worker mvpn-aes128-nooffload" ./scripts/bench.sh
#                                                   what crypto workers and UDP GSO/GRO gain
#   MVPN_BIN=/path/to/old/mobikevpn VARIANTS=mvpn-aes128 ./scripts/bench.sh
#                                                   measure another build (before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "bench.sh needs root (network namespaces, TUN devices)" >&2; exit 1; }

# `bench.sh cluster`: a gateway cluster of three nodes (and three etcd members) in
# namespaces; node A with SAS clients (default 1000) is drained to the two others: by
# switch hand-over, by RFC 5685 redirect of our load generator, by redirect of strongSwan
# clients (one charon, a connection each): wall time, the gateways' CPU, etcd's writes,
# pings lost on a sample flow (one of our clients), side by side; then node A with
# SAS clients is killed (SIGKILL, links down): the survivors take its SAs over from etcd,
# against the clients reconnecting with new handshakes (a cluster without shared
# state): the time until each client is served again (median, p99), the survivors' CPU,
# etcd's writes, pings lost on a sample flow (integration/bench_cluster_test.go).
#   sudo ./scripts/bench.sh cluster
#   SAS=200 OUT=cluster.json FAILOVER_OUT=failover.json ./scripts/bench.sh cluster
if [ "${1:-}" = cluster ]; then
	out=$(realpath -m "${OUT:-bench-cluster.json}")
	fout=$(realpath -m "${FAILOVER_OUT:-bench-cluster-failover.json}")
	MOBIKEVPN_BENCH_CLUSTER=1 MOBIKEVPN_BENCH_FAILOVER=1 MOBIKEVPN_BENCH_SAS=${SAS:-1000} \
		MOBIKEVPN_BENCH_OUT=$out MOBIKEVPN_BENCH_FAILOVER_OUT=$fout \
		go test -count=1 -timeout 90m -run '^TestBenchCluster(Failover)?$' -v ./integration/ |
		grep -E 'bench_cluster_test.go|^(--- |ok|FAIL)'
	rc=${PIPESTATUS[0]}
	[ "$rc" = 0 ] && echo "wrote $out and $fout"
	exit "$rc"
fi

ROUNDS=${ROUNDS:-3}
TCP_TIME=${TCP_TIME:-10}
UDP_TIME=${UDP_TIME:-5}
OUT=${OUT:-bench.json}
VARIANTS=${VARIANTS:-plain mvpn-aes128 mvpn-aes256 mvpn-chacha wggo swan}
PERF_DIR=${PERF_DIR:-}
# wireguard-go as pinned in go.mod (golang.zx2c4.com/wireguard); built, never committed.
WGGO_VERSION=${WGGO_VERSION:-v0.0.0-20260522210424-ecfc5a8d5446}
MTU=1400

need=()
for p in iproute2 iputils-ping iperf3 wireguard-tools python3 strongswan-charon strongswan-swanctl libcharon-extra-plugins util-linux; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}..."
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# strongswan-charon starts a system-wide charon through systemd where there is one; the
# benchmark runs its own in the namespaces and leaves that one alone.

if [ -n "${MVPN_BIN:-}" ]; then
	BIN=$MVPN_BIN # another build, e.g. an older commit's, for a before/after comparison
else
	echo "building bin/mobikevpn..."
	mkdir -p bin
	go build -o bin/mobikevpn ./cmd/mobikevpn
	BIN=$PWD/bin/mobikevpn
fi

# shellcheck source=lab.sh
. scripts/lab.sh
WGBIN_DIR=$(mktemp -d /tmp/mobikevpn-wggo.XXXXXX)
echo "building wireguard-go $WGGO_VERSION..."
(cd "$WGBIN_DIR" && GOBIN="$WGBIN_DIR" GOFLAGS= go install "golang.zx2c4.com/wireguard@$WGGO_VERSION")
WGGO=$WGBIN_DIR/wireguard
CHARON=${CHARON:-/usr/lib/ipsec/charon}
[ -x "$CHARON" ] || CHARON=/usr/libexec/ipsec/charon

bench_cleanup() {
	local pid
	for pid in "${LAB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	lab_cleanup
	rm -rf "$WGBIN_DIR"
}
lab_create
trap bench_cleanup EXIT
echo "lab $LAB: client 192.0.2.10 -- router -- 198.51.100.1 gateway (files in $LAB_DIR)"
RES=$LAB_DIR/results.tsv
: >"$RES"

# stop_bg PID...: ends background processes started with lab_bg and waits for them.
stop_bg() {
	local pid
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# cpu_ticks PID...: the sum of utime and stime of the processes, in clock ticks.
cpu_ticks() {
	local t=0 pid f
	for pid in "$@"; do
		f=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
		# After "pid (comm)": state is field 1, utime field 12, stime field 13.
		t=$((t + $(echo "$f" | awk '{print $12 + $13}')))
	done
	echo $t
}
HZ=$(getconf CLK_TCK)

# ------------------------------------------------------------------ variants: up/down
# Each *_up sets SERVER (the address iperf3 listens on in the gateway namespace), CLIENT_BIND
# (the client's source address, empty for the kernel's choice) and PIDS (the daemons).

plain_up() { SERVER=198.51.100.1 CLIENT_BIND= PIDS=(); }
plain_down() { :; }

# mvpn_up ESP_PROPOSAL [DATAPATH]: DATAPATH is a `datapath:` setting for both ends.
mvpn_up() {
	lab_configs "$1"
	sed -i 's/log_level: .*/log_level: warn/' "$LAB_DIR/gw.yaml" "$LAB_DIR/cl.yaml"
	if [ -n "${2:-}" ]; then
		sed -i "1i datapath: $2" "$LAB_DIR/gw.yaml" "$LAB_DIR/cl.yaml"
	fi
	LAB_PIDS=()
	lab_start_daemons "$BIN"
	PIDS=("${LAB_PIDS[@]}")
	"$BIN" up home --control "$LAB_DIR/cl.sock" >/dev/null
	SERVER=198.18.0.1 CLIENT_BIND=
	lab_ns cl ping -c 1 -W 5 "$SERVER" >/dev/null
}
mvpn_down() { stop_bg "${PIDS[@]}"; LAB_PIDS=(); }

WG_CL=bwc$$ WG_GW=bwg$$
wggo_up() {
	local kc kg
	kc=$(wg genkey) kg=$(wg genkey)
	LAB_PIDS=()
	lab_bg cl env LOG_LEVEL=error "$WGGO" -f "$WG_CL" >"$LAB_DIR/wg-cl.log" 2>&1
	PIDS=("$LAB_BG")
	lab_bg gw env LOG_LEVEL=error "$WGGO" -f "$WG_GW" >"$LAB_DIR/wg-gw.log" 2>&1
	PIDS+=("$LAB_BG")
	for _ in $(seq 100); do
		[ -S "/var/run/wireguard/$WG_CL.sock" ] && [ -S "/var/run/wireguard/$WG_GW.sock" ] && break
		sleep 0.05
	done
	lab_ns gw wg set "$WG_GW" private-key <(echo "$kg") listen-port 51820 \
		peer "$(echo "$kc" | wg pubkey)" allowed-ips 198.18.1.2/32
	lab_ns cl wg set "$WG_CL" private-key <(echo "$kc") \
		peer "$(echo "$kg" | wg pubkey)" endpoint 198.51.100.1:51820 allowed-ips 198.18.1.0/24
	lab_ns gw ip addr add 198.18.1.1/24 dev "$WG_GW"
	lab_ns cl ip addr add 198.18.1.2/24 dev "$WG_CL"
	lab_ns gw ip link set "$WG_GW" mtu $MTU up
	lab_ns cl ip link set "$WG_CL" mtu $MTU up
	SERVER=198.18.1.1 CLIENT_BIND=
	lab_ns cl ping -c 1 -W 5 "$SERVER" >/dev/null
}
wggo_down() { stop_bg "${PIDS[@]}"; LAB_PIDS=(); }

# swan_conf ROLE: strongswan.conf and swanctl.conf for charon in namespace ROLE (cl, gw).
swan_conf() {
	local r=$1 d=$LAB_DIR/swan-$1
	mkdir -p "$d"
	cat >"$d/strongswan.conf" <<EOF
charon {
	# kernel-libipsec must come before kernel-netlink so that it handles the IPsec SAs.
	load = random nonce openssl aes gcm sha2 hmac x509 pem pkcs1 pubkey curve25519 kdf kernel-libipsec kernel-netlink socket-default vici updown
	port = 500
	port_nat_t = 4500
	install_routes = yes
	filelog { stderr { default = 0 ike = 0 } }
	syslog { daemon { default = -1 } }
	plugins {
		vici { socket = unix://$d/vici }
		kernel-libipsec { mtu = $MTU }
	}
}
EOF
	local me peer lts rts
	if [ "$r" = gw ]; then
		me=198.51.100.1 peer=192.0.2.10 lts=198.18.2.1/32 rts=198.18.2.2/32
	else
		me=192.0.2.10 peer=198.51.100.1 lts=198.18.2.2/32 rts=198.18.2.1/32
	fi
	cat >"$d/swanctl.conf" <<EOF
connections {
	bench {
		local_addrs = $me
		remote_addrs = $peer
		proposals = aes128gcm16-prfsha256-x25519
		encap = yes
		local { auth = psk
			id = $r.bench.example }
		remote { auth = psk
			id = $([ "$r" = gw ] && echo cl || echo gw).bench.example }
		children {
			net {
				local_ts = $lts
				remote_ts = $rts
				esp_proposals = aes128gcm16
				start_action = none
			}
		}
	}
}
secrets {
	ike-bench {
		id-1 = gw.bench.example
		id-2 = cl.bench.example
		secret = "$LAB_PSK"
	}
}
EOF
}

swan_up() {
	local r
	LAB_PIDS=()
	PIDS=()
	lab_ns gw ip addr replace 198.18.2.1/32 dev lo
	lab_ns cl ip addr replace 198.18.2.2/32 dev lo
	for r in gw cl; do
		swan_conf $r
		# A private /run for each charon (pid file, default sockets).
		lab_bg $r env STRONGSWAN_CONF="$LAB_DIR/swan-$r/strongswan.conf" \
			unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run && exec "$0"' "$CHARON" \
			>"$LAB_DIR/swan-$r.log" 2>&1
		PIDS+=("$LAB_BG")
	done
	for r in gw cl; do
		for _ in $(seq 100); do [ -S "$LAB_DIR/swan-$r/vici" ] && break; sleep 0.05; done
		swanctl --load-all --file "$LAB_DIR/swan-$r/swanctl.conf" --uri "unix://$LAB_DIR/swan-$r/vici" \
			>>"$LAB_DIR/swanctl.log" 2>&1
	done
	swanctl --initiate --child net --uri "unix://$LAB_DIR/swan-cl/vici" >>"$LAB_DIR/swanctl.log" 2>&1
	SERVER=198.18.2.1 CLIENT_BIND=198.18.2.2
	for _ in $(seq 50); do lab_ns cl ping -c 1 -W 1 -I "$CLIENT_BIND" "$SERVER" >/dev/null 2>&1 && break; done
	lab_ns cl ping -c 1 -W 5 -I "$CLIENT_BIND" "$SERVER" >/dev/null
}
swan_down() { stop_bg "${PIDS[@]}"; LAB_PIDS=(); }

variant_up() {
	case $1 in
	plain) plain_up ;;
	mvpn-aes128) mvpn_up aes128gcm16 ;;
	mvpn-aes256) mvpn_up aes256gcm16 ;;
	mvpn-chacha) mvpn_up chacha20poly1305 ;;
	# What the optimisations gain (not in the default set): the crypto of a batch on
	# one goroutine, and that without UDP GSO/GRO either.
	mvpn-aes128-1worker) mvpn_up aes128gcm16 "{ workers: 1 }" ;;
	mvpn-aes128-nooffload) mvpn_up aes128gcm16 "{ workers: 1, udp_offload: false }" ;;
	wggo) wggo_up ;;
	swan) swan_up ;;
	*) echo "unknown variant $1" >&2; exit 2 ;;
	esac
}
variant_down() {
	case $1 in
	plain) plain_down ;;
	mvpn-*) mvpn_down ;;
	wggo) wggo_down ;;
	swan) swan_down ;;
	esac
}

# ------------------------------------------------------------------ measurements

# iperf VARIANT ROUND TEST ARGS...: one iperf3 run from the client to SERVER; appends
# "variant round test value cpu_s bytes" to $RES. value: bit/s (TCP) or delivered
# packets/s (UDP).
iperf() {
	local v=$1 r=$2 test=$3
	shift 3
	local j=$LAB_DIR/$v-$r-$test.json port=5201
	lab_ns gw iperf3 -s -1 -B "$SERVER" -p $port >/dev/null 2>&1 &
	local srv=$!
	for _ in $(seq 50); do lab_ns gw ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.05; done
	local c0 c1 perf=
	c0=$(cpu_ticks "${PIDS[@]}")
	if [ -n "$PERF_DIR" ] && [ "$test" = tcp1 ] && [ "${v%%-*}" = mvpn ]; then
		mkdir -p "$PERF_DIR"
		perf record -F 999 -g -o "$PERF_DIR/$v-$r.data" -p "$(IFS=,; echo "${PIDS[*]}")" -- sleep "$TCP_TIME" >/dev/null 2>&1 &
		perf=$!
	fi
	lab_ns cl iperf3 -c "$SERVER" ${CLIENT_BIND:+-B "$CLIENT_BIND"} -p $port -J "$@" >"$j" 2>"$j.err" || true
	c1=$(cpu_ticks "${PIDS[@]}")
	[ -z "$perf" ] || wait "$perf" || true
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	python3 scripts/bench/summarize.py parse "$j" "$test" "$v" "$r" "$(((c1 - c0)))" "$HZ" >>"$RES"
}

run_variant() {
	local v=$1 r=$2
	variant_up "$v"
	iperf "$v" "$r" tcp1 -t "$TCP_TIME"
	iperf "$v" "$r" tcp4 -t "$TCP_TIME" -P 4
	iperf "$v" "$r" udp1400 -t "$UDP_TIME" -u -b 0 -l 1372
	iperf "$v" "$r" udp64 -t "$UDP_TIME" -u -b 0 -l 36
	variant_down "$v"
	# The last line of each test, for the impatient.
	awk -v v="$v" -v r="$r" '$1 == v && $2 == r { printf "  %-12s round %s %-8s %s\n", $1, $2, $3, $4 }' "$RES"
}

start=$(date +%s)
for r in $(seq "$ROUNDS"); do
	echo "round $r/$ROUNDS"
	for v in $VARIANTS; do
		run_variant "$v" "$r"
	done
done
echo "took $(($(date +%s) - start)) s"
python3 scripts/bench/summarize.py report "$RES" "$OUT" "$ROUNDS" "$TCP_TIME" "$UDP_TIME" "$WGGO_VERSION" "$(uname -r)" "$(nproc)"
echo "wrote $OUT"
