#!/usr/bin/env python3
"""Interleaved A/B of two Meridian release binaries (or Meridian and a peer) with the
harness's own measurement (`measure_server`: batched QPS, CPU/query under dnsperf and under
the batched generator, p50/p99 at the fixed rate where the workload has one), without
building anything: `Benchmarks/run --base-bin` always builds the worktree first, which a
change being compiled in the same scratch path cannot wait for.

    Benchmarks/icount/ab.py --bin NEW --base-bin OLD [--workload static,geo,geo-spread] \\
        [--servers meridian,meridian-base] [--rounds 3] [--duration 3]

`--servers meridian,gdnsd` compares `--bin` with a peer instead (the peer from its Debian
package, configured by the harness). Prints the per-round ratios of the first server to the
second and their medians. On a host shared with builds, run it under `chrt -f 50`
(SCHED_FIFO: the builds cannot preempt the servers or the load). Bounded like the harness:
every load run has a time limit and only 127.0.0.1 is targeted; servers are stopped
whatever happens.
"""

import argparse
import os
import statistics
import sys

import abargs  # this folder is on sys.path: it is the script's

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.common import WORK, log  # noqa: E402
from harness.measure import build_tools, loadgen_run, measure_server, round_order, start_servers, stop_all  # noqa: E402
from harness.servers import Meridian, MeridianBase  # noqa: E402
from harness.workloads import WORKLOADS, write_dnsperf_file, write_query_file, write_zone_files  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    abargs.add_common(ap, "static,geo,geo-spread", base_required=False)
    ap.add_argument("--servers", default="meridian,meridian-base")
    args = abargs.parse(ap)
    names = args.servers.split(",")
    assert len(names) == 2
    if "meridian-base" in names and not args.base_bin:
        ap.error("meridian-base needs --base-bin")
    Meridian.binary = os.path.abspath(args.bin)
    MeridianBase.binary = os.path.abspath(args.base_bin) if args.base_bin else None
    loadgen, _ = build_tools()
    for wname in args.workload.split(","):
        w = WORKLOADS[wname]()
        # The workload's own fixtures (the health checks' TCP targets), as the harness runs them.
        w.start()
        try:
            base = os.path.join(WORK, "ab-" + wname)
            zones = write_zone_files(w, os.path.join(base, "zones"))
            files = {"loadgen": os.path.join(base, "queries.txt")}
            write_query_file(w, files["loadgen"])
            files["dnsperf"], files["dnsperf_binary"] = write_dnsperf_file(w, files["loadgen"], os.path.join(base, "queries.bin"))
            servers, failed = start_servers(names, w, zones, base)
            if failed:
                stop_all(servers)
                sys.exit(f"not started: {failed}")
            res = {s.name: [] for s in servers}
            try:
                for s in servers:
                    loadgen_run(loadgen, s.port, files["loadgen"], 1.0, pinned=w.pinned)
                for rnd in range(args.rounds):
                    for s in round_order(servers, rnd):
                        m = measure_server(s, w, loadgen, files, args.duration, w.rate or args.rate)
                        res[s.name].append(m)
                        log(f"{wname} round {rnd + 1} {s.name}: {m['qps']:.0f} qps, {m['cpu_us']:.2f} µs CPU/query "
                            f"(dnsperf), {m['cpu_us_loadgen']:.2f} (batched), p99 {m['p99_ms']:.3f} ms")
            finally:
                stop_all(servers)
        finally:
            w.stop()
        a, b = res[names[0]], res[names[1]]
        for key, label in (("qps", "QPS"), ("cpu_us", "CPU/query dnsperf"), ("cpu_us_loadgen", "CPU/query batched"),
                           ("p99_ms", "p99 single run"), ("p99w_ms", "p99 windowed (median of windows)")):
            if not w.latency and key in ("p99_ms", "p99w_ms"):
                continue
            ratios = [x[key] / y[key] for x, y in zip(a, b)]
            print(f"{wname} {label}: {names[0]} {statistics.median(x[key] for x in a):.3f}, "
                  f"{names[1]} {statistics.median(y[key] for y in b):.3f}; {names[0]}/{names[1]} per round "
                  + ", ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f})", flush=True)


if __name__ == "__main__":
    main()
