#!/usr/bin/env python3
"""User-space instructions per query of a Meridian release binary, under callgrind.

Wall-clock rates move with whatever else the host runs; instruction counts do not. For each
workload and each binary this starts `meridian serve` (the harness's configuration of that
workload, one worker) under `valgrind --tool=callgrind` with instrumentation off during the
load, warms it up, then counts two fixed runs of queries (5,000 and 25,000 by default) and
reports (Ir(25,000) - Ir(5,000)) / 20,000: the user-space instructions of one query, with
start-up and the fixed per-run costs cancelled out. `--top N` also prints the functions
whose instructions per query differ most between the two runs.

    Benchmarks/icount/run.py --bin .build-bench/release/meridian [--bin OTHER] \\
        [--workload static,geo,geo-spread] [--counts 5000,25000] [--top 15]

valgrind 3.19 cannot read the DWARF 5 of Swift 6 binaries, so each binary is copied with
`strip --strip-debug` first (symbols stay). Bounded: every loadgen run has a count and a
time limit, the server only listens on 127.0.0.1, and it is stopped (SIGTERM, then SIGKILL)
whatever happens.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.common import WORK, log  # noqa: E402
from harness.measure import build_tools, server_zone_paths  # noqa: E402
from harness.probe import free_port, verify, wait_ready  # noqa: E402
from harness.servers import NSD, Gdnsd, Knot, Meridian  # noqa: E402
from harness.workloads import WORKLOADS, write_query_file, write_zone_files  # noqa: E402


# Peers that --bin may name instead of a Meridian binary: the same count for their user space.
PEERS = {"gdnsd": Gdnsd, "nsd": NSD, "knot": Knot}


def callgrind_control(pid, *args):
    subprocess.run(["callgrind_control", *args, *([str(pid)] if pid is not None else [])], capture_output=True, text=True, timeout=120, check=True)


def send(loadgen, port, queries, count):
    cmd = [loadgen, "-s", "127.0.0.1", "-p", str(port), "-d", queries, "-n", str(count), "-l", "600",
           "-w", "16", "-c", "1", "-b", "16", "-t", "10000"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=700).stdout
    line = [l for l in out.strip().splitlines() if "=" in l][-1]
    kv = {k: float(v) for k, v in (p.split("=", 1) for p in line.split())}
    if kv["answered"] != count:
        raise RuntimeError(f"{count} queries sent, {kv['answered']:.0f} answered")


def event_totals(path):
    """{event: total} from a dump's `events:` and `summary:`/`totals:` lines (Ir, and with
    --cache-sim the cache events: D1mr, DLmr, ...)."""
    events, values = [], []
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            values = [int(v) for v in line.split()[1:]]
    return dict(zip(events, values))


def totals(path):
    """Total Ir of a callgrind dump, and Ir by function (self cost)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--show=Ir", path], capture_output=True, text=True).stdout
    total = None
    by_fn = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+PROGRAM TOTALS", line) or re.match(r"\s*([\d,]+)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*?)\s*$", line)
        if m and ":" in m.group(2) and total is not None:
            by_fn[m.group(2)] = by_fn.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    if total is None:
        # callgrind_annotate prints nothing for a dump that counted nothing (an idle process).
        total = event_totals(path).get("Ir")
        if total is None:
            raise RuntimeError(f"no totals in {path}")
    return total, by_fn


def measure(binary, workload, loadgen, counts, base, cache_sim=False):
    peer = binary in PEERS
    tag = binary if peer else re.sub(r"[^A-Za-z0-9.-]+", "_", os.path.relpath(binary, os.getcwd())).strip("_.")
    d = os.path.join(base, f"{tag}-{workload.name}")
    shutil.rmtree(d, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(d, "zones"))
    queries = os.path.join(d, "queries.txt")
    write_query_file(workload, queries)
    if peer:
        # A peer from its Debian package, configured as the harness configures it (with the
        # records the workload adds for it: gdnsd's DYNA names).
        sd = os.path.join(d, "server")
        server = PEERS[binary](free_port(), workload, sd, server_zone_paths(workload, binary, zone_paths, sd))
    else:
        stripped = os.path.join(d, "meridian")
        subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
        Meridian.binary = stripped
        server = Meridian(free_port(), workload, os.path.join(d, "server"), zone_paths)
    cmd = server.command()
    out_prefix = os.path.join(d, "callgrind.out")
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_prefix}.%p"]
    vg += ["--cache-sim=yes", "--branch-sim=yes"] if cache_sim else []
    # NSD answers in a child process: peers are followed into their children, and every
    # process's count is added up (Meridian is one process).
    vg += ["--trace-children=yes"] if peer else []
    vg += cmd
    logf = open(os.path.join(d, "server.log"), "w")
    proc = subprocess.Popen(vg, stdout=logf, stderr=subprocess.STDOUT, cwd=server.dir, start_new_session=True)
    # callgrind_control with no pid: every process of this run (nothing else runs callgrind).
    target = None if peer else proc.pid
    try:
        server.proc = proc
        wait_ready(server, next(iter(zone_paths)), timeout=600)
        # The workload's answer checks first, as the harness makes them: a count of the wrong
        # answers (a peer serving NXDOMAIN for a name it was not set up for) means nothing.
        problems, _ = verify(server, workload)
        if problems:
            raise RuntimeError(f"{binary} answers {workload.name} wrongly: {problems[:3]}")
        callgrind_control(target, "-i", "on")
        send(loadgen, server.port, queries, 2000)
        callgrind_control(target, "-z")
        for n in counts:
            send(loadgen, server.port, queries, n)
            callgrind_control(target, "-d")
            time.sleep(0.5)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except Exception:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def dumps(k):
        """The k-th dump (1, 2) of every process."""
        return [os.path.join(d, f) for f in sorted(os.listdir(d)) if re.fullmatch(rf"callgrind\.out\.\d+\.{k}", f)]

    def added(k):
        paths = dumps(k)
        if not paths:
            raise RuntimeError(f"no dump {k} in {d}")
        total, by_fn, events = 0, {}, {}
        for path in paths:
            t, f = totals(path)
            total += t
            for name, v in f.items():
                by_fn[name] = by_fn.get(name, 0) + v
            for name, v in event_totals(path).items():
                events[name] = events.get(name, 0) + v
        return total, by_fn, events

    (t1, f1, e1), (t2, f2, e2) = added(1), added(2)
    per_query = (t2 - t1) / (counts[1] - counts[0])
    per_fn = {k: (f2.get(k, 0) - f1.get(k, 0)) / (counts[1] - counts[0]) for k in set(f1) | set(f2)}
    per_event = {k: (e2[k] - e1.get(k, 0)) / (counts[1] - counts[0]) for k in e2}
    return per_query, per_fn, per_event


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", action="append", required=True,
                    help="a release meridian binary (repeat for A/B), or a peer: gdnsd, nsd or knot")
    ap.add_argument("--workload", default="static,geo,geo-spread")
    ap.add_argument("--counts", default="5000,25000")
    ap.add_argument("--top", type=int, default=0, help="also print the N functions with the most Ir per query")
    ap.add_argument("--malloc", action="store_true",
                    help="instead count heap allocations per query of the first --bin on the static workload "
                         "(the harness's malloc_check: LD_PRELOAD counter, 200,000 queries at 50k qps after a warm-up)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches (valgrind's model: misses per query in L1 and last level)")
    args = ap.parse_args()
    if args.malloc:
        from harness.tools import malloc_check
        loadgen, counter = build_tools()
        Meridian.binary = os.path.abspath(args.bin[0])
        print(malloc_check(None, counter, loadgen)[0])
        return
    counts = [int(c) for c in args.counts.split(",")]
    assert len(counts) == 2 and 0 < counts[0] < counts[1] <= 200_000
    loadgen, _ = build_tools()
    base = os.path.join(WORK, "icount")
    rows = []
    for wname in args.workload.split(","):
        workload = WORKLOADS[wname]()
        # The workload's own fixtures (the health checks' TCP targets), as the harness runs them.
        workload.start()
        results = []
        try:
            for b in args.bin:
                if b in PEERS and b not in workload.servers:
                    log(f"icount {wname}: {b} does not run this workload")
                    continue
                log(f"icount {wname}: {b}")
                results.append((b, measure(b if b in PEERS else os.path.abspath(b), workload, loadgen, counts, base, args.cache_sim)))
        finally:
            workload.stop()
        for b, (per_query, per_fn, per_event) in results:
            rows.append((wname, b, per_query))
            print(f"{wname:12} {b}: {per_query:,.0f} Ir/query", flush=True)
            if args.cache_sim:
                print("    per query: " + ", ".join(f"{k} {v:,.1f}" for k, v in per_event.items()), flush=True)
            for name, ir in sorted(per_fn.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"    {ir:10,.1f}  {name[:150]}")
    print("\n| workload | binary | Ir/query |\n|---|---|---|")
    for w, b, q in rows:
        print(f"| {w} | `{b}` | {q:,.0f} |")


if __name__ == "__main__":
    main()
