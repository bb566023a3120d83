#!/usr/bin/env python3
"""Instructions per query of a stripped release binary under callgrind, for an A/B of a
change that must not make the query path slower (Benchmarks/zone-scale/README.md).

    Benchmarks/zone-scale/callgrind.py BINARY [BINARY...] [--workload static,static-rest] [--queries 20000]

valgrind 3.19 cannot read the DWARF 5 that Swift 6 emits, so each binary is stripped
first. Per binary and workload: start `serve --workers 1` under callgrind, 2,000 warm-up
queries, zero the counters (`callgrind_control -z`), 20,000 queries at 2,000 qps, dump
(`callgrind_control -d`): total instructions (Ir, every thread) over answered queries.
Bounded in count and time; loopback only.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.common import WORK, log  # noqa: E402
from harness.measure import build_tools, loadgen_run  # noqa: E402
from harness.probe import free_port, probe  # noqa: E402
from harness.workloads import WORKLOADS, write_query_file, write_zone_files  # noqa: E402


def measure(binary, workload, loadgen, queries, base):
    stripped = os.path.join(base, "meridian-stripped")
    subprocess.run(["strip", "-o", stripped, binary], check=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    qfile = os.path.join(base, "queries.txt")
    write_query_file(workload, qfile)
    port = free_port()
    out = os.path.join(base, "callgrind.out")
    for f in glob.glob(out + "*"):
        os.remove(f)
    log_file = open(os.path.join(base, "server.log"), "w")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", stripped, "serve",
                             "--zones", os.path.dirname(next(iter(zone_paths.values()))),
                             "--listen", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"],
                            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while probe(port, workload.origin, "SOA", timeout=0.5) != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"meridian under callgrind did not answer (see {base}/server.log)")
            time.sleep(0.2)
        loadgen_run(loadgen, port, qfile, 30, rate=2000, count=2000, pinned=False)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        kv = loadgen_run(loadgen, port, qfile, 60, rate=2000, count=queries, pinned=False)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log_file.close()
    total = 0
    for f in glob.glob(out + "*"):
        text = open(f).read()
        m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if m and f != out:   # the dump after -z; the final file counts from the zeroing too
            total = max(total, int(m.group(1)))
    return total / max(kv["answered"], 1), kv["answered"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--workload", default="static,static-rest")
    ap.add_argument("--queries", type=int, default=20_000)
    args = ap.parse_args()
    loadgen, _ = build_tools()
    rows = []
    for w in args.workload.split(","):
        for i, b in enumerate(args.binaries):
            base = os.path.join(WORK, "zone-scale", "callgrind", f"{w}-{i}")
            shutil.rmtree(base, ignore_errors=True)
            os.makedirs(base)
            per, n = measure(os.path.abspath(b), WORKLOADS[w](), loadgen, args.queries, base)
            log(f"{w} {b}: {per:,.0f} instructions per query ({n:.0f} answered)")
            rows.append(f"| {w} | {b} | {n:.0f} | {per:,.0f} |")
    print("| workload | binary | answered | instructions per query (Ir, all threads) |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
