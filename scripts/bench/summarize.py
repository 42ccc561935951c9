#!/usr/bin/env python3
"""Parses iperf3 results for scripts/bench.sh and prints and writes the summary.

  summarize.py parse IPERF_JSON TEST VARIANT ROUND CPU_TICKS HZ   -> one TSV line
  summarize.py report RESULTS_TSV OUT_JSON ROUNDS TCP_TIME UDP_TIME WGGO_VERSION KERNEL CPUS
"""
import json
import statistics
import sys

TESTS = [
    ("tcp1", "TCP 1 stream", "Gbit/s", 1e9),
    ("tcp4", "TCP 4 streams", "Gbit/s", 1e9),
    ("udp1400", "UDP 1400 B", "kpps", 1e3),
    ("udp64", "UDP 64 B", "kpps", 1e3),
    ("cpu", "CPU s/GB", "s/GB", 1),
]
# IP packet size of the UDP tests: iperf3 -l plus 28 bytes of IPv4 and UDP header.
UDP_LEN = {"udp1400": 1372, "udp64": 36}
VPN = {"mvpn-aes128", "mvpn-aes256", "mvpn-chacha", "wggo", "swan"}


def parse(path, test, variant, rnd, ticks, hz):
    """One line: variant round test value cpu_seconds bytes (value NaN on failure)."""
    value, nbytes = float("nan"), 0
    try:
        with open(path) as f:
            d = json.load(f)
        end = d["end"]
        if test.startswith("tcp"):
            s = end["sum_received"]
            value, nbytes = s["bits_per_second"], s["bytes"]
        else:
            s = end["sum_received"]
            nbytes = s["bytes"]
            value = nbytes / UDP_LEN[test] / s["seconds"]
    except (OSError, ValueError, KeyError, ZeroDivisionError) as e:
        print(f"{variant} round {rnd} {test}: no result ({e})", file=sys.stderr)
    cpu = int(ticks) / int(hz)
    print(f"{variant}\t{rnd}\t{test}\t{value}\t{cpu}\t{nbytes}")


def med(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def report(tsv, out, rounds, tcp_time, udp_time, wggo, kernel, cpus):
    rows = {}
    order = []
    with open(tsv) as f:
        for line in f:
            v, r, test, value, cpu, nbytes = line.rstrip("\n").split("\t")
            if v not in rows:
                rows[v] = {}
                order.append(v)
            rows[v].setdefault(test, []).append(
                {"round": int(r), "value": float(value), "cpu_s": float(cpu), "bytes": int(nbytes)})
    summary = {}
    for v in order:
        summary[v] = {}
        for test, runs in rows[v].items():
            summary[v][test] = med([x["value"] for x in runs])
        # CPU seconds of both VPN daemons per GB moved, TCP single stream.
        if v in VPN or v.startswith("mvpn-"):
            summary[v]["cpu"] = med([x["cpu_s"] / (x["bytes"] / 1e9) for x in rows[v].get("tcp1", []) if x["bytes"] > 0])
        else:
            summary[v]["cpu"] = None

    def cell(s, scale):
        if not s:
            return "n/a"
        return f"{s['median'] / scale:.3g} ({s['min'] / scale:.3g}-{s['max'] / scale:.3g})"

    def ratio(a, b, test):
        sa, sb = summary.get(a, {}).get(test), summary.get(b, {}).get(test)
        if not sa or not sb or not sb["median"]:
            return None
        return sa["median"] / sb["median"]

    w = 24
    print()
    print(f"medians (min-max) of {rounds} rounds; TCP {tcp_time} s, UDP {udp_time} s per test; "
          f"kernel {kernel}, {cpus} CPUs; wireguard-go {wggo}")
    print(f"{'':22}" + "".join(f"{name + ' [' + unit + ']':>{w}}" for _, name, unit, _ in TESTS))
    for v in order:
        print(f"{v:22}" + "".join(f"{cell(summary[v].get(t), sc):>{w}}" for t, _, _, sc in TESTS))
    ratios = {}
    for m in ("mvpn-aes128", "mvpn-aes256", "mvpn-chacha"):
        if m not in summary:
            continue
        for other in ("wggo", "swan"):
            if other not in summary:
                continue
            key = f"{m}/{other}"
            ratios[key] = {t: ratio(m, other, t) for t, _, _, _ in TESTS}
    if ratios:
        print()
        print("ratios of medians (CPU s/GB: lower is better, so < 1 is a win)")
        for k, rs in ratios.items():
            print(f"{k:32}" + "".join(f"{('%.2fx' % rs[t]) if rs[t] else 'n/a':>{w}}" for t, _, _, _ in TESTS[:4])
                  + f"{('%.2fx' % rs['cpu']) if rs['cpu'] else 'n/a':>{w - 10}}")
    doc = {
        "rounds": int(rounds), "tcp_seconds": float(tcp_time), "udp_seconds": float(udp_time),
        "kernel": kernel, "cpus": int(cpus), "wireguard_go": wggo, "mtu": 1400,
        "units": {t: u for t, _, u, _ in TESTS} | {"tcp1": "bit/s", "tcp4": "bit/s", "udp1400": "packets/s", "udp64": "packets/s"},
        "summary": summary, "ratios": ratios, "runs": rows,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(*sys.argv[2:8])
    elif sys.argv[1] == "report":
        report(*sys.argv[2:10])
    else:
        sys.exit("usage: summarize.py parse|report ...")
