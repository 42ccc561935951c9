#!/usr/bin/env bash
# Compares, in one run on one topology, the two ways a client leaves a gateway address:
#
#   directed: the gateway asks (SWITCH_TO_IP_ADDRESS, draft-smyslov-ipsecme-ikev2-r-mobike)
#             and the client moves at once: `mobikevpn switch --to ... --wait`.
#   classic:  the gateway's address silently stops working; the client finds out by itself
#             (RFC 4555: a liveness check fails, path probing finds the other address).
#
# For each: how long traffic stops (the longest gap between ping replies at 50/s) and how
# many packets are lost. Prints a table of medians (min-max) and writes it as JSON.
#
#   sudo ./scripts/switch-compare.sh            20 directed switches, 5 classic failovers
#   RUNS=20 CLASSIC_RUNS=10 ./scripts/switch-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }

RUNS=${RUNS:-20}
CLASSIC_RUNS=${CLASSIC_RUNS:-5}
DPD=${DPD:-1s}
OUT=${OUT:-switch-compare.json}

mkdir -p bin
go build -o bin/mobikevpn ./cmd/mobikevpn
BIN=$PWD/bin/mobikevpn
# shellcheck source=lab.sh
. scripts/lab.sh
lab_create
lab_configs aes128gcm16
# The client's liveness checks and retransmissions decide the classic failover's speed.
sed -i "s/^    start_action: none$/    start_action: none\n    dpd_delay: $DPD/" "$LAB_DIR/cl.yaml"
sed -i "1i retransmit: { timeout: 500ms, tries: 5, base: 1.5 }" "$LAB_DIR/cl.yaml"
# The runs switch the same SA back and forth every two seconds: lift the anti-flapping
# limits (switch_limit per minute, switch_hold) on both sides for the measurement.
sed -i "s/^    start_action: none$/    start_action: none\n    switch_limit: 1000\n    switch_hold: 0s/" "$LAB_DIR/cl.yaml"
sed -i "s/^    pools: \[rw\]$/    pools: [rw]\n    switch_limit: 1000\n    switch_hold: 0s/" "$LAB_DIR/gw.yaml"
lab_start_daemons "$BIN"
"$BIN" up home --control "$LAB_DIR/cl.sock" >/dev/null

gw_local() {
	"$BIN" status --json --control "$LAB_DIR/gw.sock" | tr -d ' \n' | grep -o '"local":"[^"]*"' | head -1 | sed 's/"local":"\[*\([^]]*\)\]*:4500"/\1/'
}

# measure CMD...: runs a 50/s ping, then CMD at t=0.6s, keeps pinging 1.5 s after CMD
# returned, and prints "gap_ms lost".
measure() {
	local f="$LAB_DIR/ping.txt"
	lab_bg cl ping -D -n -i 0.02 -W 1 198.18.0.1 >"$f" 2>&1
	local p=$LAB_BG
	sleep 0.6
	"$@"
	sleep 1.5
	kill -INT "$p"
	wait "$p" 2>/dev/null || true
	awk '
		/icmp_seq=/ {
			ts = substr($1, 2, length($1) - 2) + 0
			split($0, a, "icmp_seq="); split(a[2], b, " "); seq = b[1] + 0
			if (n++ > 0) {
				if (ts - prev > gap) gap = ts - prev
				if (seq - pseq > 1) lost += seq - pseq - 1
			}
			prev = ts; pseq = seq
		}
		END { printf "%.0f %d\n", gap * 1000, lost }' "$f"
}

directed_once() {
	local to=$1
	local t0 t1
	t0=$(date +%s%N)
	"$BIN" switch --control "$LAB_DIR/gw.sock" --to "$to" --all --wait 5s >/dev/null
	t1=$(date +%s%N)
	# The command returns when the client's UPDATE_SA_ADDRESSES reached the new address.
	echo $(((t1 - t0) / 1000)) >"$LAB_DIR/switch_us"
}

classic_once() {
	# 198.51.100.1 stops working (nothing tells anyone); wait until the client has
	# found another path by itself (203.0.113.1, or the IPv6 address: the first pair
	# that answers the probes wins).
	lab_ns rt nft add rule inet cmp fw ip daddr 198.51.100.1 drop
	lab_ns rt nft add rule inet cmp fw ip saddr 198.51.100.1 drop
	for _ in $(seq 300); do
		local now
		now=$(gw_local)
		[ -n "$now" ] && [ "$now" != 198.51.100.1 ] && return 0
		sleep 0.02
	done
	echo "classic failover did not happen" >&2
	return 1
}

lab_ns rt nft add table inet cmp
lab_ns rt nft add chain inet cmp fw '{ type filter hook forward priority 0; }'

declare -a d_gap d_lost d_lat c_gap c_lost
echo "directed switch: $RUNS runs"
for i in $(seq "$RUNS"); do
	if [ "$(gw_local)" = 198.51.100.1 ]; then to=203.0.113.1; else to=198.51.100.1; fi
	read -r g l < <(measure directed_once "$to")
	lat=$(awk '{ printf "%.1f", $1 / 1000 }' "$LAB_DIR/switch_us")
	d_gap+=("$g"); d_lost+=("$l"); d_lat+=("$lat")
	printf '  %2d  -> %-13s switch %5s ms  gap %4s ms  lost %s\n' "$i" "$to" "$lat" "$g" "$l"
done

echo "classic failover (dpd_delay $DPD, retransmit 500ms): $CLASSIC_RUNS runs"
for i in $(seq "$CLASSIC_RUNS"); do
	# Start from 198.51.100.1 with the path working.
	lab_ns rt nft flush chain inet cmp fw
	[ "$(gw_local)" = 198.51.100.1 ] || directed_once 198.51.100.1
	sleep 1
	read -r g l < <(measure classic_once)
	c_gap+=("$g"); c_lost+=("$l")
	printf '  %2d  gap %5s ms  lost %s\n' "$i" "$g" "$l"
done
lab_ns rt nft flush chain inet cmp fw

stats() { # median min max of the arguments
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s %s %s\n", m, v[1], v[NR] }'
}
read -r dsm dsmin dsmax < <(stats "${d_lat[@]}")
read -r dgm dgmin dgmax < <(stats "${d_gap[@]}")
read -r dlm dlmin dlmax < <(stats "${d_lost[@]}")
read -r cgm cgmin cgmax < <(stats "${c_gap[@]}")
read -r clm clmin clmax < <(stats "${c_lost[@]}")
echo
printf '%-28s %-22s %-22s %-14s\n' "" "move completed (ms)" "longest reply gap (ms)" "packets lost"
printf '%-28s %-22s %-22s %-14s\n' "directed switch (R-MOBIKE)" "$dsm ($dsmin-$dsmax)" "$dgm ($dgmin-$dgmax)" "$dlm ($dlmin-$dlmax)"
printf '%-28s %-22s %-22s %-14s\n' "classic failover (MOBIKE)" "-" "$cgm ($cgmin-$cgmax)" "$clm ($clmin-$clmax)"
echo "(medians, min-max in brackets; ping every 20 ms, so a longest gap of 20-30 ms means traffic never stopped)"
cat >"$OUT" <<EOF
{
  "directed_switch": {"runs": $RUNS, "switch_ms": {"median": $dsm, "min": $dsmin, "max": $dsmax}, "gap_ms": {"median": $dgm, "min": $dgmin, "max": $dgmax}, "lost": {"median": $dlm, "min": $dlmin, "max": $dlmax}},
  "classic_failover": {"runs": $CLASSIC_RUNS, "dpd_delay": "$DPD", "gap_ms": {"median": $cgm, "min": $cgmin, "max": $cgmax}, "lost": {"median": $clm, "min": $clmin, "max": $clmax}}
}
EOF
echo "written to $OUT"
