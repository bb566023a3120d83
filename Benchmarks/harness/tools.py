"""Allocation count, zone load, profile."""

from .common import *  # noqa: F401,F403
from .probe import *  # noqa: F401,F403
from .workloads import *  # noqa: F401,F403
from .servers import *  # noqa: F401,F403
from .measure import *  # noqa: F401,F403
from .report import *  # noqa: F401,F403


def malloc_check(args, counter_lib, loadgen, queries_n=200_000):
    """Counts heap allocations in the Meridian process while it answers queries_n queries."""
    workload = StaticWorkload()
    base = os.path.join(WORK, "malloc")
    shutil.rmtree(base, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    queries = os.path.join(base, "queries.txt")
    write_query_file(workload, queries)
    counts = os.path.join(base, "counts")
    s = Meridian(free_port(), workload, os.path.join(base, "meridian"), zone_paths)
    s.start(extra_env={"LD_PRELOAD": counter_lib, "MALLOCCOUNT_FILE": counts})

    def read():
        with open(counts, "rb") as f:
            return struct.unpack("<QQ", f.read(16))

    try:
        wait_ready(s, workload.origin)
        startup = read()
        loadgen_run(loadgen, s.port, queries, 5, rate=50_000, count=20_000)  # warm-up
        seconds = max(2.0, queries_n / 50_000)
        a0 = read()
        time.sleep(seconds)
        a1 = read()
        lg = loadgen_run(loadgen, s.port, queries, seconds + 5, rate=50_000, count=queries_n)
        a2 = read()
    finally:
        s.stop()
    idle = a1[0] - a0[0]
    load = a2[0] - a1[0]
    answered = int(lg["answered"])
    per_query = load / max(answered, 1)
    text = (f"### Heap allocations on the query path\n\n"
            f"LD_PRELOAD counter (Benchmarks/malloccount) in the Meridian process, static workload, "
            f"after a 20,000-query warm-up: {load} allocations (malloc, calloc, realloc, memalign family) "
            f"while answering {answered} queries at 50k qps = **{per_query:.4f} allocations per query**; "
            f"{idle} allocations in an idle period of the same length ({seconds:.0f} s). "
            f"The counter works: it saw {startup[0]} allocations during start-up and zone load.\n")
    return text, per_query


def load_once(name, workload, zone_paths, base, timeout=600):
    """Starts server `name` on a sized zone: (seconds from start until the last name answers,
    then 0.5 s later VmHWM, VmRSS and PSS in KiB, summed over the process tree)."""
    s = SERVER_CLASSES[name](free_port(), workload, os.path.join(base, name), zone_paths)
    t0 = time.monotonic()
    s.start()
    try:
        wait_ready(s, workload.origin, "SOA", timeout=timeout)
        wait_ready(s, workload.last_name(), "A", timeout=timeout)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        hwm, rss, pss, _ = s.memory()
    finally:
        s.stop()
    return elapsed, hwm, rss, pss


def zone_load(args, meridian_binary):
    rows = []
    for records in (100_000, 1_000_000):
        workload = SizedZoneWorkload(records)
        base = os.path.join(WORK, workload.name)
        shutil.rmtree(base, ignore_errors=True)
        log(f"writing a {records}-record zone")
        zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
        for n in args.zone_servers:
            elapsed, hwm, rss, pss = load_once(n, workload, zone_paths, base)
            log(f"{records} records, {n}: loaded in {elapsed:.2f} s, peak RSS {hwm / 1024:.1f} MiB")
            rows.append([f"{records:,}", n, f"{elapsed:.2f}", f"{hwm / 1024:.1f}", f"{rss / 1024:.1f}",
                         f"{pss / 1024:.1f}"])
    headers = ["records", "server", "load s (start to last name answered)", "peak RSS MiB (VmHWM sum)",
               "RSS MiB", "PSS MiB"]
    rows = [r[:6] for r in rows]
    return "### Zone load time and memory\n\n" + fmt_table(headers, rows) + "\n"


def perf_top(data, limit=25, inclusive=False):
    """The top symbols of a perf.data file by self (or inclusive) share, Swift names demangled."""
    mode = ["--children", "-g", "none", "--percent-limit", "3"] if inclusive else ["--no-children", "--percent-limit", "0.5"]
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso,symbol"] + mode,
                         capture_output=True, text=True).stdout
    lines = [l for l in rep.splitlines() if re.match(r"\s+[\d.]+%", l)][:limit]
    if shutil.which("swift-demangle") or shutil.which("swift"):
        dem = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(lines),
                             capture_output=True, text=True)
        if dem.returncode == 0:
            lines = dem.stdout.splitlines()
    return [l[:200].rstrip() for l in lines]


def profile(args, meridian_binary, loadgen):
    """perf profile of the release binary: the query path under saturating load, and a zone load.

    valgrind 3.19 (Debian 12) cannot read the DWARF 5 that Swift 6 emits, so this uses perf
    sampling (cycles) plus `perf stat` instruction counts per query.
    """
    workload = StaticWorkload()
    base = os.path.join(WORK, "profile")
    shutil.rmtree(base, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    queries = os.path.join(base, "queries.txt")
    write_query_file(workload, queries)
    data = os.path.join(base, "perf-query.data")
    s = Meridian(free_port(), workload, os.path.join(base, "meridian"), zone_paths)
    s.start()
    seconds = args.duration
    try:
        wait_ready(s, workload.origin)
        loadgen_run(loadgen, s.port, queries, 1)
        rec = subprocess.Popen(["perf", "record", "-F", "4999", "-g", "-o", data, "-p", str(s.proc.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        lg = loadgen_run(loadgen, s.port, queries, seconds)
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
    finally:
        s.stop()
    answered = max(lg["answered"], 1)
    dso = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso"],
                         capture_output=True, text=True).stdout
    dso_lines = [l.strip() for l in dso.splitlines() if re.match(r"\s+[\d.]+%", l)][:8]
    callers = []
    for sym in ("swift_retain", "swift_release", "swift_beginAccess"):
        folded = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-S", sym,
                                 "-g", "folded,0,caller,count"], capture_output=True, text=True).stdout
        tally = {}
        for line in folded.splitlines():
            m = re.match(r"(\d+) (.*)", line)
            if not m:
                continue
            frames = m.group(2).split(";")
            if len(frames) >= 2:
                key = frames[-2]
                tally[key] = tally.get(key, 0) + int(m.group(1))
        for k, v in sorted(tally.items(), key=lambda kv: -kv[1])[:4]:
            callers.append(f"{sym} <- {k}: {v} samples")
    if callers:
        dem = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(callers),
                             capture_output=True, text=True)
        if dem.returncode == 0:
            callers = dem.stdout.splitlines()
    text = [f"### perf profile of Meridian under saturating load (static workload, {int(answered)} answers, "
            f"{lg['qps']:.0f} qps)", "",
            "Samples by binary (kernel = socket syscalls and the loopback path):", "", "```"] + dso_lines + [
            "```", "", "Who calls the Swift runtime (caller of each sample):", "", "```"] + callers + ["```", "",
            "Top symbols by self share of sampled cycles (`perf report --no-children --sort dso,symbol`):", "",
            "```"] + perf_top(data) + ["```", ""]

    # Zone load: `meridian check` parses and builds the same snapshot that `serve` loads.
    big = SizedZoneWorkload(args.profile_zone_records)
    zdir = os.path.join(base, "bigzone")
    write_zone_files(big, zdir)
    zdata = os.path.join(base, "perf-zone.data")
    t0 = time.monotonic()
    subprocess.run(["perf", "record", "-F", "999", "-g", "-o", zdata, "--", meridian_binary, "check", "--zones", zdir],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    elapsed = time.monotonic() - t0
    text += [f"### perf profile of loading a {big.records:,}-record zone (`meridian check`, {elapsed:.1f} s under perf)", "",
             "Inclusive (function and what it calls; first column inclusive, second self):", "",
             "```"] + perf_top(zdata, limit=40, inclusive=True) + ["```", "", "Self:", "",
             "```"] + perf_top(zdata) + ["```", ""]
    return "\n".join(text)
