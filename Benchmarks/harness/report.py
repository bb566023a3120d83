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


def window_table(workload, results, rate):
    """The windowed p99 (P99_WINDOWS) of each server: per round, the median of its windows'
    p99s; the host's noise during the windows, summed over all rounds; and Meridian's ratio
    to each peer per round."""
    if not workload.latency or not any(r["windows"] for rs in results.values() for r in rs):
        return []
    first = next(r["windows"] for rs in results.values() for r in rs if r["windows"])
    count, seconds = len(first), P99_WINDOWS["seconds"]
    rows = []
    for n, rs in results.items():
        ws = [w for r in rs for w in r["windows"]]
        rows.append([n, fmt_value(median([r["p99_ms"] for r in rs]), 3),
                     ", ".join(fmt_value(r["p99w_ms"], 3) for r in rs), fmt_value(median([r["p99w_ms"] for r in rs]), 3),
                     fmt_value(median([r["p99w_clean_ms"] for r in rs]), 3),
                     f"{sum(w['stalled_answers'] for w in ws):.0f} of {sum(w['answered'] for w in ws):.0f}",
                     f"{sum(w['stalls'] for w in ws):.0f} / {sum(w['stall_ms'] for w in ws):.1f} / "
                     f"{max([w['max_stall_us'] for w in ws] or [0]) / 1000:.1f}",
                     f"{sum(w['skipped'] for w in ws):.0f}", f"{sum(w['server_wait_ms'] for w in ws):.1f}",
                     f"{sum(w['steal_ms'] for w in ws):.0f}"])
    text = [f"p99 at {rate} qps, windowed: in each round, after the single run above, {count} runs of {seconds:g} s "
            f"(`loadgen -Z -K {P99_WINDOWS['max_behind']}`: the generator sleeps until each send is due and, after a "
            "stall of its own, sends at most that many queries behind schedule instead of a burst); a round's figure is "
            "the median of its windows' p99s, the column's the median of the rounds. \"Without generator stalls\": "
            "the same windows leaving out the answers to queries that were outstanding while the generator itself "
            "was not running (a gap over 0.5 ms in its loop: a cause outside the server). Noise columns are summed "
            "over every window of every round:", "",
            fmt_table(["server", f"p99 ms single run (median)", "windowed p99 ms per round", "windowed p99 ms (median)",
                       "without generator stalls (median)", "answers with a generator stall",
                       "generator stalls: n / ms / max ms", "skipped sends", "server's wait for CPU ms",
                       "steal ms (all CPUs)"], rows), ""]
    if "meridian" in results:
        for n, rs in results.items():
            if n == "meridian" or len(rs) != len(results["meridian"]):
                continue
            for label, k in (("p99 single run", "p99_ms"), ("windowed p99", "p99w_ms"),
                             ("windowed p99 without generator stalls", "p99w_clean_ms")):
                ratios = [m[k] / p[k] for m, p in zip(results["meridian"], rs) if p[k] == p[k] and p[k]]
                if ratios:
                    text.append(f"- Meridian / {n}, {label}, per round: " + ", ".join(f"{x:.2f}" for x in ratios)
                                + f" (median {median(ratios):.2f})")
        text.append("")
    return text


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
            f"lost summed over rounds; servers in ABBA order: reversed in every other round)", "",
            workload.description, ""]
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
    text += window_table(workload, results, rate)
    text += [f"- {note}" for note in workload.notes]
    text += [f"- {n}: {note}" for n, ns in notes.items() for note in ns]
    text += [f"- {n} left out: {why}" for n, why in left_out.items()]
    return "\n".join(text) + "\n", med
