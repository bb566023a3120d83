#!/usr/bin/env python3
"""p50/p99 at a fixed rate for two Meridian release binaries, interleaved, without
rebuilding anything: the harness's workload, servers (pinned to CPU 0, one worker) and
loadgen (pinned to CPU 1), in two orders per round:

- `cold`: the fixed-rate run alone, after a pause;
- `after-saturation`: the harness's order, a saturating loadgen run and a dnsperf run
  first, then the fixed-rate run (what `Benchmarks/run` reports as p99).

    Benchmarks/icount/p99.py --bin NEW --base-bin OLD [--workload static] [--rounds 3] \\
        [--duration 3] [--rate 20000]

Bounded: every load run has a time limit, only 127.0.0.1 is targeted, servers are
stopped whatever happens.
"""

import argparse
import os
import statistics
import sys
import time

import abargs  # noqa: E402  (this folder is on sys.path: it is the script's)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.common import WORK, log  # noqa: E402
from harness.measure import build_tools, dnsperf_run, loadgen_run, round_order, start_servers, stop_all  # noqa: E402
from harness.servers import Meridian, MeridianBase  # noqa: E402
from harness.workloads import WORKLOADS, write_dnsperf_file, write_query_file, write_zone_files  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    abargs.add_common(ap, "static", base_required=True)
    args = abargs.parse(ap)
    Meridian.binary, MeridianBase.binary = os.path.abspath(args.bin), os.path.abspath(args.base_bin)
    loadgen, _ = build_tools()
    workload = WORKLOADS[args.workload]()
    base = os.path.join(WORK, "p99-" + workload.name)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    queries = os.path.join(base, "queries.txt")
    write_query_file(workload, queries)
    dnsperf_file, binary = write_dnsperf_file(workload, queries, os.path.join(base, "queries.bin"))
    servers, failed = start_servers(["meridian", "meridian-base"], workload, zone_paths, base)
    if failed:
        stop_all(servers)
        sys.exit(f"not started: {failed}")
    p99 = {(s.name, mode): [] for s in servers for mode in ("cold", "after-saturation")}
    try:
        for s in servers:
            loadgen_run(loadgen, s.port, queries, 1.0)
        for rnd in range(args.rounds):
            for s in round_order(servers, rnd):
                time.sleep(1.0)
                cold = loadgen_run(loadgen, s.port, queries, args.duration, rate=args.rate)
                loadgen_run(loadgen, s.port, queries, args.duration)
                dnsperf_run(s.port, dnsperf_file, args.duration, binary=binary)
                hot = loadgen_run(loadgen, s.port, queries, args.duration, rate=args.rate)
                p99[(s.name, "cold")].append(cold["p99_us"] / 1000)
                p99[(s.name, "after-saturation")].append(hot["p99_us"] / 1000)
                log(f"round {rnd + 1} {s.name}: p50/p99 cold {cold['p50_us'] / 1000:.3f}/{cold['p99_us'] / 1000:.3f} ms, "
                    f"after saturation {hot['p50_us'] / 1000:.3f}/{hot['p99_us'] / 1000:.3f} ms "
                    f"(p999 {hot['p999_us'] / 1000:.3f}), lost {cold['lost']:.0f}+{hot['lost']:.0f}")
    finally:
        stop_all(servers)
    print(f"\n| server | binary | p99 ms cold (per round; median) | p99 ms after saturation (per round; median) |\n|---|---|---|---|")
    for s in servers:
        c, h = p99[(s.name, "cold")], p99[(s.name, "after-saturation")]
        print(f"| {s.name} | `{s.binary}` | {', '.join(f'{x:.3f}' for x in c)} ({statistics.median(c):.3f}) | "
              f"{', '.join(f'{x:.3f}' for x in h)} ({statistics.median(h):.3f}) |")


if __name__ == "__main__":
    main()
