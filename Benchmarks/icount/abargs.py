"""Command-line arguments that ab.py and p99.py share (two binaries, a workload, rounds)."""


def add_common(ap, workload, base_required):
    ap.add_argument("--bin", required=True, help="the release meridian binary measured as `meridian`")
    ap.add_argument("--base-bin", required=base_required, help="the binary measured as `meridian-base`")
    ap.add_argument("--workload", default=workload, help="comma list of the harness's workloads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per load run")
    ap.add_argument("--rate", type=int, default=20_000, help="the fixed rate of the latency run")


def parse(ap):
    args = ap.parse_args()
    if not (1 <= args.rounds <= 20 and 0 < args.duration <= 30):
        ap.error("--rounds must be 1..20 and --duration in (0, 30]")
    return args
