#!/usr/bin/env python3
"""Configuration at scale (issue 20): time and memory of `meridian check`, start, SIGHUP
reload and ten reloads, for generated configs along three dimensions:

- names:     1k, 10k, 100k GSLB names (half failover, half geo over a CIDR-map label)
- prefixes:  1k, 10k, 100k `subnet` prefixes plus `default` (one name; 10 other names)
- endpoints: 6, 500, 20,000 endpoints (10,000 names over them)

    Benchmarks/config-scale/run.py [--runs 3] [--only names,prefixes,endpoints] [--quick]

Uses the release build (`swift build -c release --product meridian`, or MERIDIAN_BIN).
Loopback only; every wait is bounded (60 s); the server is stopped after each size.
Prints Markdown tables: medians over the runs, and each size as a ratio of the smallest.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("MERIDIAN_BIN", os.path.join(ROOT, ".build", "release", "meridian"))
GEN = os.path.join(HERE, "gen.py")
LIMIT = 60.0
# Seconds between a reload's changed answer and reading its RSS (and the next reload).
SETTLE = 2.5


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port, name, timeout=0.5):
    """First A address of the answer, or None (no answer, NODATA, timeout)."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            # Connected, so a port nobody listens on yet fails at once (ICMP refused)
            # rather than after the timeout.
            s.connect(("127.0.0.1", port))
            s.send(q)
            r = s.recv(4096)
        except OSError:
            return None
    if len(r) < 12 or r[:2] != q[:2]:
        return None
    an = struct.unpack(">H", r[6:8])[0]
    if an == 0:
        return None
    i = len(q)  # the question is echoed
    while i < len(r):
        if r[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while r[i] != 0:
                i += 1 + r[i]
            i += 1
        t, _, _, rdlen = struct.unpack(">HHIH", r[i:i + 10])
        i += 10
        if t == 1 and rdlen == 4:
            return ".".join(str(b) for b in r[i:i + 4])
        i += rdlen
    return None


def status(pid):
    """VmRSS, VmHWM (peak RSS), VmSize, VmPeak in KiB, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "VmSize", "VmPeak"):
                out[k] = int(v.split()[0])
    return out


def wait_for(cond, limit=LIMIT, step=0.005):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        v = cond()
        if v:
            return time.monotonic() - t0
        time.sleep(step)
    return None


def generate(folder, port, generation, **kw):
    args = [sys.executable, GEN, folder, "--port", str(port), "--generation", str(generation)]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    subprocess.run(args, check=True)


def expected(generation):
    # n0 answers e0 (failover [e0, e1], all up): 10.G.0.0.
    return f"10.{generation % 256}.0.0"


def measure(kw, reloads):
    """`run_once`, again on another port (at most three tries) when the server exited
    before answering: the free port may have been taken between the probe and the bind."""
    for attempt in range(3):
        try:
            return run_once(kw, reloads)
        except ServerExited as e:
            print(f"# server exited before answering (try {attempt + 1}): {e}", file=sys.stderr, flush=True)
    raise RuntimeError("the server exited before answering three times")


class ServerExited(Exception):
    pass


def run_once(kw, reloads):
    """One run: check, start, reload, then `reloads` more reloads, each waiting for its answer."""
    folder = tempfile.mkdtemp(prefix="meridian-scale-")
    port = free_port()
    row = {}
    try:
        generate(folder, port, 1, **kw)
        conf = os.path.join(folder, "meridian.yaml")
        t0 = time.monotonic()
        c = subprocess.run([BIN, "check", "--config", conf], capture_output=True, text=True, timeout=300)
        row["check"] = time.monotonic() - t0
        if c.returncode != 0:
            raise RuntimeError(f"check failed: {c.stdout[-2000:]}{c.stderr[-2000:]}")
        log = open(os.path.join(folder, "serve.log"), "w")
        t0 = time.monotonic()
        p = subprocess.Popen([BIN, "serve", "--config", conf], stdout=log, stderr=subprocess.STDOUT)
        try:
            started = wait_for(lambda: p.poll() is not None or query(port, "n0.scale.test") == expected(1))
            if p.poll() is not None:
                log.flush()
                with open(os.path.join(folder, "serve.log")) as f:
                    raise ServerExited(f.read()[-500:])
            if started is None:
                raise RuntimeError("no first answer within 60 s")
            row["start"] = time.monotonic() - t0
            s = status(p.pid)
            row["rss_start"] = s["VmRSS"]
            rss = []
            times = []
            for g in range(2, 2 + 1 + reloads):
                generate(folder, port, g, **kw)
                t0 = time.monotonic()
                p.send_signal(signal.SIGHUP)
                w = wait_for(lambda: query(port, "n0.scale.test") == expected(g))
                if w is None:
                    raise RuntimeError(f"reload {g - 1}: answer unchanged after 60 s")
                times.append(time.monotonic() - t0)
                # Steady state: the server returns freed memory 1.5 s after a reload.
                time.sleep(SETTLE)
                rss.append(status(p.pid)["VmRSS"])
            s = status(p.pid)
            row["reload"] = times[0]
            row["rss_first_reload"] = rss[0]
            row["rss_last_reload"] = rss[-1]
            row["rss_reloads"] = rss
            row["peak_rss"] = s["VmHWM"]
            row["vsz"] = s["VmSize"]
            row["peak_vsz"] = s["VmPeak"]
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return row


DIMENSIONS = {
    "names": [("1,000 names", {"names": 1000}), ("10,000 names", {"names": 10000}),
              ("100,000 names", {"names": 100000})],
    "prefixes": [("1,000 prefixes", {"names": 10, "prefixes": 1000}),
                 ("10,000 prefixes", {"names": 10, "prefixes": 10000}),
                 ("100,000 prefixes", {"names": 10, "prefixes": 100000})],
    "endpoints": [("6 endpoints", {"names": 10000, "endpoints": 6}),
                  ("500 endpoints", {"names": 10000, "endpoints": 500}),
                  ("20,000 endpoints", {"names": 10000, "endpoints": 20000})],
}


def mb(kib):
    return f"{kib / 1024:.0f} MB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reloads", type=int, default=10)
    ap.add_argument("--only", default="names,prefixes,endpoints")
    ap.add_argument("--sizes", default="", help="size labels to keep, separated by ';', e.g. '100,000 prefixes'")
    a = ap.parse_args()
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN}: not built (swift build -c release --product meridian)")
    for dim in a.only.split(","):
        sizes = DIMENSIONS[dim]
        if a.sizes:
            sizes = [x for x in sizes if x[0] in a.sizes.split(";")]
        # Interleaved: run r of every size before run r+1 of any, so drift on a shared host
        # spreads over all sizes.
        runs = {label: [] for label, _ in sizes}
        for r in range(a.runs):
            for label, kw in sizes:
                runs[label].append(measure(kw, a.reloads))
                print(f"# {dim} run {r + 1}: {label} done", file=sys.stderr, flush=True)
        med = {label: {k: statistics.median(x[k] for x in rows)
                       for k in rows[0] if k != "rss_reloads"} for label, rows in runs.items()}
        base = med[sizes[0][0]]
        print(f"\n### {dim}\n")
        print("| size | check | start | reload | peak RSS | VSZ | RSS after reload 1 | after reload 10 | 10 / 1 |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, _ in sizes:
            m = med[label]
            print(f"| {label} | {m['check']:.2f} s ({m['check'] / base['check']:.1f}x) | {m['start']:.2f} s "
                  f"({m['start'] / base['start']:.1f}x) | {m['reload']:.2f} s ({m['reload'] / base['reload']:.1f}x) | "
                  f"{mb(m['peak_rss'])} ({m['peak_rss'] / base['peak_rss']:.1f}x) | {mb(m['vsz'])} | "
                  f"{mb(m['rss_first_reload'])} | {mb(m['rss_last_reload'])} | "
                  f"{m['rss_last_reload'] / m['rss_first_reload']:.2f} |")
        print()
        for label, _ in sizes:
            series = ", ".join(mb(v) for v in runs[label][0]["rss_reloads"])
            print(f"RSS over reloads, {label} (run 1): {series}  ")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
