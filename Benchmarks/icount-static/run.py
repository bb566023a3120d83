#!/usr/bin/env python3
"""`Benchmarks/icount/run.py` with one more workload, `static-hits`: the static zone with only
the plain A/AAAA queries for names that exist (the part answered from prebuilt answers), so
the static figure splits into `static-hits` and `static-rest`.

    Benchmarks/icount-static/run.py --bin NEW --bin OLD --workload static-hits,static-rest --top 25
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

if __name__ == "__main__":
    icount.main()
