#!/usr/bin/env python3
"""`Benchmarks/icount/run.py` with one more workload, `static-hits`: the static zone with only
the plain A/AAAA queries for names that exist (the part answered from prebuilt answers), so
the static figure splits into `static-hits` and `static-rest`.

    Benchmarks/icount-static/run.py --bin NEW --bin OLD --workload static-hits,static-rest --top 25

`--malloc BIN` instead counts heap allocations per query of one binary on the static workload
(the harness's `malloc_check`: LD_PRELOAD counter, 200,000 queries at 50k qps after a warm-up).

    Benchmarks/icount-static/run.py --malloc .build-bench/release/meridian
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "icount"))

from harness.workloads import WORKLOADS, StaticWorkload  # noqa: E402
import run as icount  # noqa: E402  (Benchmarks/icount/run.py)


class StaticHitsWorkload(StaticWorkload):
    """The static zone, only A/AAAA queries for its 1,000 hosts."""

    name = "static-hits"
    existing = 1.0
    description = "the static zone, only A/AAAA queries for names that exist; one worker, pinned"


WORKLOADS[StaticHitsWorkload.name] = StaticHitsWorkload

_measure = icount.measure


def measure_started(binary, workload, *args, **kwargs):
    """`icount.measure` with the workload's own peers running (the health workload's
    checked TCP backends), as `Benchmarks/run` runs them: started before, stopped after."""
    workload.start()
    try:
        return _measure(binary, workload, *args, **kwargs)
    finally:
        workload.stop()


icount.measure = measure_started


def malloc(binary):
    from harness.measure import build_tools
    from harness.servers import Meridian
    from harness.tools import malloc_check
    loadgen, counter = build_tools()
    Meridian.binary = os.path.abspath(binary)
    text, per_query = malloc_check(None, counter, loadgen)
    print(text)
    return per_query


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--malloc":
        malloc(sys.argv[2])
    else:
        icount.main()
