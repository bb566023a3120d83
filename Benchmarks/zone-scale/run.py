#!/usr/bin/env python3
"""Zone scale: load time and memory of a large zone in interleaved rounds, and a SIGHUP
reload of that zone under a fixed query rate (Benchmarks/zone-scale/README.md).

    Benchmarks/zone-scale/run.py --rounds 3                     # load: meridian, knot, nsd
    Benchmarks/zone-scale/run.py --rounds 3 --servers meridian,meridian-base,knot --base-bin OLD
    Benchmarks/zone-scale/run.py --reload --rounds 3            # p99 and losses during reloads
    Benchmarks/zone-scale/run.py --reload --rounds 3 --reload-servers meridian,meridian-base --base-bin OLD

The release binary is `.build-bench/release/meridian` (build it as README.md says, or give
`--binary`). Everything is bounded (per-run timeouts, fixed counts) and on 127.0.0.1 only;
the servers run pinned to CPU 0 and the load generator to CPU 1, as in Benchmarks/run.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.common import REPO, WORK, log  # noqa: E402
from harness.measure import build_tools, host_noise, loadgen_run, round_order, scheduling  # noqa: E402
from harness.probe import free_port, probe, wait_ready  # noqa: E402
from harness.report import fmt_table  # noqa: E402
from harness.servers import SERVER_CLASSES, Meridian, MeridianBase  # noqa: E402
from harness.tools import load_once  # noqa: E402
from harness.workloads import SizedZoneWorkload, write_zone_files  # noqa: E402


# CPU seconds (user + system, process tree) of the last start of each server, read when
# `load_once` takes its memory figures (0.5 s after the last name answered: the servers are
# idle by then). On a host shared with other jobs the wall time swings with their load, the
# CPU time much less.
LAST_CPU = {}


def measuring_cpu(cls):
    """`cls` with `memory()` also recording its CPU time in LAST_CPU."""
    class Measured(cls):
        def memory(self):
            LAST_CPU[self.name] = self.cpu_seconds()
            return super().memory()
    return Measured


def load_round(names, workload, zone_paths, base):
    """Starts each server in turn; returns {server: (seconds, VmHWM KiB, VmRSS KiB, CPU s)}."""
    out = {}
    for n in names:
        elapsed, hwm, rss, _ = load_once(n, workload, zone_paths, base, timeout=300)
        cpu = LAST_CPU[n]
        log(f"{n}: loaded in {elapsed:.2f} s ({cpu:.2f} s CPU), peak RSS {hwm / 1024:.1f} MiB, RSS {rss / 1024:.1f} MiB")
        out[n] = (elapsed, hwm, rss, cpu)
    return out


def zone_load(args):
    for n in args.servers:
        SERVER_CLASSES[n] = measuring_cpu(SERVER_CLASSES[n])
    workload = SizedZoneWorkload(args.records)
    base = os.path.join(WORK, "zone-scale", "load")
    shutil.rmtree(base, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    rounds = [load_round(args.servers, workload, zone_paths, base) for _ in range(args.rounds)]
    rows = []
    for n in args.servers:
        t = [r[n][0] for r in rounds]
        hwm = [r[n][1] / 1024 for r in rounds]
        rss = [r[n][2] / 1024 for r in rounds]
        cpu = [r[n][3] for r in rounds]
        rows.append([n, " ".join(f"{x:.2f}" for x in t), f"{statistics.median(t):.2f}",
                     " ".join(f"{x:.2f}" for x in cpu), f"{statistics.median(cpu):.2f}",
                     f"{statistics.median(hwm):.1f}", f"{statistics.median(rss):.1f}"])
    text = [f"### Load of a {args.records:,}-record zone, {args.rounds} interleaved rounds", "",
            fmt_table(["server", "load s per round", "median s", "CPU s per round", "median CPU s",
                       "peak RSS MiB (VmHWM)", "RSS MiB"], rows), ""]
    if "meridian" in args.servers:
        for peer in [p for p in args.servers if p != "meridian"]:
            tr = [r["meridian"][0] / r[peer][0] for r in rounds]
            cr = [r["meridian"][3] / r[peer][3] for r in rounds]
            mr = [r["meridian"][1] / r[peer][1] for r in rounds]
            text.append(f"- meridian/{peer}: load time {statistics.median(tr):.2f}x (per round "
                        f"{', '.join(f'{x:.2f}' for x in tr)}), CPU {statistics.median(cr):.2f}x (per round "
                        f"{', '.join(f'{x:.2f}' for x in cr)}), peak RSS {statistics.median(mr):.2f}x")
    return "\n".join(text) + "\n"


def bump_serial(path, serial):
    """Writes the zone again with another SOA serial beside `path`; returns the new file's path."""
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"^(@ IN SOA \S+ \S+ )\d+ ", rf"\g<1>{serial} ", text, count=1, flags=re.M)
    if n != 1:
        raise RuntimeError(f"no SOA line to change in {path}")
    new = f"{path}.next"
    with open(new, "w") as f:
        f.write(text)
    return new


def reload_once(s, loadgen, args, queries, zone, serial, kind, windowed=False):
    """One fixed-rate run against server `s`; for `reload`, the zone gets serial `serial` and
    SIGHUP goes `args.lead` s in. `windowed`: the windowed method's run (`args.p99_window` s,
    loadgen -Z -K 32, as Benchmarks/run's windowed p99) instead of the single `args.window`
    s run. Returns (loadgen's figures, reload seconds or "")."""
    log_path = os.path.join(s.dir, "server.log")
    if kind == "reload":
        os.replace(bump_serial(zone, serial), zone)
    before = open(log_path).read().count("reload ok")
    fifo = ["chrt", "-f", "50"] if args.fifo_loadgen else []
    seconds = args.p99_window if windowed else args.window
    proc = subprocess.Popen([*fifo, "taskset", "-c", "1", loadgen, "-s", "127.0.0.1", "-p", str(s.port),
                             "-d", queries, "-l", str(seconds), "-n", "100000000", "-w", "200",
                             "-c", "8", "-b", "32", "-Q", str(args.rate)] + (["-Z", "-K", "32"] if windowed else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    took = ""
    if kind != "baseline":
        time.sleep(args.lead)
        t0 = time.monotonic()
        os.kill(s.proc.pid, signal.SIGHUP)
        while open(log_path).read().count("reload ok") == before and proc.poll() is None:
            time.sleep(0.02)
        if open(log_path).read().count("reload ok") > before:
            took = "in the run"
    out, err = proc.communicate(timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err}")
    kv = {k: float(v) for k, v in (p.split("=", 1) for p in out.strip().splitlines()[-1].split())}
    if kind != "baseline" and not took:
        # The reload outlasted the run: wait for it (bounded) so the next run starts clean.
        while open(log_path).read().count("reload ok") == before and time.monotonic() - t0 < 120:
            time.sleep(0.1)
        if open(log_path).read().count("reload ok") == before:
            raise RuntimeError(f"no reload within 120 s (see {log_path})")
        took = "after the run"
    if kind != "baseline":
        ms = re.findall(r"reload ok in (\d+) ms", open(log_path).read())
        took = f"{int(ms[-1]) / 1000:.2f} ({took})"
    if kind == "reload":
        # Let the reaper and the memory trim after the reload finish before the next run.
        time.sleep(args.settle)
    return kv, took


def reload_runs(args, loadgen):
    """Baseline and reload runs at a fixed rate against each Meridian of `args.reload_servers`
    (meridian, meridian-base), alternating within each round so the host's drift hits all:
    the servers in ABBA order (reversed every other round), and within a round first the
    single-run pair (baseline, reload: the original figure), then the windowed pair
    (`args.baseline_windows` baseline windows, then one reload window)."""
    workload = SizedZoneWorkload(args.records)
    base = os.path.join(WORK, "zone-scale", "reload")
    shutil.rmtree(base, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    zone = next(iter(zone_paths.values()))
    queries = os.path.join(base, "queries.txt")
    with open(queries, "w") as f:
        step = max(1, workload.hosts // 5000)
        for i in range(0, workload.hosts, step):
            f.write(f"h{i:07d}.{workload.origin} {'A' if i % 2 else 'AAAA'}\n")

    def verbose(cls):
        class Verbose(cls):
            def command(self):
                return [a if a != "warning" else "info" for a in super().command()]
        return Verbose

    classes = {"meridian": Meridian, "meridian-base": MeridianBase}
    servers = {}
    rows, results = [], {n: {"baseline": [], "reload": [], "took": [], "wbase": [], "wreload": []}
                         for n in args.reload_servers}
    wrows = []
    serial = 1
    hwm = {}
    try:
        for n in args.reload_servers:
            s = verbose(classes[n])(free_port(), workload, os.path.join(base, n), zone_paths)
            s.start()
            servers[n] = s
            wait_ready(s, workload.last_name(), "A", timeout=300)
            loadgen_run(loadgen, s.port, queries, 2, rate=args.rate)   # warm-up
        for r in range(args.rounds):
            for n in round_order(args.reload_servers, r):
                for kind in ("baseline", "reload"):
                    serial += 1
                    kv, took = reload_once(servers[n], loadgen, args, queries, zone, serial, kind)
                    results[n][kind].append(kv)
                    if took:
                        results[n]["took"].append(float(took.split()[0]))
                    log(f"round {r + 1} {n} {kind}: p50 {kv['p50_us']:.0f} µs, p99 {kv['p99_us']:.0f} µs, "
                        f"p99.9 {kv['p999_us']:.0f} µs, lost {kv['lost']:.0f} of {kv['sent']:.0f}"
                        + (f", reload {took} s" if took else ""))
                    rows.append([str(r + 1), n, kind, f"{kv['sent']:.0f}", f"{kv['answered']:.0f}", f"{kv['lost']:.0f}",
                                 f"{kv['p50_us']:.0f}", f"{kv['p99_us']:.0f}", f"{kv['p999_us']:.0f}", took])
                if not args.baseline_windows:
                    continue
                for kind in ["baseline"] * args.baseline_windows + ["reload"]:
                    serial += 1
                    box = {}

                    def one():
                        box["kv"], box["took"] = reload_once(servers[n], loadgen, args, queries, zone, serial, kind,
                                                             windowed=True)
                        return box["kv"]
                    kv = host_noise(servers[n], one)
                    took = box["took"]
                    results[n]["wbase" if kind == "baseline" else "wreload"].append(kv)
                    steal = sum(v for k, v in kv.items() if k.startswith("steal_ms_cpu"))
                    log(f"round {r + 1} {n} windowed {kind}: p99 {kv['p99_us']:.0f} µs (without generator stalls "
                        f"{kv['p99_clean_us']:.0f}), lost {kv['lost']:.0f}, generator stalls {kv['stalls']:.0f} "
                        f"({kv['stall_ms']:.1f} ms), server waited {kv['server_wait_ms']:.1f} ms, steal {steal:.0f} ms"
                        + (f", reload {took} s" if took else ""))
                    wrows.append([str(r + 1), n, kind, f"{kv['sent']:.0f}", f"{kv['lost']:.0f}", f"{kv['p50_us']:.0f}",
                                  f"{kv['p99_us']:.0f}", f"{kv['p99_clean_us']:.0f}", f"{kv['p999_us']:.0f}",
                                  f"{kv['stalls']:.0f} / {kv['stall_ms']:.1f}", f"{kv['server_wait_ms']:.1f}",
                                  f"{steal:.0f}", took])
        for n, s in servers.items():
            if probe(s.port, workload.last_name(), "A") != 0:
                raise RuntimeError(f"{n}: the last name does not answer after the reloads")
            hwm[n] = s.memory()[:2]
    finally:
        for s in servers.values():
            s.stop()
    text = [f"Scheduling: {scheduling(args.fifo_loadgen)}", "",
            f"### SIGHUP reload of a {args.records:,}-record zone at {args.rate} qps "
            f"({', '.join(args.reload_servers)}, interleaved)", "",
            f"Each run: `loadgen -Q {args.rate}` for {args.window} s over {sum(1 for _ in open(queries))} names "
            f"of the zone; in a `reload` run the file was rewritten with a new SOA serial, and SIGHUP goes "
            f"{args.lead} s in (the zone is parsed and built again). "
            + "; ".join(f"{n}: peak RSS {h / 1024:.1f} MiB, RSS at the end {r / 1024:.1f} MiB" for n, (h, r) in hwm.items()),
            "", fmt_table(["round", "server", "run", "sent", "answered", "lost", "p50 µs", "p99 µs", "p99.9 µs",
                           "reload s (server's log)"], rows), ""]
    for n in args.reload_servers:
        res = results[n]
        ratios = [k["p99_us"] / b["p99_us"] for k, b in zip(res["reload"], res["baseline"])]
        text.append(f"- {n}: reload p99 / same round's baseline p99 per round "
                    f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}x); "
                    f"baseline p99 median {statistics.median(k['p99_us'] for k in res['baseline']):.0f} µs; "
                    f"lost {sum(k['lost'] for k in res['baseline']):.0f} (baseline) / "
                    f"{sum(k['lost'] for k in res['reload']):.0f} (reload); "
                    f"reload s median {statistics.median(res['took']):.2f}")
    if args.baseline_windows:
        text += ["", f"Windowed (the method of Benchmarks/run's windowed p99): per round and server, "
                 f"{args.baseline_windows} baseline runs and one reload run of {args.p99_window:g} s each with "
                 f"`loadgen -Z -K 32` (the generator sleeps until each send is due and sends no burst after a stall "
                 f"of its own); SIGHUP {args.lead} s into the reload run, so the reload (about 2 s) fills most of it. "
                 "A round's ratio is its reload run's p99 over the median of its baseline runs' p99s. \"Without "
                 "generator stalls\" leaves out the answers to queries outstanding while the generator itself was "
                 "not running; the server's wait for its CPU (schedstat) and the VM's steal time are per run.", "",
                 fmt_table(["round", "server", "run", "sent", "lost", "p50 µs", "p99 µs", "p99 µs w/o gen. stalls",
                            "p99.9 µs", "gen. stalls n / ms", "server wait ms", "steal ms", "reload s"], wrows), ""]
        for n in args.reload_servers:
            res = results[n]
            per = args.baseline_windows
            bases = [statistics.median(k["p99_us"] for k in res["wbase"][i * per:(i + 1) * per])
                     for i in range(len(res["wreload"]))]
            ratios = [k["p99_us"] / b for k, b in zip(res["wreload"], bases)]
            clean = [k["p99_clean_us"] / statistics.median(x["p99_clean_us"] for x in res["wbase"][i * per:(i + 1) * per])
                     for i, k in enumerate(res["wreload"])]
            text.append(f"- {n}, windowed: reload p99 / the round's median baseline p99, per round "
                        f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}x); "
                        f"without generator stalls {', '.join(f'{x:.2f}' for x in clean)} "
                        f"(median {statistics.median(clean):.2f}x); baseline p99 per round "
                        f"{', '.join(f'{b:.0f}' for b in bases)} µs; lost {sum(k['lost'] for k in res['wbase']):.0f} "
                        f"(baseline) / {sum(k['lost'] for k in res['wreload']):.0f} (reload)")
    return "\n".join(text) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="meridian,knot,nsd", help="for the load figures")
    ap.add_argument("--binary", default=os.path.join(REPO, ".build-bench", "release", "meridian"))
    ap.add_argument("--base-bin", help="another release binary, the server `meridian-base`")
    ap.add_argument("--reload", action="store_true", help="measure reloads under load instead of the load")
    ap.add_argument("--reload-servers", default="meridian",
                    help="the Meridians the reload runs use, interleaved per round: meridian, meridian-base (--base-bin)")
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--window", type=float, default=10.0, help="seconds per fixed-rate run")
    ap.add_argument("--lead", type=float, default=1.0, help="seconds into a reload run before SIGHUP")
    ap.add_argument("--fifo-loadgen", action="store_true",
                    help="run loadgen under chrt -f 50 (SCHED_FIFO), so other processes on its CPU do not delay it")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of rest after a reload run")
    ap.add_argument("--baseline-windows", type=int, default=3,
                    help="windowed reload figure: baseline runs per round and server before its reload run "
                         "(0: only the single-run figure)")
    ap.add_argument("--p99-window", type=float, default=4.0, help="seconds per run of the windowed reload figure")
    args = ap.parse_args()
    if not (0 <= args.baseline_windows <= 20 and args.lead < args.p99_window <= 60 and 0 < args.window <= 60):
        ap.error("--baseline-windows must be 0..20, --p99-window in (--lead, 60], --window in (0, 60]")
    args.servers = [s for s in args.servers.split(",") if s]
    args.reload_servers = [s for s in args.reload_servers.split(",") if s]
    Meridian.binary = os.path.abspath(args.binary)
    if args.base_bin:
        MeridianBase.binary = os.path.abspath(args.base_bin)
    loadgen, _ = build_tools()
    report = [f"Load avg at start: {open('/proc/loadavg').read().split()[:3]}", ""]
    report.append(reload_runs(args, loadgen) if args.reload else zone_load(args))
    print("\n".join(report))


if __name__ == "__main__":
    main()
