"""Workload definitions: zone data, queries, expected answers and per-server hooks (class Workload)."""

from .common import *  # noqa: F401,F403
from .probe import *  # noqa: F401,F403


class Workload:
    """A benchmark workload: zone data, queries, expected answers, per-server hooks.

    Subclasses fill in:
      name                      short name printed in the tables
      description, notes        a sentence under the workload's heading; lines under its tables
      zones()                   {origin: master-file text}, origin without the final dot
      queries()                 list of (name, type, ecs-or-None) for the load
      checks()                  list of (name, type, ecs, rcode, answer-set), answer-set a
                                frozenset of (owner, type, ttl, rdata) as dig prints them
      servers                   which servers run this workload (floor too, if it fits)
      left_out                  {server: reason} for the ones it cannot run, printed and noted
      meridian_args(dir, zones) extra `meridian serve` arguments (e.g. ["--config", yaml])
      gdnsd_extra(dir)          text appended to gdnsd's config (plugins => {...})
      knot_extra(dir)           (module section text, zone-level lines) for knot.conf
      pdns_extra(dir)           extra pdns.conf lines (e.g. launch of the geoip backend)
      zone_extra(server)        {origin: lines} added to that server's copy of the zone
                                (a gdnsd DYNA record, a PowerDNS LUA record)
      start() / stop()          helpers the servers need while they run (health-check targets)
      exercise(servers)         checks that change state (failover), after the answers are
                                verified; returns {server: problem} for the ones that failed
    and may change how it is measured:
      per_conn                  None: UDP; N: TCP, N queries per connection (loadgen -T N)
      workers, pinned           worker threads per server; False: server and load unpinned
      latency                   False skips the fixed-rate latency run
      rate                      offered rate for the latency run (None: --rate)
      verify_wait               seconds the checks may take to come true (health checks
                                settling after start)
      exact_ttl                 False: a TTL other than the expected one is noted, not an error
      ecs                       True: queries carry client subnets (Knot needs
                                `edns-client-subnet: on` to pass them to its modules)
    A GSLB workload writes its YAML / plugin / module configs in these hooks; the measuring
    code never looks inside a workload.
    """

    name = "base"
    description = ""
    servers = ("meridian", "gdnsd", "nsd", "knot", "pdns", "floor")
    left_out = {}
    per_conn = None
    workers = 1
    pinned = True
    latency = True
    rate = None
    verify_wait = 0.0
    exact_ttl = True
    ecs = False
    notes = ()

    def meridian_args(self, directory, zones):
        return []

    def gdnsd_extra(self, directory):
        return ""

    def knot_extra(self, directory):
        return "", ""

    def pdns_extra(self, directory):
        return ""

    def zone_extra(self, server):
        return {}

    def start(self):
        pass

    def stop(self):
        pass

    def exercise(self, servers):
        return {}


def _ipv6(i):
    return str(ipaddress.IPv6Address(_V6_BASE + i + 1))


_V6_BASE = int(ipaddress.IPv6Address("2001:db8:0:1::"))


def soa_rdata(origin):
    return f"ns1.{origin}. hostmaster.{origin}. 2026112601 7200 3600 1209600 300"


def zone_head(origin, ttl):
    """$ORIGIN, $TTL, SOA and two NS with their addresses: the start of every generated zone."""
    return [
        f"$ORIGIN {origin}.",
        f"$TTL {ttl}",
        # SOA TTL equal to MINIMUM: gdnsd serves the SOA with that TTL whatever the file says.
        f"@ 300 IN SOA {soa_rdata(origin)}",
        f"@ IN NS ns1.{origin}.",
        f"@ IN NS ns2.{origin}.",
        "ns1 IN A 192.0.2.53",
        "ns2 IN A 198.51.100.53",
    ]


class StaticWorkload(Workload):
    """1,000 hosts with A and AAAA, apex SOA/NS/MX/TXT, a CNAME, a wildcard.

    Query mix: 80% existing A/AAAA, 10% NXDOMAIN, 10% MX/TXT/SOA/NS, CNAME and wildcard.
    """

    name = "static"
    description = ("UDP, one worker, server pinned to CPU 0 and load to CPU 1; zone `bench.test`, "
                   "1,000 hosts (A, AAAA), 80% A/AAAA, 10% NXDOMAIN, 10% other types")
    origin = "bench.test"
    hosts = 1000
    ttl = 3600

    # Share of the queries for names that exist (A/AAAA); the rest is half NXDOMAIN, half
    # the other kinds (MX/TXT/SOA/NS at the apex, the CNAME, wildcard hits).
    existing = 0.80

    def __init__(self, seed=6, query_count=100_000):
        self.seed = seed
        self.query_count = query_count

    def host_a(self, i):
        return f"10.{1 + i // 65536}.{(i // 256) % 256}.{i % 256}"

    def zones(self):
        o = self.origin
        lines = zone_head(o, self.ttl) + [
            f"@ IN MX 10 mail.{o}.",
            '@ IN TXT "v=spf1 mx -all"',
            "mail IN A 192.0.2.25",
            "www IN CNAME h0001",
            "*.wild IN A 192.0.2.80",
        ]
        for i in range(self.hosts):
            lines.append(f"h{i:04d} IN A {self.host_a(i)}")
            lines.append(f"h{i:04d} IN AAAA {_ipv6(i)}")
        return {o: "\n".join(lines) + "\n"}

    def queries(self):
        rng = random.Random(self.seed)
        o = self.origin
        out = []
        other = [(o, "MX"), (o, "TXT"), (o, "SOA"), (o, "NS"), (f"www.{o}", "A"), (None, "wild")]
        for _ in range(self.query_count):
            r = rng.random()
            if r < self.existing:
                out.append((f"h{rng.randrange(self.hosts):04d}.{o}", rng.choice(("A", "AAAA")), None))
            elif r < self.existing + (1 - self.existing) / 2:
                out.append((f"nx{rng.randrange(10**6)}.{o}", "A", None))
            else:
                name, t = rng.choice(other)
                if t == "wild":
                    out.append((f"w{rng.randrange(10**6)}.wild.{o}", "A", None))
                else:
                    out.append((name, t, None))
        return out

    def checks(self):
        o = self.origin
        t = self.ttl
        soa_neg = frozenset()  # NXDOMAIN: empty answer section
        c = [
            (f"{o}", "SOA", None, "NOERROR", frozenset({
                (f"{o}.", "SOA", 300, soa_rdata(o))})),
            (f"{o}", "NS", None, "NOERROR", frozenset({
                (f"{o}.", "NS", t, f"ns1.{o}."), (f"{o}.", "NS", t, f"ns2.{o}.")})),
            (f"{o}", "MX", None, "NOERROR", frozenset({(f"{o}.", "MX", t, f"10 mail.{o}.")})),
            (f"{o}", "TXT", None, "NOERROR", frozenset({(f"{o}.", "TXT", t, '"v=spf1 mx -all"')})),
            (f"www.{o}", "A", None, "NOERROR", frozenset({
                (f"www.{o}.", "CNAME", t, f"h0001.{o}."), (f"h0001.{o}.", "A", t, self.host_a(1))})),
            (f"anything.wild.{o}", "A", None, "NOERROR", frozenset({
                (f"anything.wild.{o}.", "A", t, "192.0.2.80")})),
            (f"nx12345.{o}", "A", None, "NXDOMAIN", soa_neg),
            (f"h0007.{o}", "MX", None, "NOERROR", frozenset()),  # NODATA
        ]
        rng = random.Random(self.seed + 1)
        for _ in range(12):
            i = rng.randrange(self.hosts)
            c.append((f"h{i:04d}.{o}", "A", None, "NOERROR",
                      frozenset({(f"h{i:04d}.{o}.", "A", t, self.host_a(i))})))
            c.append((f"h{i:04d}.{o}", "AAAA", None, "NOERROR",
                      frozenset({(f"h{i:04d}.{o}.", "AAAA", t, _ipv6(i))})))
        return c


class StaticRestWorkload(StaticWorkload):
    """The static workload's other part alone: NXDOMAIN and the other kinds, none of the plain
    A/AAAA answers (which servers may answer from prebuilt responses)."""

    name = "static-rest"
    existing = 0.0
    description = ("the static zone, only the queries outside the plain A/AAAA part: 50% NXDOMAIN for random labels, "
                   "50% MX, TXT, SOA and NS at the apex, the in-zone CNAME (followed to its A) and wildcard hits; "
                   "one worker, pinned")


class StaticHitsWorkload(StaticWorkload):
    """The static workload's plain part alone: A/AAAA for the 1,000 hosts (the part servers may
    answer from prebuilt responses). Not in the default run; `icount/run.py` splits the static
    figure into this and `static-rest`."""

    name = "static-hits"
    existing = 1.0
    description = "the static zone, only A/AAAA queries for names that exist; one worker, pinned"


class SizedZoneWorkload(StaticWorkload):
    """A large zone for --zone-load: `records` A/AAAA records on records/2 names."""

    origin = "load.test"

    def __init__(self, records):
        super().__init__()
        self.hosts = records // 2
        self.records = records
        self.name = f"zone-{records}"

    def zones(self):
        o = self.origin
        parts = [f"$ORIGIN {o}.\n$TTL 3600\n",
                 f"@ IN SOA ns1.{o}. hostmaster.{o}. 1 7200 3600 1209600 300\n",
                 f"@ IN NS ns1.{o}.\nns1 IN A 192.0.2.53\n"]
        chunk = []
        for i in range(self.hosts):
            chunk.append(f"h{i:07d} IN A {self.host_a(i)}\nh{i:07d} IN AAAA {_ipv6(i)}\n")
        parts.append("".join(chunk))
        return {o: "".join(parts)}

    def last_name(self):
        return f"h{self.hosts - 1:07d}.{self.origin}"


class TcpWorkload(StaticWorkload):
    """The static zone and queries over TCP, `per_conn` queries on each connection."""

    name = "tcp"
    per_conn = 20
    servers = ("meridian", "gdnsd", "nsd", "knot", "pdns")
    left_out = {"floor": "the reference responder answers UDP only"}
    description = (f"the static zone and query mix over TCP: `loadgen -T {per_conn}`, 8 connections at a time, "
                   f"{per_conn} queries on each (up to 25 in flight on one, pipelined), then a new connection; "
                   "CPU/query from the same run (dnsperf 2.10 with `num-queries-per-conn` stalls about 100 ms "
                   "at each new connection, so its rate is its own limit); one worker, pinned")


class TwoWorkerWorkload(StaticWorkload):
    """The static workload with two workers per server, nothing pinned."""

    name = "static-2w"
    workers = 2
    pinned = False
    latency = False
    servers = ("meridian", "gdnsd", "nsd", "knot", "pdns")
    left_out = {"floor": "one thread by design"}
    description = ("the static workload with 2 workers each (Meridian `--workers 2`, gdnsd `udp_threads => 2`, "
                   "NSD `server-count: 2`, Knot `udp-workers: 2`, PowerDNS `receiver-threads=2`); "
                   "neither servers nor load pinned, so the load generator shares the 2 CPUs")


CONTINENTS = ("AF", "AS", "EU", "NA", "OC", "SA")


def geo_subnets(db, per_continent, unknown, seed):
    """[(a.b.c.0/24, continent or None)]: public /24s that sit inside one database network.

    Each /24 lies within a single network of the database (prefix 24 or shorter), so every
    server, whatever address of the /24 it looks up, finds the same continent. `unknown`
    subnets are public /24s the database has no record for (the default answer).
    """
    import maxminddb
    reader = maxminddb.open_database(db)
    rng = random.Random(seed)
    wanted = dict.fromkeys(CONTINENTS, per_continent)
    wanted[None] = unknown
    found = {c: [] for c in wanted}

    def candidates():
        if os.path.getsize(db) < 10**7:  # MaxMind's test database: walk its few networks
            for network, _ in reader:
                if network.version == 4 and network.prefixlen <= 24:
                    yield str(network.network_address)
        for _ in range(400_000):
            a = rng.randrange(1 << 24)
            yield f"{a >> 16}.{(a >> 8) & 255}.{a & 255}.0"

    for net in candidates():
        if not ipaddress.ip_network(f"{net}/24").is_global:
            continue
        record, prefix = reader.get_with_prefix_len(net)
        continent = (record or {}).get("continent", {}).get("code")
        if prefix > 24 or (record and not continent) or continent not in found:
            continue
        subnet = f"{net}/24"
        if len(found[continent]) < wanted[continent] and subnet not in found[continent]:
            found[continent].append(subnet)
        if all(len(found[c]) >= wanted[c] for c in wanted):
            break
    reader.close()
    return [(s, c) for c, subnets in found.items() for s in subnets]


class GeoWorkload(Workload):
    """GSLB by continent: `www.geo.test` answers one datacenter per continent, chosen from
    each query's own ECS /24 with the GeoLite2-City database."""

    name = "geo"
    origin = "geo.test"
    ttl = 30
    servers = ("meridian", "gdnsd", "knot", "pdns", "floor")
    left_out = {"nsd": "no geographic answers (static zones only)"}
    ecs = True
    # datacenter -> (continent it serves, its address); dc-def answers clients the database
    # does not know.
    dcs = {"dc-af": ("AF", "198.51.100.1"), "dc-as": ("AS", "198.51.100.2"), "dc-eu": ("EU", "198.51.100.3"),
           "dc-na": ("NA", "198.51.100.4"), "dc-oc": ("OC", "198.51.100.5"), "dc-sa": ("SA", "198.51.100.6"),
           "dc-def": (None, "198.51.100.10")}
    coordinates = {"AF": (0.0, 20.0), "AS": (1.35, 103.8), "EU": (50.1, 8.7), "NA": (38.9, -77.0),
                   "OC": (-33.9, 151.2), "SA": (-23.5, -46.6), None: (0.0, 0.0)}

    def __init__(self, seed=6, query_count=100_000, per_continent=100, unknown=20):
        self.seed = seed
        self.query_count = query_count
        self.db, source = geoip_database(install=False)
        self.subnets = geo_subnets(self.db, per_continent, unknown, seed)
        self.by_continent = {cont: addr for cont, addr in self.dcs.values()}
        counts = ", ".join(f"{c or 'unknown'} {sum(1 for _, k in self.subnets if k == c)}" for c in CONTINENTS + (None,))
        self.description = (f"GSLB by continent with EDNS Client Subnet, cached case: every query for `www.{self.origin}` A "
                            f"carries a /24 from only {len(self.subnets)} subnets (so nearly every Meridian query is a "
                            f"decision-cache hit) ({counts}; unknown: the database "
                            f"has no record, answered by the default); 7 datacenters; one worker, pinned")
        self.notes = (f"database: {source} ({self.db})",
                      "dnsperf gets the same queries, each with its ECS option, as wire messages (`-B`)")

    def answer(self, continent):
        return frozenset({(f"www.{self.origin}.", "A", self.ttl, self.by_continent[continent])})

    def zones(self):
        return {self.origin: "\n".join(zone_head(self.origin, self.ttl)) + "\n"}

    def queries(self):
        rng = random.Random(self.seed)
        return [(f"www.{self.origin}", "A", rng.choice(self.subnets)[0]) for _ in range(self.query_count)]

    def checks(self):
        """50 subnets: 7 per continent and 8 unknown, and the static NS address."""
        rng = random.Random(self.seed + 1)
        sample = []
        for cont in CONTINENTS + (None,):
            subnets = [s for s, c in self.subnets if c == cont]
            sample += [(s, cont) for s in rng.sample(subnets, min(len(subnets), 7 if cont else 8))]
        o = self.origin
        return [(f"ns1.{o}", "A", None, "NOERROR", frozenset({(f"ns1.{o}.", "A", self.ttl, "192.0.2.53")}))] + [
            (f"www.{o}", "A", s, "NOERROR", self.answer(c)) for s, c in sample]

    def zone_extra(self, server):
        if server == "gdnsd":
            return {self.origin: [f"www {self.ttl} DYNA geoip!www"]}
        if server == "knot":  # mod-geoip answers what its table matches; the zone the rest
            return {self.origin: [f"www {self.ttl} IN A {self.by_continent[None]}"]}
        return {}

    def meridian_args(self, directory, zones):
        dcs = "".join(f"  {dc}: {{ lat: {self.coordinates[c][0]}, lon: {self.coordinates[c][1]} }}\n"
                      for dc, (c, _) in self.dcs.items())
        endpoints = "".join(f"  {dc}-1: {{ v4: {a}, dc: {dc} }}\n" for dc, (_, a) in self.dcs.items())
        rules = ", ".join(f"{c}: {dc}" for dc, (c, _) in self.dcs.items() if c) + ", default: dc-def"
        return meridian_config(directory, zones, f"""zones:
  {self.origin}:
    names:
      www:
        ttl: {self.ttl}
        types: [A]
        policy:
          geo: {{ {rules} }}
geo:
  database: {self.db}
datacenters:
{dcs}endpoints:
{endpoints}""")

    def gdnsd_extra(self, directory):
        order = ", ".join(self.dcs)
        rules = ", ".join(f"{c} => [{dc}]" for dc, (c, _) in self.dcs.items() if c)
        dcmap = ", ".join(f"{dc} => {a}" for dc, (_, a) in self.dcs.items())
        return f"""plugins => {{ geoip => {{
    maps => {{ continents => {{
        geoip2_db => {self.db}
        datacenters => [{order}]
        map => {{ {rules}, default => [dc-def] }}
    }} }}
    resources => {{ www => {{ map => continents, dcmap => {{ {dcmap} }} }} }}
}} }}
"""

    def knot_extra(self, directory):
        table = os.path.join(directory, "geo.conf")
        with open(table, "w") as f:
            f.write(f"www.{self.origin}:\n" + "".join(
                f'  - geo: "{c}"\n    A: {a}\n' for c, a in self.dcs.values() if c))
        module = f"""mod-geoip:
  - id: continents
    config-file: {table}
    ttl: {self.ttl}
    mode: geodb
    geodb-file: {self.db}
    geodb-key: continent/code
"""
        return module, "    module: mod-geoip/continents\n"

    def pdns_extra(self, directory):
        # The geoip backend serves the whole zone from its YAML; `%cn` is the continent code.
        o = self.origin
        targets = "".join(f"    {(c or 'unknown').lower()}.www.{o}:\n      - a: {a}\n" for c, a in self.dcs.values())
        zone = f"""domains:
- domain: {o}
  ttl: {self.ttl}
  records:
    {o}:
      - soa: {soa_rdata(o)}
      - ns: ns1.{o}.
      - ns: ns2.{o}.
    ns1.{o}:
      - a: 192.0.2.53
    ns2.{o}:
      - a: 198.51.100.53
{targets}  services:
    www.{o}: '%cn.www.{o}'
"""
        path = os.path.join(directory, "geo.yaml")
        with open(path, "w") as f:
            f.write(zone)
        return f"launch=geoip\ngeoip-database-files=mmdb:{self.db}\ngeoip-zones-file={path}\nedns-subnet-processing=yes\n"


# Where the regional registries hand out IPv6 (2001::/16 and their /12s), for client /56s.
V6_ALLOCATED = ("2001::/16", "2400::/12", "2600::/12", "2800::/12", "2a00::/12", "2c00::/12")


def spread_subnets(db, v4_count, v6_count, seed):
    """Distinct client networks over the routed space: v4_count public /24s drawn uniformly
    from the IPv4 space, and v6_count /56s inside the registries' IPv6 allocations, most of
    them in networks the database knows (at most 1 in 5 unknown). Returns
    [(subnet, continent or None, database prefix length)], shuffled."""
    import maxminddb
    reader = maxminddb.open_database(db)
    rng = random.Random(seed)

    def located(net):
        record, prefix = reader.get_with_prefix_len(net)
        return (record or {}).get("continent", {}).get("code"), prefix, record is not None

    out, seen = [], set()
    for _ in range(v4_count * 4):
        if len(out) >= v4_count:
            break
        a = rng.randrange(1 << 24)
        net = f"{a >> 16}.{(a >> 8) & 255}.{a & 255}.0"
        if net in seen or not ipaddress.ip_network(f"{net}/24").is_global:
            continue
        seen.add(net)
        continent, prefix, _ = located(net)
        out.append((f"{net}/24", continent, prefix))
    blocks = [ipaddress.ip_network(b) for b in V6_ALLOCATED]
    unknown, v6 = 0, 0
    for _ in range(v6_count * 50):
        if v6 >= v6_count:
            break
        b = rng.choice(blocks)
        n = int(b.network_address) | (rng.randrange(1 << (56 - b.prefixlen)) << 72)
        net = str(ipaddress.IPv6Address(n))
        if net in seen:
            continue
        continent, prefix, found = located(net)
        if not found and unknown >= v6_count // 5:
            continue
        unknown += 0 if found else 1
        seen.add(net)
        out.append((f"{net}/56", continent, prefix))
        v6 += 1
    reader.close()
    rng.shuffle(out)
    return out


class GeoSpreadWorkload(GeoWorkload):
    """The geo workload with a realistic spread of clients: every query carries a different
    client network, so the decision cache (8,192 entries per worker) rarely helps."""

    name = "geo-spread"

    def __init__(self, seed=6, v4_count=100_000, v6_count=20_000):
        self.seed = seed
        self.db, source = geoip_database(install=False)
        self.spread = spread_subnets(self.db, v4_count, v6_count, seed)
        self.by_continent = {cont: addr for cont, addr in self.dcs.values()}
        v4 = sum(1 for s, _, _ in self.spread if ":" not in s)
        self.description = (f"GSLB by continent with EDNS Client Subnet from a spread of clients: {len(self.spread):,} "
                            f"queries for `www.{self.origin}` A, each with a different client network: {v4:,} public /24s "
                            f"drawn uniformly from the IPv4 space and {len(self.spread) - v4:,} IPv6 /56s inside the "
                            "registries' allocations (cold: the query file repeats only after all of them); "
                            "7 datacenters; one worker, pinned")
        self.notes = (f"database: {source} ({self.db})",
                      "dnsperf gets the same queries, each with its ECS option, as wire messages (`-B`)")

    def queries(self):
        return [(f"www.{self.origin}", "A", s) for s, _, _ in self.spread]

    def scope_census(self):
        """500 of the clients (400 /24s, 100 /56s), for the ECS scope comparison."""
        rng = random.Random(self.seed + 2)
        v4 = [s for s, _, _ in self.spread if ":" not in s]
        v6 = [s for s, _, _ in self.spread if ":" in s]
        return f"www.{self.origin}", rng.sample(v4, min(400, len(v4))) + rng.sample(v6, min(100, len(v6)))

    def checks(self):
        """60 clients whose network lies inside one database network (so every server,
        whatever address of it it looks up, finds the same continent), 10 of them IPv6."""
        rng = random.Random(self.seed + 1)
        whole = [(s, c) for s, c, prefix in self.spread if prefix <= int(s.split("/")[1]) and (c is None or c in CONTINENTS)]
        v4 = [x for x in whole if ":" not in x[0]]
        v6 = [x for x in whole if ":" in x[0]]
        sample = rng.sample(v4, min(50, len(v4))) + rng.sample(v6, min(10, len(v6)))
        o = self.origin
        return [(f"ns1.{o}", "A", None, "NOERROR", frozenset({(f"ns1.{o}.", "A", self.ttl, "192.0.2.53")}))] + [
            (f"www.{o}", "A", s, "NOERROR", self.answer(c)) for s, c in sample]


def meridian_config(directory, zones, text):
    """Writes a workload's meridian.yaml and returns the `serve` arguments that load it.

    `zones_dir` is set because `serve --zones DIR` does not tell the config where the files
    of the zones it lists are (it looks beside the YAML)."""
    path = os.path.join(directory, "meridian.yaml")
    with open(path, "w") as f:
        f.write(f"zones_dir: {zones}\n{text}")
    return ["--config", path]


class TcpTargets:
    """Health-check targets: TCP listeners on loopback addresses, one port, accept and close.

    set_up(address, False) closes that address's listener (checks see connection refused)
    until set_up(address, True) opens it again; the listener thread does all socket work.
    """

    def __init__(self, addresses):
        self.addresses = addresses
        self.listeners = {}  # address -> listening socket, while up
        self.down = set()
        self.stopping = threading.Event()
        self.thread = None
        self.port = None
        self.accepted = dict.fromkeys(addresses, 0)

    def listen(self, address, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            s.listen(64)
        except OSError:
            s.close()
            raise
        s.setblocking(False)
        self.listeners[address] = s
        return s.getsockname()[1]

    def start(self):
        for _ in range(50):
            try:
                self.port = None
                for a in self.addresses:
                    self.port = self.listen(a, self.port or 0)
                break
            except OSError:
                for s in self.listeners.values():
                    s.close()
                self.listeners = {}
        else:
            raise RuntimeError(f"no common free TCP port on {self.addresses}")
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def set_up(self, address, up):
        (self.down.discard if up else self.down.add)(address)

    def serve(self):
        while not self.stopping.is_set():
            for a in self.addresses:
                if a in self.down and a in self.listeners:
                    self.listeners.pop(a).close()
                elif a not in self.down and a not in self.listeners:
                    try:
                        self.listen(a, self.port)
                    except OSError:
                        continue  # tried again on the next pass
            with selectors.DefaultSelector() as sel:
                for a, s in self.listeners.items():
                    sel.register(s, selectors.EVENT_READ, a)
                for key, _ in sel.select(timeout=0.1):
                    try:
                        conn, _ = key.fileobj.accept()
                        conn.close()
                        self.accepted[key.data] += 1
                    except OSError:
                        continue

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=5)
        for s in self.listeners.values():
            s.close()


def watch_answers(servers, name, expected, timeout):
    """Polls every server with dig until its A answer for name is exactly `expected` (a set
    of addresses); returns {server: seconds it took} for those that got there in time."""
    t0 = time.monotonic()
    seen = {}
    while len(seen) < len(servers) and time.monotonic() - t0 < timeout:
        for s in servers:
            if s.name not in seen and {r[3] for r in dig(s.port, name, "A")[2]} == expected:
                seen[s.name] = time.monotonic() - t0
        time.sleep(0.1)
    return seen


class HealthWorkload(Workload):
    """A failover name with TCP health checks running every second, plus static names."""

    name = "health"
    origin = "health.test"
    ttl = 30
    primary, secondary = "127.0.0.2", "127.0.0.3"
    witness = "127.0.0.4"  # always up: lets PowerDNS's Lua tell "primary up" from "all down"
    servers = ("meridian", "gdnsd", "pdns", "floor")
    left_out = {"nsd": "no health checks", "knot": "no health checks"}
    rate = 1000  # PowerDNS runs a Lua script per query (2-3k qps at most here)
    verify_wait = 20.0
    exact_ttl = False  # gdnsd lowers the TTL of a monitored DYNA answer

    def __init__(self, seed=6, query_count=100_000, hosts=100):
        self.seed = seed
        self.query_count = query_count
        self.hosts = hosts
        self.targets = TcpTargets([self.primary, self.secondary, self.witness])
        self.moves = []
        self.description = (f"failover `www.{self.origin}` A: primary {self.primary}, secondary {self.secondary}, "
                            "both with TCP checks every 1 s against listeners the harness runs on those "
                            f"addresses; 80% of queries for it, 20% for {hosts} static names; latency at "
                            f"{self.rate} qps; one worker, pinned")

    @property
    def notes(self):
        counts = ", ".join(f"{a}: {n}" for a, n in self.targets.accepted.items())
        return ("gdnsd checks every 2 s, its shortest `interval`; the others every 1 s",
                f"health-check connections the listeners accepted (all servers together): {counts}",
                *self.moves)

    def exercise(self, servers):
        """Stops the primary's listener: every server must move to the secondary, then back
        to the primary once the listener returns (within 20 s each); the times go in the
        report. Returns {server: problem} for the ones that did not."""
        name = f"www.{self.origin}"
        problems = {}
        for up, target, event in ((False, self.secondary, "primary's listener stopped"),
                                  (True, self.primary, "primary's listener back")):
            live = [s for s in servers if s.name not in problems]
            self.targets.set_up(self.primary, up)
            seen = watch_answers(live, name, {target}, timeout=20)
            for s in live:
                if s.name not in seen:
                    problems[s.name] = f"still not answering {target} 20 s after the {event}"
            self.moves.append(f"{event}: answers {target} after " +
                              ", ".join(f"{n} {t:.1f} s" for n, t in seen.items()))
            log(self.moves[-1])
        return problems

    def start(self):
        self.targets.start()

    def stop(self):
        self.targets.stop()

    def host(self, i):
        return f"192.0.2.{100 + i % 100}"

    def zones(self):
        lines = zone_head(self.origin, self.ttl) + [f"h{i:02d} IN A {self.host(i)}" for i in range(self.hosts)]
        return {self.origin: "\n".join(lines) + "\n"}

    def queries(self):
        rng = random.Random(self.seed)
        return [(f"www.{self.origin}", "A", None) if rng.random() < 0.8 else
                (f"h{rng.randrange(self.hosts):02d}.{self.origin}", "A", None) for _ in range(self.query_count)]

    def checks(self):
        o = self.origin
        return [(f"www.{o}", "A", None, "NOERROR", frozenset({(f"www.{o}.", "A", self.ttl, self.primary)}))] + [
            (f"h{i:02d}.{o}", "A", None, "NOERROR", frozenset({(f"h{i:02d}.{o}.", "A", self.ttl, self.host(i))}))
            for i in (0, 7, 42, 99)]

    def zone_extra(self, server):
        port = self.targets.port
        if server == "gdnsd":
            return {self.origin: [f"www {self.ttl} DYNA metafo!www"]}
        if server == "pdns":
            # ifportup in 4.7 takes one flat list and answers the up members, or, all being
            # down, a random one; checking each endpoint beside an always-up witness gives an
            # ordered failover (both down: both, as Meridian's `open`).
            def up(a):
                return f"#ifportup({port}, {{'{a}', '{self.witness}'}}, {{selector='all'}}) == 2"
            lua = (f";if {up(self.primary)} then return '{self.primary}' end "
                   f"if {up(self.secondary)} then return '{self.secondary}' end "
                   f"return {{'{self.primary}', '{self.secondary}'}}")
            return {self.origin: [f'www {self.ttl} IN LUA A "{lua}"']}
        return {}

    def meridian_args(self, directory, zones):
        return meridian_config(directory, zones, f"""zones:
  {self.origin}:
    names:
      www:
        ttl: {self.ttl}
        types: [A]
        policy: {{ failover: [primary, secondary] }}
checks:
  defaults: {{ interval: 1s, timeout: 500ms, rise: 1, fall: 1 }}
  port: {{ type: tcp, port: {self.targets.port} }}
endpoints:
  primary: {{ v4: {self.primary}, check: port }}
  secondary: {{ v4: {self.secondary}, check: port }}
""")

    def gdnsd_extra(self, directory):
        return f"""service_types => {{
    port => {{ plugin => tcp_connect, port => {self.targets.port}, interval => 2, timeout => 1,
              up_thresh => 1, ok_thresh => 1, down_thresh => 1 }}
}}
plugins => {{ metafo => {{ resources => {{ www => {{
    service_types => [port]
    datacenters => [primary, secondary]
    dcmap => {{ primary => {self.primary}, secondary => {self.secondary} }}
}} }} }} }}
"""

    def pdns_extra(self, directory):
        return "enable-lua-records=yes\nlua-health-checks-interval=1\n"


WORKLOADS = {w.name: w for w in (StaticWorkload, StaticRestWorkload, StaticHitsWorkload, GeoSpreadWorkload, GeoWorkload, HealthWorkload,
                                  TcpWorkload, TwoWorkerWorkload)}
DEFAULT_WORKLOADS = "static,static-rest,geo-spread,geo,health,tcp"


def write_zone_files(workload, directory, extra=None):
    """Writes the workload's zones, with `extra` lines {origin: [line]} appended for one server."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for origin, text in workload.zones().items():
        path = os.path.join(directory, f"{origin}.zone")
        with open(path, "w") as f:
            f.write(text + "".join(f"{line}\n" for line in (extra or {}).get(origin, [])))
        paths[origin] = path
    return paths


def write_query_file(workload, path):
    with open(path, "w") as f:
        for name, qtype, ecs in workload.queries():
            f.write(f"{name} {qtype} {ecs}\n" if ecs else f"{name} {qtype}\n")


def write_dnsperf_file(workload, text_path, path):
    """dnsperf's input: the text file when no query has a client subnet; otherwise every query
    as a wire message with an OPT record (1232 bytes) and its own ECS option (RFC 7871 6), in
    dnsperf's `-B` format (2-byte length, message), since dnsperf's `-E` is one fixed option.
    Returns (path, binary)."""
    queries = workload.queries()
    if not any(ecs for _, _, ecs in queries):
        return text_path, False
    with open(path, "wb") as f:
        for name, qtype, ecs in queries:
            options = b""
            if ecs:
                net = ipaddress.ip_network(ecs)
                family = 1 if net.version == 4 else 2
                addr = net.network_address.packed[:(net.prefixlen + 7) // 8]
                options = struct.pack(">HHHBB", 8, 4 + len(addr), family, net.prefixlen, 0) + addr
            msg = (struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 1) + wire_name(name) + struct.pack(">HH", TYPE_CODES[qtype], 1)
                   + b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(options)) + options)
            f.write(struct.pack(">H", len(msg)) + msg)
    return path, True
