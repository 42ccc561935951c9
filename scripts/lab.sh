# shellcheck shell=bash
# Lab topology in network namespaces, shared by demo.sh and bench.sh (sourced).
#
#   client 192.0.2.10, 2001:db8:1::10  --  router  --  198.51.100.1, 2001:db8:2::1 gateway
#                                                  `-----  203.0.113.1 (second gateway link)
#
# Every namespace is named "$LAB-<role>" with a unique LAB prefix per run, and is removed
# by lab_cleanup (installed as an EXIT trap by lab_create). Only documentation and
# benchmarking addresses are used; nothing leaves the namespaces.

LAB=${LAB:-mvlab$$}
LAB_DIR=${LAB_DIR:-$(mktemp -d /tmp/mobikevpn-lab.XXXXXX)}
LAB_PIDS=()

lab_ns() { ip netns exec "$LAB-$1" "${@:2}"; }

# lab_bg NS CMD...: runs CMD in namespace NS in the background; LAB_BG is its pid (the
# process itself, not a subshell, so that signals reach it) and it is killed at cleanup.
lab_bg() {
	ip netns exec "$LAB-$1" "${@:2}" &
	LAB_BG=$!
	LAB_PIDS+=("$LAB_BG")
}

lab_cleanup() {
	local pid
	for pid in "${LAB_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${LAB_PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	for n in cl rt gw; do
		ip netns del "$LAB-$n" 2>/dev/null || true
		rm -rf "/etc/netns/$LAB-$n"
	done
	[ -n "${LAB_KEEP:-}" ] || rm -rf "$LAB_DIR"
}

# lab_link NS_A IF_A NS_B IF_B: a veth pair between two namespaces, both ends up.
lab_link() {
	ip link add "${LAB}a" netns "$LAB-$1" type veth peer name "${LAB}b" netns "$LAB-$3"
	lab_ns "$1" ip link set "${LAB}a" name "$2"
	lab_ns "$3" ip link set "${LAB}b" name "$4"
	lab_ns "$1" ip link set "$2" up
	lab_ns "$3" ip link set "$4" up
}

lab_create() {
	trap lab_cleanup EXIT
	trap 'exit 130' INT TERM
	local n
	for n in cl rt gw; do
		ip netns add "$LAB-$n"
		# Its own resolv.conf (ip netns exec mounts it over /etc/resolv.conf): a client
		# applies the DNS servers its gateway assigns there, not on the host.
		mkdir -p "/etc/netns/$LAB-$n"
		printf '# mobikevpn lab %s\nnameserver 192.0.2.53\n' "$LAB-$n" >"/etc/netns/$LAB-$n/resolv.conf"
		lab_ns $n ip link set lo up
		lab_ns $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
			net.ipv6.conf.default.router_solicitations=0
	done
	lab_link cl eth0 rt eth0
	lab_link gw eth0 rt eth1
	lab_link gw eth1 rt eth3
	lab_ns cl ip addr add 192.0.2.10/24 dev eth0
	lab_ns cl ip addr add 2001:db8:1::10/64 dev eth0 nodad
	lab_ns rt ip addr add 192.0.2.1/24 dev eth0
	lab_ns rt ip addr add 2001:db8:1::1/64 dev eth0 nodad
	lab_ns rt ip addr add 198.51.100.254/24 dev eth1
	lab_ns rt ip addr add 2001:db8:2::254/64 dev eth1 nodad
	lab_ns gw ip addr add 198.51.100.1/24 dev eth0
	lab_ns gw ip addr add 2001:db8:2::1/64 dev eth0 nodad
	lab_ns gw ip addr add 203.0.113.1/24 dev eth1
	lab_ns rt ip addr add 203.0.113.254/24 dev eth3
	lab_ns rt sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	lab_ns cl ip route add default via 192.0.2.1
	lab_ns cl ip -6 route add default via 2001:db8:1::1
	lab_ns gw ip route add default via 198.51.100.254
	lab_ns gw ip -6 route add default via 2001:db8:2::254
	lab_ns gw ip route add 192.0.2.0/24 via 203.0.113.254 dev eth1 metric 200
	# Warm the neighbour caches so that first packets are not delayed.
	lab_ns cl ping -c 1 -W 5 198.51.100.1 >/dev/null
	lab_ns cl ping -c 1 -W 5 2001:db8:2::1 >/dev/null
	lab_ns cl ping -c 1 -W 5 203.0.113.1 >/dev/null
}

LAB_PSK="demo secret: replace it with a long random one"

# lab_configs ESP_PROPOSAL: writes $LAB_DIR/gw.yaml and $LAB_DIR/cl.yaml.
lab_configs() {
	local esp=${1:-aes128gcm16}
	cat >"$LAB_DIR/gw.yaml" <<EOF
control: $LAB_DIR/gw.sock
log_level: ${LOG_LEVEL:-info}
tun: { name: mvpn0, mtu: 1400, addrs: [198.18.0.1/24, "2001:db8:ff::1/64"] }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "$LAB_PSK"
pools:
  - name: rw
    addrs: [198.18.100.0/24, "2001:db8:100::/64"]
    dns: [198.18.0.53]
connections:
  rw:
    local_addrs: [198.51.100.1, 203.0.113.1, "2001:db8:2::1"]
    remote_addrs: ["%any"]
    proposals: [aes128gcm16-prfsha256-x25519]
    pools: [rw]
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%any" }
    children:
      net:
        local_ts: [198.18.0.0/24, "2001:db8:ff::/64"]
        remote_ts: [dynamic]
        esp_proposals: [$esp]
EOF
	cat >"$LAB_DIR/cl.yaml" <<EOF
control: $LAB_DIR/cl.sock
log_level: ${LOG_LEVEL:-info}
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "$LAB_PSK"
connections:
  home:
    remote_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519]
    vips: [0.0.0.0, "::"]
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    start_action: none
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.0.0/24, "2001:db8:ff::/64"]
        esp_proposals: [$esp]
EOF
}

# lab_start_daemons BIN: starts the gateway and the client and waits for their sockets.
lab_start_daemons() {
	local bin=$1
	lab_bg gw "$bin" run -c "$LAB_DIR/gw.yaml" >"$LAB_DIR/gw.log" 2>&1
	lab_bg cl "$bin" run -c "$LAB_DIR/cl.yaml" >"$LAB_DIR/cl.log" 2>&1
	local s
	for s in gw cl; do
		for _ in $(seq 100); do
			"$bin" status --control "$LAB_DIR/$s.sock" >/dev/null 2>&1 && break
			sleep 0.05
		done
		"$bin" status --control "$LAB_DIR/$s.sock" >/dev/null || { cat "$LAB_DIR/$s.log" >&2; return 1; }
	done
}

# now_ms prints a monotonic-enough wall clock in milliseconds.
now_ms() { date +%s%3N; }
