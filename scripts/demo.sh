#!/usr/bin/env bash
# The demo: a gateway and a client in network namespaces, a tunnel up, traffic through
# it, and a short summary. Run as root on a Debian/Ubuntu machine; it installs what it
# needs, builds mobikevpn, and removes everything it created when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
	echo "demo.sh needs root (network namespaces and TUN devices): sudo ./scripts/demo.sh" >&2
	exit 1
fi
need=()
for p in iproute2 iputils-ping iperf3; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}..."
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "Go is needed to build mobikevpn (https://go.dev/dl/)" >&2; exit 1; }

echo "building bin/mobikevpn..."
mkdir -p bin
go build -o bin/mobikevpn ./cmd/mobikevpn
BIN=$PWD/bin/mobikevpn

# shellcheck source=lab.sh
. scripts/lab.sh
lab_create
lab_configs aes128gcm16
echo "lab $LAB: client 192.0.2.10 -- router -- 198.51.100.1 / 203.0.113.1 gateway (files in $LAB_DIR)"
lab_start_daemons "$BIN"

t0=$(now_ms)
"$BIN" up home --control "$LAB_DIR/cl.sock"
t1=$(now_ms)
handshake=$((t1 - t0))
echo
"$BIN" status --control "$LAB_DIR/cl.sock"
echo

ping4=$(lab_ns cl ping -c 20 -i 0.05 -W 2 198.18.0.1 | tail -2)
ping6=$(lab_ns cl ping -c 20 -i 0.05 -W 2 2001:db8:ff::1 | tail -2)

lab_ns gw iperf3 -s -1 -D -B 198.18.0.1 >/dev/null 2>&1
sleep 0.3
tcp=$(lab_ns cl iperf3 -c 198.18.0.1 -t 3 -J | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1)
lab_ns gw iperf3 -s -1 -D -B 198.51.100.1 >/dev/null 2>&1
sleep 0.3
plain=$(lab_ns cl iperf3 -c 198.51.100.1 -t 3 -J | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1)

# The responder-requested switch: the gateway asks the client to move to its second
# address while a ping runs at 50 packets per second.
lab_bg cl ping -i 0.02 -W 1 198.18.0.1 >"$LAB_DIR/flow.txt" 2>&1
flow=$LAB_BG
sleep 1
echo "gateway: mobikevpn switch --to 203.0.113.1 --all --wait 5s"
switch_out=$("$BIN" switch --control "$LAB_DIR/gw.sock" --to 203.0.113.1 --all --wait 5s)
echo "$switch_out"
sleep 1
kill -INT $flow; wait $flow 2>/dev/null || true
flow_summary=$(grep -E 'packets transmitted' "$LAB_DIR/flow.txt")
switch_ms=$(echo "$switch_out" | sed -n 's/.*moved: .* after \(.*\)$/\1/p')
echo
"$BIN" status --control "$LAB_DIR/cl.sock" >"$LAB_DIR/status.txt"
sed -n 1,4p "$LAB_DIR/status.txt"

echo "----------------------------------------------------------------"
echo "summary"
printf '  handshake (mobikevpn up -> established): %s ms\n' "$handshake"
printf '  ping through the tunnel, IPv4: %s\n' "$(echo "$ping4" | tr '\n' ' ')"
printf '  ping through the tunnel, IPv6: %s\n' "$(echo "$ping6" | tr '\n' ' ')"
printf '  TCP through the tunnel (iperf3, 3 s): %.0f Mbit/s\n' "$(awk -v b="${tcp:-0}" 'BEGIN{print b/1e6}')"
printf '  TCP over the plain path, same run:    %.0f Mbit/s\n' "$(awk -v b="${plain:-0}" 'BEGIN{print b/1e6}')"
printf '  switch to the gateway'"'"'s second address (SWITCH_TO_IP_ADDRESS -> UPDATE_SA_ADDRESSES): %s\n' "${switch_ms:-failed}"
printf '  packets during the switch (ping at 50/s across it): %s\n' "$flow_summary"
echo "----------------------------------------------------------------"
