"""Report: medians, markdown tables, ratios against the peers."""

from .common import *  # noqa: F401,F403
from .measure import *  # noqa: F401,F403


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt_table(headers, rows):
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep] + body)


def fmt_value(value, digits):
    return "–" if value != value else f"{value:.{digits}f}"  # NaN: not measured here


def summarise(workload, results, memory, notes, left_out, args):
    med = {n: {k: median([r[k] for r in rs]) for k in MEASURE_KEYS} for n, rs in results.items()}
    for n in med:
        med[n]["rss_mib"] = memory[n][0] / 1024
        med[n]["anon_mib"] = memory[n][3] / 1024
        med[n]["lost_total"] = sum(r["lost"] for r in results[n])
        med[n]["rate_lost_total"] = sum(r["rate_lost"] for r in results[n])
    rate = workload.rate or args.rate
    tcp = bool(workload.per_conn)
    latency = [(f"p50 ms @{rate}", "p50_ms", 3), (f"p99 ms @{rate}", "p99_ms", 3)] if workload.latency else []
    columns = ([("QPS (loadgen TCP)" if tcp else "QPS (batched)", "qps", 0),
                ("µs CPU/query (loadgen TCP)" if tcp else "µs CPU/query (dnsperf)", "cpu_us", 2)]
               + latency + [("lost (sat.)", "lost_total", 0)]
               + ([("lost (rate)", "rate_lost_total", 0)] if workload.latency else [])
               + [("peak RSS MiB", "rss_mib", 1), ("anon RSS MiB", "anon_mib", 1)]
               + ([] if tcp else [("dnsperf QPS", "dnsperf_qps", 0), ("µs CPU/query (batched)", "cpu_us_loadgen", 2)]))
    rows = [[n] + [fmt_value(m[k], d) for _, k, d in columns] for n, m in med.items()]
    text = [f"### Workload `{workload.name}` (medians of {args.rounds} round(s) of {args.duration:g} s; "
            f"lost summed over rounds)", "", workload.description, ""]
    text += [fmt_table(["server"] + [h for h, _, _ in columns], rows) if rows else "(no server measured)", ""]
    if "meridian" in med and len(med) > 1:
        m = med["meridian"]
        ratios = [("QPS ratio", "qps"), ("CPU/query ratio", "cpu_us")] + (
            [("p99 ratio", "p99_ms")] if latency else []) + [("RSS ratio", "rss_mib")]
        rrows = [[n] + [fmt_value(m[k] / p[k], 2) for _, k in ratios] for n, p in med.items() if n != "meridian"]
        text += ["Meridian / peer (QPS: higher is better; CPU, latency, RSS: lower is better):", "",
                 fmt_table(["peer"] + [h for h, _ in ratios], rrows), ""]
        # Rounds are interleaved (Meridian, then each peer), so a round's ratio compares
        # measurements a few seconds apart: the figure to read on a host that drifts.
        per_round = []
        for n in med:
            if n == "meridian" or len(results[n]) != len(results["meridian"]):
                continue
            for label, k in (("QPS", "qps"), ("CPU/query", "cpu_us")):
                rs = [m[k] / p[k] for m, p in zip(results["meridian"], results[n]) if p[k] == p[k] and p[k]]
                if rs:
                    per_round.append(f"- Meridian / {n}, {label}, per round: "
                                     + ", ".join(f"{r:.2f}" for r in rs) + f" (median {median(rs):.2f})")
        text += per_round + ([""] if per_round else [])
    text += [f"- {note}" for note in workload.notes]
    text += [f"- {n}: {note}" for n, ns in notes.items() for note in ns]
    text += [f"- {n} left out: {why}" for n, why in left_out.items()]
    return "\n".join(text) + "\n", med
