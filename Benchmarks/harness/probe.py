"""DNS probes for readiness and verification: dig, answers compared with a workload's checks."""

from .common import *  # noqa: F401,F403


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


TYPE_CODES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}


def wire_name(name):
    """A name in wire form, uncompressed (RFC 1035 3.1)."""
    return b"".join(bytes([len(l)]) + l.encode() for l in name.strip(".").split(".")) + b"\0"


def probe(port, name, qtype="SOA", timeout=0.2):
    """One UDP query; returns the rcode, or None without an answer."""
    qid = random.randrange(65536)
    msg = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + wire_name(name) + struct.pack(">HH", TYPE_CODES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(msg, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
        if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
            return data[3] & 0x0F
    except OSError:
        return None
    finally:
        s.close()
    return None


def wait_ready(server, name, qtype="SOA", timeout=30.0):
    """Waits until the server answers NOERROR for name/qtype; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited (see {server.dir}/server.log)")
        if probe(server.port, name, qtype) == 0:
            return time.monotonic() - start
        time.sleep(0.01)
    raise RuntimeError(f"{server.name} not answering {name} {qtype} after {timeout} s")


def dig(port, name, qtype, ecs=None, tcp=False):
    cmd = ["dig", "@127.0.0.1", "-p", str(port), name, qtype, "+norecurse", "+noall", "+comments",
           "+answer", "+time=2", "+tries=2"]
    if ecs:
        cmd.append(f"+subnet={ecs}")
    if tcp:
        cmd.append("+tcp")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=15).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    answers = set()
    in_answer = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            in_answer = True
            continue
        if not line.strip() or line.startswith(";"):
            in_answer = in_answer and not line.startswith(";;")
            continue
        if in_answer:
            parts = line.split(None, 4)
            if len(parts) == 5:
                answers.add((parts[0].lower(), parts[3], int(parts[1]), parts[4].strip()))
    return (status.group(1) if status else "NO-ANSWER",
            "aa" in (flags.group(1).split() if flags else []),
            frozenset(answers))


def without_ttl(answers):
    return frozenset((owner, rtype, rdata) for owner, rtype, _, rdata in answers)


def verify_once(server, workload):
    problems = []
    notes = set()
    for name, qtype, ecs, rcode, expected in workload.checks():
        got_rcode, aa, got = dig(server.port, name, qtype, ecs, tcp=bool(workload.per_conn))
        if got_rcode == rcode and aa and got == expected:
            continue
        # gdnsd may leave an in-zone CNAME unchased; that is its documented behaviour, and the
        # CNAME itself must still be right.
        cname_only = frozenset(r for r in expected if r[1] == "CNAME")
        if got_rcode == rcode and aa and cname_only and got == cname_only:
            notes.add("answers the in-zone CNAME without chasing it")
            continue
        if got_rcode == rcode and aa and not workload.exact_ttl and without_ttl(got) == without_ttl(expected):
            ttls = ", ".join(sorted({str(r[2]) for r in got}))
            notes.add(f"answers {name} {qtype} with TTL {ttls} (the check accepts any TTL in this workload)")
            continue
        problems.append(f"{name} {qtype}{' ECS ' + ecs if ecs else ''}: expected {rcode} aa {sorted(expected)}, "
                        f"got {got_rcode} aa={aa} {sorted(got)}")
    return problems, notes


def verify(server, workload):
    """Every check must match: rcode, AA, answer set (owner, type, TTL, rdata); only the answer
    section counts, so an ECS scope that differs between servers does not matter. Checks that
    depend on health checks may take workload.verify_wait seconds to come true."""
    deadline = time.monotonic() + workload.verify_wait
    while True:
        problems, notes = verify_once(server, workload)
        if not problems or time.monotonic() >= deadline:
            return problems, notes
        time.sleep(1)


def _skip_name(data, p):
    """The offset after the (possibly compressed) name at p."""
    while p < len(data):
        n = data[p]
        if n == 0:
            return p + 1
        if n & 0xC0 == 0xC0:
            return p + 2
        p += 1 + n
    raise ValueError("name runs past the message")


def ecs_query(port, name, subnet, timeout=0.5):
    """One A query carrying ECS `subnet` (a.b.c.d/n or v6/n); returns (sorted A rdata, scope
    prefix length or None), or None without an answer."""
    net = ipaddress.ip_network(subnet, strict=False)
    family = 1 if net.version == 4 else 2
    addr = net.network_address.packed[:(net.prefixlen + 7) // 8]
    option = struct.pack(">HHHBB", 8, 4 + len(addr), family, net.prefixlen, 0) + addr
    qid = random.randrange(65536)
    msg = (struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1) + wire_name(name) + struct.pack(">HH", 1, 1)
           + b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(option)) + option)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(msg, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    qd, an, ns, ar = struct.unpack(">HHHH", data[4:12])
    p = 12
    for _ in range(qd):
        p = _skip_name(data, p) + 4
    answers, scope = [], None
    for i in range(an + ns + ar):
        p = _skip_name(data, p)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[p:p + 10])
        rdata = data[p + 10:p + 10 + rdlen]
        if i < an and rtype == 1 and rdlen == 4:
            answers.append(str(ipaddress.IPv4Address(rdata)))
        if rtype == 41:
            q = 0
            while q + 4 <= len(rdata):
                code, olen = struct.unpack(">HH", rdata[q:q + 4])
                if code == 8 and olen >= 4:
                    scope = rdata[q + 7]
                q += 4 + olen
        p += 10 + rdlen
    return sorted(answers), scope


def scope_census(port, name, subnets):
    """What a resolver caching by scope (RFC 7871 7.3.1) would hold after asking for each of
    `subnets`: the distinct (network/scope, answer) entries, and the scopes returned."""
    entries, scopes = set(), []
    for subnet in subnets:
        r = ecs_query(port, name, subnet)
        if r is None or r[1] is None:
            continue
        answer, scope = r
        net = ipaddress.ip_network(subnet, strict=False)
        # A scope longer than the source: the entry holds for the source network only.
        cached = ipaddress.ip_network(f"{net.network_address}/{min(scope, net.prefixlen)}", strict=False)
        entries.add((str(cached), tuple(answer)))
        scopes.append(scope)
    return entries, scopes
