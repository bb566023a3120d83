"""Measurement: the C tools, load runs (loadgen, dnsperf), CPU per query, interleaved rounds."""

from .common import *  # noqa: F401,F403
from .probe import *  # noqa: F401,F403
from .workloads import *  # noqa: F401,F403
from .servers import *  # noqa: F401,F403


def build_tools():
    os.makedirs(WORK, exist_ok=True)
    loadgen = os.path.join(WORK, "loadgen")
    counter = os.path.join(WORK, "libmalloccount.so")
    Floor.binary = os.path.join(WORK, "floor")
    run(["gcc", "-O2", "-Wall", "-o", Floor.binary, os.path.join(HERE, "floor", "floor.c")])
    run(["gcc", "-O2", "-Wall", "-o", loadgen, os.path.join(HERE, "loadgen", "loadgen.c")])
    run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", counter,
         os.path.join(HERE, "malloccount", "malloccount.c")])
    return loadgen, counter


def parse_kv(text):
    line = [l for l in text.strip().splitlines() if "=" in l][-1]
    return {k: float(v) for k, v in (p.split("=", 1) for p in line.split())}


def load_command(cmd, pinned):
    return ["taskset", "-c", LOAD_CPU] + cmd if pinned else cmd


def loadgen_run(loadgen, port, queries, seconds, rate=None, count=100_000_000, window=200, pinned=True,
                per_conn=None, dnssec=False, max_behind=None, fifo=False, sleep=False):
    """Batched UDP, or TCP with per_conn queries on each connection (loadgen -T); DO set
    with `dnssec` (loadgen -D); at a fixed rate, `max_behind` caps the catch-up after a
    stall of the generator (loadgen -K) and `sleep` makes it sleep between sends instead of
    spinning (loadgen -Z); `fifo` runs it under `chrt -f 50`."""
    cmd = [loadgen, "-s", "127.0.0.1", "-p", str(port), "-d", queries,
           "-l", str(seconds), "-n", str(count), "-w", str(window), "-c", "8", "-b", "32"]
    if rate:
        cmd += ["-Q", str(rate)]
    if rate and max_behind:
        cmd += ["-K", str(max_behind)]
    if rate and sleep:
        cmd += ["-Z"]
    if per_conn:
        cmd += ["-T", str(per_conn)]
    if dnssec:
        cmd += ["-D"]
    cmd = load_command(cmd, pinned)
    if fifo:
        cmd = ["chrt", "-f", "50"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr}")
    return parse_kv(out.stdout)


def cpu_ticks():
    """{cpu index: (steal, irq + softirq)} in ms, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                out[int(m.group(1))] = (v[7] * 1000 / CLK_TCK, (v[5] + v[6]) * 1000 / CLK_TCK)
    return out


def run_delay_ms(pids):
    """Time the threads of `pids` spent runnable but waiting for a CPU (schedstat), in ms."""
    total = 0
    for p in pids:
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e6


def host_noise(server, run):
    """Runs `run()` and adds to its result what else happened meanwhile: the server's wait
    for its CPU (`server_wait_ms`), the VM's steal time and interrupt time per CPU
    (`steal_ms_cpuN`, `irq_ms_cpuN`)."""
    pids = server.pids()
    w0, c0 = run_delay_ms(pids), cpu_ticks()
    out = run()
    w1, c1 = run_delay_ms(pids), cpu_ticks()
    out["server_wait_ms"] = w1 - w0
    for cpu in c1:
        out[f"steal_ms_cpu{cpu}"] = c1[cpu][0] - c0[cpu][0]
        out[f"irq_ms_cpu{cpu}"] = c1[cpu][1] - c0[cpu][1]
    return out


def dnsperf_run(port, queries, seconds, binary=False, pinned=True):
    """dnsperf over UDP: the text file with `-e`, or wire messages with `-B`."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries,
           "-l", str(seconds), "-c", "8", "-q", "200", "-t", "1"] + (["-B"] if binary else ["-e"])
    # dnsperf has been seen to hang past its -l under SCHED_FIFO on this VM (once in a
    # 35-minute run, which then lost every result): the run is killed and made once more.
    for attempt in (1, 2):
        try:
            out = subprocess.run(load_command(cmd, pinned), capture_output=True, text=True, timeout=seconds + 30).stdout
            break
        except subprocess.TimeoutExpired:
            if attempt == 2:
                raise
            log(f"dnsperf did not finish within {seconds + 30:.0f} s; killed, run again")
    found = {k: re.search(pattern, out) for k, pattern in (
        ("answered", r"Queries completed:\s+(\d+)"), ("lost", r"Queries lost:\s+(\d+)"),
        ("qps", r"Queries per second:\s+([\d.]+)"))}
    if not all(found.values()):
        raise RuntimeError(f"dnsperf gave no statistics: {out[-500:]}")
    return {k: float(m.group(1)) for k, m in found.items()}


def cpu_per_answer(server, run, *args, **kw):
    """Runs one load run; returns its result and the server's CPU µs per answered query."""
    c0 = server.cpu_seconds()
    out = run(*args, **kw)
    c1 = server.cpu_seconds()
    return out, (c1 - c0) * 1e6 / max(out["answered"], 1)


MEASURE_KEYS = ("qps", "cpu_us", "p50_ms", "p99_ms", "lost", "rate_lost", "dnsperf_qps", "cpu_us_loadgen", "errors",
                "p99w_ms", "p99w_clean_ms", "p50w_ms")

# The windowed p99 (Benchmarks/README.md, "p99 at the fixed rate"): `count` runs of `seconds`
# each, the generator sleeping between sends (loadgen -Z) and sending at most `max_behind`
# queries behind schedule after a stall of its own (-K); the figure is the median of the
# windows' p99s. `fifo` runs the generator under `chrt -f 50` (the whole command under
# `chrt -f 50` gives servers and generator SCHED_FIFO alike).
P99_WINDOWS = {"count": 5, "seconds": 2.0, "max_behind": 32, "fifo": False}

# Per window, besides loadgen's figures: what else happened meanwhile (host_noise) and what
# the generator lost itself.
NOISE_KEYS = ("stalls", "stall_ms", "max_stall_us", "stalled_answers", "wait_ms", "skipped", "server_wait_ms",
              "steal_ms", "irq_ms")


def scheduling(fifo_loadgen=False):
    """How this process (and so every server and generator it starts) is scheduled, for the report."""
    policy = os.sched_getscheduler(0)
    if policy == os.SCHED_FIFO:
        text = (f"the command runs under SCHED_FIFO {os.sched_getparam(0).sched_priority} (e.g. `chrt -f 50`): "
                "servers and load generator inherit it, so the host's other jobs do not preempt them")
    else:
        text = "SCHED_OTHER (not under chrt): the host's other jobs share the servers' and generator's CPUs"
    return text + ("; load generator under `chrt -f 50`" if fifo_loadgen else "")


def round_order(servers, rnd):
    """The order of round `rnd` (from 0): as given in even rounds, reversed in odd ones, so
    over two rounds every server is measured once early and once late (A B, B A: ABBA), and
    a drift of the host within a round does not favour one of them."""
    return list(servers) if rnd % 2 == 0 else list(reversed(servers))


def p99_windows(server, loadgen, queries, rate, pinned=True, per_conn=None, settings=None):
    """The windowed p99 of one server: a list of per-window dicts, loadgen's figures and
    the host's noise (steal_ms and irq_ms summed over the CPUs)."""
    cfg = dict(P99_WINDOWS, **(settings or {}))
    out = []
    for _ in range(cfg["count"]):
        def one():
            return loadgen_run(loadgen, server.port, queries, cfg["seconds"], rate=rate, pinned=pinned,
                               per_conn=per_conn, max_behind=cfg["max_behind"], fifo=cfg["fifo"],
                               sleep=not per_conn)
        w = host_noise(server, one)
        w["steal_ms"] = sum(v for k, v in w.items() if k.startswith("steal_ms_cpu"))
        w["irq_ms"] = sum(v for k, v in w.items() if k.startswith("irq_ms_cpu"))
        out.append(w)
    return out


def measure_server(server, workload, loadgen, files, seconds, rate, windows=None):
    """One round for one server: saturating loadgen (QPS), dnsperf for CPU/query (UDP only:
    over TCP the figure is loadgen's), loadgen at a fixed rate (p50/p99, one run of
    `seconds`), then the windowed p99 (P99_WINDOWS, or `windows` to change it; the
    per-window figures are in r["windows"])."""
    r = dict.fromkeys(MEASURE_KEYS, float("nan"))
    r["windows"] = []
    lg_args = dict(pinned=workload.pinned, per_conn=workload.per_conn)
    lg, r["cpu_us_loadgen"] = cpu_per_answer(server, loadgen_run, loadgen, server.port, files["loadgen"],
                                             seconds, **lg_args)
    r.update(qps=lg["qps"], lost=lg["lost"], errors=lg["other_rcode"])
    if workload.per_conn:
        r["cpu_us"] = r["cpu_us_loadgen"]
    else:
        dp, r["cpu_us"] = cpu_per_answer(server, dnsperf_run, server.port, files["dnsperf"], seconds,
                                         binary=files["dnsperf_binary"], pinned=workload.pinned)
        r["dnsperf_qps"] = dp["qps"]
    if workload.latency:
        lat = loadgen_run(loadgen, server.port, files["loadgen"], seconds, rate=rate, **lg_args)
        r.update(p50_ms=lat["p50_us"] / 1000, p99_ms=lat["p99_us"] / 1000, rate_lost=lat["lost"])
        ws = p99_windows(server, loadgen, files["loadgen"], rate, pinned=workload.pinned,
                         per_conn=workload.per_conn, settings=windows)
        r["windows"] = ws
        if ws:
            r.update(p99w_ms=statistics.median(w["p99_us"] for w in ws) / 1000,
                     p99w_clean_ms=statistics.median(w["p99_clean_us"] for w in ws) / 1000,
                     p50w_ms=statistics.median(w["p50_us"] for w in ws) / 1000)
            r["rate_lost"] += sum(w["lost"] for w in ws)
    return r


def server_zone_paths(workload, name, zone_paths, directory):
    """The zone files server `name` serves: the workload's own, or, when the workload adds
    records for that server (gdnsd's DYNA records, say), a copy with them in `directory`."""
    extra = workload.zone_extra(name)
    return write_zone_files(workload, os.path.join(directory, "zone-copy"), extra) if extra else zone_paths


def start_servers(names, workload, zone_paths, base_dir):
    """Starts each server (its own zone copy when the workload adds records for it) and waits
    until it answers; a server that does not come up is left out with the reason."""
    servers, failed = [], {}
    for n in names:
        d = os.path.join(base_dir, n)
        s = SERVER_CLASSES[n](free_port(), workload, d, server_zone_paths(workload, n, zone_paths, d))
        s.start(pin=workload.pinned)
        servers.append(s)
    origin = next(iter(zone_paths))
    for s in list(servers):
        try:
            wait_ready(s, origin)
            log(f"{s.name} ready on 127.0.0.1:{s.port} (pids {s.pids()})")
        except RuntimeError as e:
            log(f"{s.name} left out of {workload.name}: {e}")
            failed[s.name] = str(e)
            stop_all([s])
            servers.remove(s)
    return servers, failed


def stop_all(servers):
    for s in servers:
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {s.name}: {e}")


def run_workload(args, workload, loadgen):
    """Verifies and measures every server that runs the workload; returns (results, memory,
    notes, left out {server: reason})."""
    base = os.path.join(WORK, workload.name)
    shutil.rmtree(base, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    files = {"loadgen": os.path.join(base, "queries.txt")}
    write_query_file(workload, files["loadgen"])
    files["dnsperf"], files["dnsperf_binary"] = write_dnsperf_file(workload, files["loadgen"],
                                                                   os.path.join(base, "queries.bin"))
    # meridian-base runs wherever meridian does.
    names = [n for n in args.servers if n in workload.servers or (n == "meridian-base" and "meridian" in workload.servers)]
    left_out = {n: workload.left_out.get(n, "does not run this workload") for n in args.servers if n not in names}
    for n, why in left_out.items():
        log(f"{n} left out of {workload.name}: {why}")
    rate = workload.rate or args.rate
    workload.start()
    servers = []
    notes = {}
    try:
        servers, failed = start_servers(names, workload, zone_paths, base)
        left_out.update(failed)
        for s in list(servers):
            if s.reference:
                log(f"{s.name}: reference responder, answers not verified")
                continue
            problems, n = verify(s, workload)
            if problems:
                shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
                log(f"{s.name} gives wrong answers, not measured:\n  " + "\n  ".join(shown))
                left_out[s.name] = f"wrong answers ({len(problems)} of {len(workload.checks())} checks), e.g. {problems[0]}"
                stop_all([s])
                servers.remove(s)
                continue
            notes[s.name] = n
            log(f"{s.name}: all {len(workload.checks())} checks agree" + (f" ({'; '.join(n)})" if n else ""))
        census = getattr(workload, "scope_census", None)
        if census:
            name, subnets = census()
            for s in servers:
                if s.reference:
                    continue
                entries, scopes = scope_census(s.port, name, subnets)
                if scopes:
                    qs = statistics.quantiles(scopes, n=4)
                    notes.setdefault(s.name, set()).add(
                        f"ECS scopes for {len(scopes)} sampled clients: median /{statistics.median(scopes):g} "
                        f"(quartiles /{qs[0]:g}, /{qs[2]:g}); a resolver caching by scope holds "
                        f"{len(entries)} distinct (network, answer) entries for them")
        for name, problem in workload.exercise([s for s in servers if not s.reference]).items():
            log(f"{name} not measured: {problem}")
            left_out[name] = problem
            stop_all([s for s in servers if s.name == name])
            servers = [s for s in servers if s.name != name]
        # Warm-up: one short saturating run each, not recorded.
        for s in servers:
            loadgen_run(loadgen, s.port, files["loadgen"], min(1.0, args.duration), pinned=workload.pinned,
                        per_conn=workload.per_conn)
        results = {s.name: [] for s in servers}
        for rnd in range(args.rounds):
            for s in round_order(servers, rnd):
                log(f"{workload.name} round {rnd + 1}/{args.rounds}: {s.name}")
                r = measure_server(s, workload, loadgen, files, args.duration, rate)
                log(f"  {s.name}: {r['qps']:.0f} qps, {r['cpu_us']:.2f} us CPU/query (dnsperf "
                    f"{r['dnsperf_qps']:.0f} qps), p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
                    f"lost {r['lost']:.0f}, error rcodes {r['errors']:.0f}")
                if r["windows"]:
                    log(f"  {s.name}: windowed p99 {r['p99w_ms']:.3f} ms (windows "
                        + ", ".join(f"{w['p99_us'] / 1000:.3f}" for w in r["windows"])
                        + f"), without generator-stalled answers {r['p99w_clean_ms']:.3f} ms; generator stalls "
                        f"{sum(w['stalls'] for w in r['windows']):.0f} ({sum(w['stall_ms'] for w in r['windows']):.1f} ms), "
                        f"server waited {sum(w['server_wait_ms'] for w in r['windows']):.1f} ms for its CPU, "
                        f"steal {sum(w['steal_ms'] for w in r['windows']):.0f} ms")
                results[s.name].append(r)
        memory = {s.name: s.memory() for s in servers}
    finally:
        stop_all(servers)
        workload.stop()
    return results, memory, notes, left_out
