#!/usr/bin/env python3
"""Where a server's CPU goes per query: user space against the kernel, Meridian against a
peer, from a sampling profile of the server's core under the batched load.

For each round and each server (alternating which goes first), this runs the harness's
batched load for `--duration` seconds and, from 1.5 s in, `perf record -e cpu-clock -C 0`
(the core servers are pinned to) for `--duration - 3` seconds. It counts the samples of
every (command, symbol) over the queries answered in that window (the load generator's
rate times the window). This VM has no hardware counters, so perf samples on the clock
(`-F 4999`): one sample per 0.2 ms of CPU, and samples per 1,000 queries x 0.2 is
microseconds per query. Prints, per server, the samples per 1,000 queries of its thread in
user space and in the kernel, and the symbols that differ most between the two.

    Benchmarks/icount/split.py --bin MERIDIAN [--peer gdnsd] [--workload geo-spread] \\
        [--rounds 4] [--duration 6]

Sampling on the clock attributes time spent with interrupts off to the instruction after
they come back on (the `_raw_spin_unlock_irq*` symbols), so read the kernel symbols as
places, not exact costs. Bounded like the harness: every load run has a time limit, only
127.0.0.1 is targeted, servers are stopped whatever happens.
"""

import argparse
import collections
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.common import SERVER_CPU, WORK, log  # noqa: E402
from harness.measure import build_tools, loadgen_run, start_servers, stop_all  # noqa: E402
from harness.servers import Meridian  # noqa: E402
from harness.workloads import WORKLOADS, write_query_file, write_zone_files  # noqa: E402

FREQUENCY = 4999


def profile(server, loadgen, queries, duration, data):
    """(queries answered while perf recorded, {(comm, symbol): samples})."""
    window = duration - 3
    res = {}
    t = threading.Thread(target=lambda: res.update(loadgen_run(loadgen, server.port, queries, duration)))
    t.start()
    time.sleep(1.5)
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY), "-C", SERVER_CPU, "-o", data,
                    "--", "sleep", str(window)], capture_output=True, timeout=window + 60)
    t.join()
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "comm,sym", "-F", "sample,comm,sym",
                          "--percent-limit", "0"], capture_output=True, text=True, timeout=300).stdout
    samples = collections.Counter()
    for line in out.splitlines():
        p = line.split(None, 2)
        if len(p) == 3 and p[0].isdigit():
            samples[(p[1], p[2].strip())] += int(p[0])
    return res["qps"] * window, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the release meridian binary")
    ap.add_argument("--peer", default="gdnsd", help="the server compared with (a harness server name)")
    ap.add_argument("--workload", default="geo-spread")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of load per run (perf records 3 s fewer)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if not (1 <= args.rounds <= 20 and 4 <= args.duration <= 30):
        ap.error("--rounds must be 1..20 and --duration 4..30")
    Meridian.binary = os.path.abspath(args.bin)
    loadgen, _ = build_tools()
    w = WORKLOADS[args.workload]()
    w.start()
    servers = []
    try:
        base = os.path.join(WORK, "split-" + args.workload)
        zones = write_zone_files(w, os.path.join(base, "zones"))
        queries = os.path.join(base, "queries.txt")
        write_query_file(w, queries)
        servers, failed = start_servers(["meridian", args.peer], w, zones, base)
        if failed:
            sys.exit(f"not started: {failed}")
        samples = {s.name: collections.Counter() for s in servers}
        answered = collections.Counter()
        threads = {}
        for r in range(args.rounds):
            for s in (servers if r % 2 == 0 else servers[::-1]):
                n, got = profile(s, loadgen, queries, args.duration, os.path.join(base, f"perf-{s.name}.data"))
                answered[s.name] += n
                samples[s.name].update(got)
                log(f"round {r + 1}, {s.name}: {n:,.0f} queries, {sum(got.values()):,} samples")
        for s in servers:
            # The server's own threads: the command that took most of the samples and any
            # other command of its process (a thread's name is its command).
            by_comm = collections.Counter()
            for (comm, _), v in samples[s.name].items():
                by_comm[comm] += v
            threads[s.name] = by_comm.most_common(1)[0][0]
    finally:
        stop_all(servers)
        w.stop()

    def per_k(name, pred):
        return sum(v for k, v in samples[name].items() if pred(k)) * 1000 / answered[name]

    print(f"\n{args.workload}: samples per 1,000 queries on the server core (x {1e6 / FREQUENCY / 1000:.1f} = µs per query)")
    print("| server | thread | user space | kernel | thread total | whole core |\n|---|---|---:|---:|---:|---:|")
    for name in samples:
        th = threads[name]
        user = per_k(name, lambda k: k[0] == th and k[1].startswith("[.]"))
        kern = per_k(name, lambda k: k[0] == th and k[1].startswith("[k]"))
        print(f"| {name} | {th} | {user:.3f} | {kern:.3f} | {user + kern:.3f} | {per_k(name, lambda k: True):.3f} |")
    a, b = list(samples)
    by_sym = collections.defaultdict(lambda: [0.0, 0.0])
    for i, name in enumerate((a, b)):
        for (comm, sym), v in samples[name].items():
            if comm == threads[name]:
                by_sym[sym][i] += v * 1000 / answered[name]
    print(f"\n{'symbol':70} {a:>10} {b:>10}")
    for sym, (x, y) in sorted(by_sym.items(), key=lambda kv: -abs(kv[1][0] - kv[1][1]))[:args.top]:
        print(f"{sym[:70]:70} {x:10.3f} {y:10.3f}")


if __name__ == "__main__":
    main()
