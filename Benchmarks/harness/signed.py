"""Signed workloads against the peers (Benchmarks/dnssec/run --peers): Meridian, Knot and
PowerDNS answering the same zone signed with ECDSA P-256 (algorithm 13), each checked with
delv and dnspython before it is measured.

- Meridian: keys from `meridian keygen` (KSK + ZSK), `dnssec: { keys: DIR }` in the YAML or
  `DIR/keys` beside the zones (`serve --zones`).
- Knot: `dnssec-signing: on` with a policy `algorithm: ecdsap256sha256` (KSK + ZSK, NSEC),
  keys made by Knot in its KASP database; the geo workloads with mod-geoip as in `geo`.
- PowerDNS: `pdnsutil secure-zone` (its default: one ECDSA P-256 key, flags 257, signing
  everything); the static zone from the bind backend with `bind-dnssec-db` (gsqlite3 file),
  the geo zone from the geoip backend with `geoip-dnssec-keydir`; answers signed live.
"""

from .common import *  # noqa: F401,F403
from .measure import *  # noqa: F401,F403
from .report import median, fmt_table  # noqa: F401

KNOT_POLICY = """policy:
  - id: bench
    algorithm: ecdsap256sha256
    nsec3: off
"""


class SignedMixin:
    """Adds DNSSEC to a workload's hooks; queries go out with DO (loadgen -D)."""

    signed = True
    meridian_binary = None

    def meridian_keys(self, directory):
        keys = os.path.join(directory, "keys")
        if not os.path.isdir(keys):
            os.makedirs(keys)
            for role in ("ksk", "zsk"):
                run([self.meridian_binary, "keygen", self.origin, "--algorithm", "13", "--role", role, "--dir", keys],
                    stdout=subprocess.DEVNULL)
        return keys

    def knot_extra(self, directory):
        os.makedirs(os.path.join(directory, "db"), exist_ok=True)  # the KASP database's folder
        module, zone_lines = super().knot_extra(directory)
        return KNOT_POLICY + module, zone_lines + "    dnssec-signing: on\n    dnssec-policy: bench\n"


class SignedStatic(SignedMixin, StaticWorkload):
    name = "signed-static"
    servers = ("meridian", "knot", "pdns")

    def __init__(self):
        super().__init__()
        self.description = ("signed static: the `static` zone and query mix (80% A/AAAA, 10% NXDOMAIN, 10% other) "
                            "with DO set, ECDSA P-256; one worker, pinned")

    def meridian_args(self, directory, zones):
        self.meridian_keys(zones)  # DIR/keys beside the zone files
        return ["--zones", zones]

    def pdns_extra(self, directory):
        return f"bind-dnssec-db={directory}/dnssec.sqlite3\n"


class SignedNXCold(SignedStatic):
    """Distinct names that do not exist: an online signer signs a new denial per answer."""
    name = "signed-nx-cold"
    latency = False

    def __init__(self):
        super().__init__()
        self.description = ("signing cost per distinct answer: distinct nonexistent names in the signed static zone, "
                            "each name asked once, with DO and (same server, same round) without DO")


class SignedGeo(SignedMixin, GeoWorkload):
    name = "signed-geo"
    servers = ("meridian", "knot", "pdns")

    def __init__(self):
        super().__init__()
        self.description = "signed " + self.description

    def meridian_args(self, directory, zones):
        args = super().meridian_args(directory, zones)
        keys = self.meridian_keys(directory)
        path = os.path.join(directory, "meridian.yaml")
        text = open(path).read().replace(f"  {self.origin}:\n", f"  {self.origin}:\n    dnssec: {{ keys: {keys} }}\n", 1)
        with open(path, "w") as f:
            f.write(text)
        return args

    def pdns_extra(self, directory):
        keydir = os.path.join(directory, "geoip-keys")
        os.makedirs(keydir, exist_ok=True)
        return super().pdns_extra(directory) + f"geoip-dnssec-keydir={keydir}\n"


class SignedGeoSpread(SignedGeo, GeoSpreadWorkload):
    name = "signed-geo-spread"

    def __init__(self):
        GeoSpreadWorkload.__init__(self)
        self.description = ("signed " + self.description + "; decision caches miss, but the answers are the 7 "
                            "datacenters' RRsets, whose signatures every server has cached after the first")


class SignedPowerDNS(PowerDNS):
    """PowerDNS with the zone secured by `pdnsutil secure-zone` before it starts."""

    def command(self):
        cmd = super().command()
        conf = ["pdnsutil", f"--config-dir={self.dir}"]
        if "bind-dnssec-db=" in open(os.path.join(self.dir, "pdns.conf")).read():
            db = os.path.join(self.dir, "dnssec.sqlite3")
            if not os.path.exists(db):
                run(conf + ["create-bind-db", db], stdout=subprocess.DEVNULL)
        for origin in self.zone_paths:
            run(conf + ["secure-zone", origin], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cmd


class SignedKnot(Knot):
    """Knot with its keys made by keymgr before it starts: mod-geoip loads the zone's keys
    when the module loads, before a first start would have generated them."""

    def command(self):
        cmd = super().command()
        conf = os.path.join(self.dir, "knot.conf")
        for origin in self.zone_paths:
            for ksk in ("true", "false"):
                run(["keymgr", "-c", conf, origin, "generate", "algorithm=ecdsap256sha256", f"ksk={ksk}"],
                    stdout=subprocess.DEVNULL)
        return cmd


# ---- verification: RRSIGs with DO, validated (delv with the served KSK as anchor; dnspython
# for answers with a client subnet, which delv cannot send) ----

def _dnskeys(port, origin):
    import dns.message, dns.query, dns.rdatatype, dns.name
    q = dns.message.make_query(origin + ".", "DNSKEY", want_dnssec=True, payload=4096)
    r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
    keys = r.find_rrset(r.answer, dns.name.from_text(origin + "."), dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    sigs = r.find_rrset(r.answer, dns.name.from_text(origin + "."), dns.rdataclass.IN, dns.rdatatype.RRSIG,
                        dns.rdatatype.DNSKEY)
    return keys, sigs


def verify_signed(server, workload, checks=12):
    """Returns a list of problems: DNSKEY self-signed by a KSK, delv `fully validated` for a
    positive and a negative answer, and for `checks` of the workload's checks: the answer
    set expected, its RRSIG present and valid (dnspython) under the zone's DNSKEY."""
    import dns.dnssec, dns.edns, dns.message, dns.query, dns.rdatatype, dns.name
    origin = workload.origin
    problems = []
    try:
        keys, sigs = _dnskeys(server.port, origin)
        zone = dns.name.from_text(origin + ".")
        dns.dnssec.validate(keys, sigs, {zone: keys})
    except Exception as e:
        return [f"DNSKEY: {e!r}"]
    ksk = [k for k in keys if k.flags == 257]
    algorithms = sorted({k.algorithm for k in keys})
    anchor = os.path.join(server.dir, "anchor.conf")
    with open(anchor, "w") as f:
        for k in ksk:
            f.write(f'trust-anchors {{ {origin}. static-key 257 3 {int(k.algorithm)} "{base64_key(k)}"; }};\n')
    for name, qtype, want in ((f"ns1.{origin}", "A", "; fully validated"),
                              (f"nx-verify.{origin}", "A", "; negative response, fully validated")):
        out = subprocess.run(["delv", "-a", anchor, "@127.0.0.1", "-p", str(server.port), name, qtype, f"+root={origin}"],
                             capture_output=True, text=True, timeout=20)
        if want not in out.stdout + out.stderr:
            problems.append(f"delv {name} {qtype}: {(out.stdout + out.stderr).strip()[:300]}")
    for name, qtype, ecs, rcode, answer in workload.checks()[:checks]:
        opts = []
        if ecs:
            net = ipaddress.ip_network(ecs)
            opts = [dns.edns.ECSOption(str(net.network_address), net.prefixlen)]
        q = dns.message.make_query(name + ".", qtype, want_dnssec=True, payload=1232, options=opts)
        try:
            r = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2)
            if r.flags & dns.flags.TC:
                r = dns.query.tcp(q, "127.0.0.1", port=server.port, timeout=2)
        except Exception as e:
            problems.append(f"{name} {qtype} {ecs}: {e!r}")
            continue
        sets = [s for s in r.answer if s.rdtype != dns.rdatatype.RRSIG]
        got = frozenset((s.name.to_text(), dns.rdatatype.to_text(s.rdtype), s.ttl, rd.to_text())
                        for s in sets for rd in s)
        if {(o, t, d) for o, t, _, d in got} != {(o, t, d) for o, t, _, d in answer}:
            problems.append(f"{name} {qtype} {ecs}: answer {sorted(got)}, expected {sorted(answer)}")
            continue
        for s in sets:
            sig = r.find_rrset(r.answer, s.name, s.rdclass, dns.rdatatype.RRSIG, s.rdtype, create=False) \
                if any(x.rdtype == dns.rdatatype.RRSIG and x.covers == s.rdtype and x.name == s.name for x in r.answer) else None
            if sig is None:
                problems.append(f"{name} {qtype} {ecs}: no RRSIG over {s.name} {dns.rdatatype.to_text(s.rdtype)}")
                continue
            try:
                dns.dnssec.validate(s, sig, {zone: keys})
            except Exception as e:
                problems.append(f"{name} {qtype} {ecs}: RRSIG does not validate: {e!r}")
        if not sets and not any(x.rdtype == dns.rdatatype.RRSIG for x in r.authority):
            problems.append(f"{name} {qtype}: negative answer without RRSIG")
    server.dnssec_note = (f"{len(keys)} DNSKEY(s), algorithm(s) {[int(a) for a in algorithms]}, "
                          f"{len(ksk)} with flags 257")
    return problems


def base64_key(k):
    import base64
    return base64.b64encode(k.key).decode()


# ---- measurement ----

def cpu_ns(server):
    """CPU time of every thread of the server's process tree, in ns (schedstat: finer than
    the clock ticks of /proc/PID/stat, which a few seconds of load would round by 1-2%)."""
    total = 0
    for pid in server.pids():
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def signed_load(server, *args, **kw):
    """One loadgen run; its result and the server's CPU µs per answered query."""
    c0 = cpu_ns(server)
    out = loadgen_run(*args, **kw)
    return out, (cpu_ns(server) - c0) / 1000 / max(out["answered"], 1)


def measure_signed(args, workload, loadgen, meridian_binary):
    """Starts meridian, knot and pdns for the workload, verifies each, then measures them in
    interleaved rounds (loadgen -D, saturating: QPS and the server's CPU µs per answer).
    The nx-cold workload measures each server with DO and without, on names never asked
    before. Returns ({server: [round results]}, notes, left out)."""
    SignedMixin.meridian_binary = meridian_binary
    base = os.path.join(WORK, workload.name)
    shutil.rmtree(base, ignore_errors=True)
    zone_paths = write_zone_files(workload, os.path.join(base, "zones"))
    queries = os.path.join(base, "queries.txt")
    write_query_file(workload, queries)
    saved = dict(SERVER_CLASSES)
    SERVER_CLASSES.update(pdns=SignedPowerDNS, knot=SignedKnot)
    servers, notes, left_out = [], {}, {}
    try:
        servers, failed = start_servers([n for n in args.servers if n in workload.servers], workload, zone_paths, base)
        left_out.update(failed)
        time.sleep(2)  # Knot signs the zone after it loads it
        for s in list(servers):
            problems = verify_signed(s, workload)
            if problems:
                log(f"{s.name} not measured in {workload.name}:\n  " + "\n  ".join(problems[:8]))
                left_out[s.name] = f"failed DNSSEC verification: {problems[0]}"
                stop_all([s])
                servers.remove(s)
                continue
            notes[s.name] = s.dnssec_note
            log(f"{s.name}: signed answers validate ({s.dnssec_note})")
        cold = isinstance(workload, SignedNXCold)
        modes = (True, False) if cold else (True,)
        if not cold:
            # Warm-up, not recorded: one whole pass over the query file (at most 60 s), so every
            # server has made (or cached) the signatures of every answer the rounds ask for.
            total = sum(1 for _ in open(queries))
            for s in servers:
                loadgen_run(loadgen, s.port, queries, 60.0, count=total, dnssec=True)
        results = {s.name: [] for s in servers}
        for rnd in range(args.rounds):
            for s in round_order(servers, rnd):
                r = {}
                for do in modes:
                    path = queries
                    count = 100_000_000
                    if cold:
                        path = os.path.join(base, f"cold-{s.name}-{rnd}-{int(do)}.txt")
                        count = args.cold_names
                        with open(path, "w") as f:
                            for i in range(count):
                                f.write(f"nx{rnd}-{int(do)}-{i}.{workload.origin} A\n")
                    out, cpu = signed_load(s, loadgen, s.port, path, args.duration * (3 if cold else 1),
                                           count=count, dnssec=do)
                    key = "" if do else "_unsigned"
                    r["qps" + key], r["cpu_us" + key], r["lost" + key] = out["qps"], cpu, out["lost"]
                    r["errors" + key] = out["other_rcode"]
                log(f"{workload.name} round {rnd + 1}/{args.rounds} {s.name}: " +
                    ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
                results[s.name].append(r)
    finally:
        stop_all(servers)
        SERVER_CLASSES.update(saved)
    return results, notes, left_out


def report_signed(workload, results, notes, left_out, args):
    names = list(results)
    cold = isinstance(workload, SignedNXCold)
    med = {n: {k: median([r[k] for r in rs]) for k in rs[0]} for n, rs in results.items() if rs}
    text = [f"### `{workload.name}` (medians of {args.rounds} interleaved rounds)", "", workload.description, ""]
    if cold:
        rows = [[n, f"{m['qps_unsigned']:,.0f}", f"{m['qps']:,.0f}", f"{m['cpu_us_unsigned']:.2f}", f"{m['cpu_us']:.2f}",
                 f"{m['cpu_us'] - m['cpu_us_unsigned']:.1f}", f"{m['lost'] + m['lost_unsigned']:.0f}"]
                for n, m in med.items()]
        text.append(fmt_table(["server", "QPS DO=0", "QPS DO=1", "µs CPU/query DO=0", "µs CPU/query DO=1",
                               "signing cost µs/answer (DO=1 − DO=0)", "lost"], rows))
    else:
        rows = [[n, f"{m['qps']:,.0f}", f"{m['cpu_us']:.2f}", f"{m['lost']:.0f}", f"{m['errors']:.0f}"] for n, m in med.items()]
        text.append(fmt_table(["server", "QPS (batched, DO=1)", "µs CPU/query", "lost", "error rcodes"], rows))
    text.append("")
    if "meridian" in results:
        for n in names:
            if n == "meridian":
                continue
            for label, k in (("QPS", "qps"), ("CPU/query", "cpu_us")):
                rs = [m[k] / p[k] for m, p in zip(results["meridian"], results[n]) if p[k]]
                if rs:
                    text.append(f"- Meridian / {n}, {label}, per round: " + ", ".join(f"{x:.2f}" for x in rs)
                                + f" (median **{median(rs):.2f}**)")
    text += [f"- {n}: {note}" for n, note in notes.items()]
    text += [f"- {n} left out: {why}" for n, why in left_out.items()]
    return "\n".join(text) + "\n", med


SIGNED_WORKLOADS = {w.name: w for w in (SignedGeo, SignedGeoSpread, SignedStatic, SignedNXCold)}
