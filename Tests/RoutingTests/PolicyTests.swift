import Config
import DNSWire
import Routing
import Testing

let amsV4 = "192.0.2.1,192.0.2.2"
let iadV4 = "198.51.100.1,198.51.100.2"

struct Case: CustomTestStringConvertible, Sendable {
    var policy: String
    var extra = ""
    var qtype: RRType = .a
    var client = "203.0.113.9"
    var down: [String] = []
    var want: String
    var scope = 0
    var testDescription: String { "\(policy) \(extra) \(qtype) down=\(down)" }
}

/// Policies that do not look at the client: scope is always 0 (RFC 7871 7.2).
let clientIndependent: [Case] = [
    // A pool answers all its usable members; family filtering picks v4 or v6.
    Case(policy: "web", want: "192.0.2.1,192.0.2.2,198.51.100.1"),
    Case(policy: "web", qtype: .aaaa, want: "2001:db8:1::1,2001:db8::1,2001:db8::2"),
    Case(policy: "web", down: ["ams-1"], want: "192.0.2.2,198.51.100.1"),
    Case(policy: "{ pool: ams }", want: amsV4),
    Case(policy: "iad-2", want: "198.51.100.2"),
    // AAAA where only IPv4 endpoints exist is NODATA, not NXDOMAIN.
    Case(policy: "v4only", qtype: .aaaa, want: "NODATA"),
    Case(policy: "web", extra: "types: [A]", qtype: .aaaa, want: "NODATA"),
    Case(policy: "web", qtype: .txt, want: "NODATA"),
    // Hostname endpoints answer CNAME for any type.
    Case(policy: "cdn", want: "CNAME edge.cdn.example.net."),
    Case(policy: "cdn", qtype: .aaaa, want: "CNAME edge.cdn.example.net."),
    Case(policy: "cdn", qtype: .txt, want: "CNAME edge.cdn.example.net."),
    // Failover: first child with a healthy member.
    Case(policy: "{ failover: [ams, iad] }", want: amsV4),
    Case(policy: "{ failover: [ams, iad] }", down: ["ams-1"], want: "192.0.2.2"),
    Case(policy: "{ failover: [ams, iad] }", down: ["ams-1", "ams-2"], want: iadV4),
    Case(policy: "{ failover: [ams, iad, sin] }", down: ["ams-1", "ams-2", "iad-1", "iad-2"], want: "192.0.2.100"),
    // A pool string under failover means one child per endpoint, in pool order.
    Case(policy: "{ failover: web }", want: "192.0.2.1"),
    Case(policy: "{ failover: web }", down: ["ams-1"], want: "192.0.2.2"),
    // Failover per family: iad-2 has no AAAA, so AAAA falls to the next choice with IPv6.
    Case(policy: "{ failover: [iad-2, ams-1] }", qtype: .aaaa, want: "2001:db8::1"),
    // when_all_down: open (the default at the top) answers as if all were up.
    Case(policy: "{ failover: [ams, iad] }", down: ["ams-1", "ams-2", "iad-1", "iad-2"], want: amsV4),
    Case(policy: "web", down: ["ams-1", "ams-2", "iad-1"], want: "192.0.2.1,192.0.2.2,198.51.100.1"),
    // nodata
    Case(policy: "{ failover: [ams, iad], when_all_down: nodata }", down: ["ams-1", "ams-2", "iad-1", "iad-2"], want: "NODATA"),
    Case(policy: "{ failover: [ams, iad], when_all_down: nodata }", down: ["ams-1"], want: "192.0.2.2"),
    // fallback records, filtered by family; name-level when_all_down applies to the top node.
    Case(policy: "{ failover: [ams, iad] }", extra: "when_all_down: fallback\nfallback: [192.0.2.250, \"2001:db8::250\"]",
         down: ["ams-1", "ams-2", "iad-1", "iad-2"], want: "192.0.2.250"),
    Case(policy: "{ failover: [ams, iad] }", extra: "when_all_down: fallback\nfallback: [192.0.2.250, \"2001:db8::250\"]",
         qtype: .aaaa, down: ["ams-1", "ams-2", "iad-1"], want: "2001:db8::250"),
    Case(policy: "{ failover: [ams], when_all_down: fallback, fallback: [sorry.example.net] }",
         down: ["ams-1", "ams-2"], want: "CNAME sorry.example.net."),
    Case(policy: "{ failover: [ams], when_all_down: fallback, fallback: [192.0.2.250] }",
         qtype: .aaaa, down: ["ams-1", "ams-2"], want: "NODATA"),
    // Nested: a child's `parent` (the default below the top) lets the outer failover go on;
    // a child's `open` answers its own members even though they are down.
    Case(policy: "{ failover: [ { failover: [ams-1] }, iad ] }", down: ["ams-1"], want: iadV4),
    Case(policy: "{ failover: [ { failover: [ams-1], when_all_down: parent }, iad ] }", down: ["ams-1"], want: iadV4),
    Case(policy: "{ failover: [ { failover: [ams-1], when_all_down: open }, iad ] }", down: ["ams-1"], want: "192.0.2.1"),
    Case(policy: "{ failover: [ { failover: [ams-1], when_all_down: nodata }, iad ] }", down: ["ams-1"], want: "NODATA"),
    Case(policy: "{ failover: [ { failover: [ams-1], when_all_down: fallback, fallback: [192.0.2.99] }, iad ] }",
         down: ["ams-1"], want: "192.0.2.99"),
    // `parent` at the top has no parent: fail open.
    Case(policy: "{ failover: [ams-1], when_all_down: parent }", down: ["ams-1"], want: "192.0.2.1"),
    // Weighted with one choice healthy is deterministic.
    Case(policy: "{ weighted: { ams-1: 3, iad-1: 1 } }", down: ["ams-1"], want: "198.51.100.1"),
    Case(policy: "{ weighted: [ { weight: 1, failover: [ams-1, ams-2] }, { weight: 0, pool: iad } ] }", down: ["ams-1"], want: "192.0.2.2"),
    // Multivalue with n at least the pool size answers every usable member.
    Case(policy: "{ multivalue: web, n: 8 }", down: ["iad-1"], want: amsV4),
    Case(policy: "{ multivalue: web, n: 8 }", qtype: .aaaa, want: "2001:db8:1::1,2001:db8::1,2001:db8::2"),
]

@Test(arguments: clientIndependent)
func clientIndependentPolicies(_ c: Case) throws {
    let r = try makeRouter(c.policy, nameExtra: c.extra)
    #expect(answer(r, c.qtype, client: c.client, down: c.down) == Answer(records: c.want, scope: 0))
}

/// Subnet rules: longest prefix wins; the scope is the network for which that holds (no
/// more specific rule inside it), not the client's whole address.
@Test(arguments: [
    ("10.2.3.4", nil, "192.0.2.1,192.0.2.2", 15),     // 10.0.0.0/8, but 10.0.0.0/15 excludes 10.1/16
    ("10.1.2.3", nil, "198.51.100.1,198.51.100.2", 16),
    ("10.200.0.1", nil, "192.0.2.1,192.0.2.2", 9),     // 10.128.0.0/9 holds no more specific rule
    ("11.0.0.1", nil, "192.0.2.100", 8),               // default; 11.0.0.0/8 holds no rule
    ("203.0.113.9", "10.1.0.0/16", "198.51.100.1,198.51.100.2", 16), // ECS decides, not the source
    ("2001:db8:ffff::1", nil, "192.0.2.100", 1),       // no IPv6 rules, but the answer still depends on the client
] as [(String, String?, String, Int)])
func subnetPolicy(_ client: String, _ ecs: String?, _ want: String, _ scope: Int) throws {
    let r = try makeRouter("{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: iad, default: sin } }")
    #expect(answer(r, client: client, ecs: ecs) == Answer(records: want, scope: scope))
}

/// Neighbouring networks with the same answer merge, so the scope is no longer than needed.
@Test(arguments: [
    ("{ subnet: { 10.0.0.0/9: ams, 10.128.0.0/9: ams, default: sin } }", "10.1.1.1", amsV4, 8),
    ("{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: ams, default: sin } }", "10.1.2.3", amsV4, 8),
    ("{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: { pool: ams }, default: sin } }", "10.1.2.3", amsV4, 8),
    ("{ subnet: { 10.0.0.0/8: sin, default: sin } }", "10.1.2.3", "192.0.2.100", 1),
    ("{ subnet: { 10.0.0.0/8: sin, default: sin } }", "192.0.2.1", "192.0.2.100", 1),
    ("{ subnet: { 10.0.0.0/9: ams, 10.128.0.0/9: iad, default: sin } }", "10.1.1.1", amsV4, 9),
] as [(String, String, String, Int)])
func subnetMergesEqualNeighbours(_ policy: String, _ client: String, _ want: String, _ scope: Int) throws {
    let r = try makeRouter(policy)
    #expect(answer(r, client: client) == Answer(records: want, scope: scope))
}

@Test func prefixTrieCompaction() {
    var t = PrefixTrie()
    t.insert(IPPrefix("192.0.2.0/25")!, value: 5)
    t.insert(IPPrefix("192.0.2.128/26")!, value: 5)
    t.insert(IPPrefix("192.0.2.192/26")!, value: 5)
    t.insert(IPPrefix("192.0.3.0/24")!, value: 6)
    t.compact()
    let a = t.lookup(IPAddress("192.0.2.200")!)
    #expect(a.value == 5 && a.scope == 24)
    let b = t.lookup(IPAddress("192.0.3.1")!)
    #expect(b.value == 6 && b.scope == 24)
}

@Test func subnetChildDownFallsToDefault() throws {
    let r = try makeRouter("{ subnet: { 10.0.0.0/8: ams, default: sin } }")
    #expect(answer(r, client: "10.0.0.1", down: ["ams-1", "ams-2"]) == Answer(records: "192.0.2.100", scope: 8))
}

@Test func ecsWithZeroSourcePrefixGetsScopeZero() throws {
    let r = try makeRouter("{ subnet: { 10.0.0.0/8: ams, default: sin } }")
    // Source prefix 0: the client asked not to be located; the source address decides, scope 0.
    #expect(answer(r, client: "10.0.0.1", ecs: "0.0.0.0/0") == Answer(records: amsV4, scope: 0))
}

/// 10,000 weighted decisions land within 5 standard deviations of the configured share.
/// For n draws with success probability p the count has sd = sqrt(n p (1-p)); a fair
/// generator leaves that band with probability below 1e-6.
@Test(arguments: [
    ("{ weighted: { ams-1: 3, iad-1: 1 } }", [String: Double](), 0.75),
    ("{ weighted: { ams-1: 3, iad-1: 1 } }", ["ams-1": 0.5], 0.6),        // degraded: 1.5 vs 1
    ("{ weighted: [ { weight: 1, pool: ams-1 }, { weight: 1, pool: iad-1 } ] }", [:], 0.5),
    ("{ weighted: web }", [:], 2.0 / 3.0),                                  // endpoint weights 100 each
] as [(String, [String: Double], Double)])
func weightedSplit(_ policy: String, _ degraded: [String: Double], _ p: Double) throws {
    let r = try makeRouter(policy)
    let n = 10_000
    var rng = RoutingRandom(seed: 7)
    var result = r.makeResult()
    var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
    for (d, f) in degraded { states[r.model.endpointIndex(named: d)!] = .degraded(factor: f) }
    let health = HealthSnapshot(states: states)
    let client = ClientInfo(source: IPAddress("203.0.113.9")!, subnet: nil)
    var ams = 0
    for _ in 0..<n {
        r.resolve(nameIndex: 0, qtype: .a, client: client, health: health, random: &rng, into: &result)
        #expect(result.addresses.count == 1 && result.usedRandom && result.scopePrefix == 0)
        if result.addresses.first?.description.hasPrefix("192.0.2.") == true { ams += 1 }
    }
    let sd = (Double(n) * p * (1 - p)).squareRoot()
    #expect(abs(Double(ams) - Double(n) * p) < 5 * sd, "\(ams) of \(n), expected \(Double(n) * p) ± \(5 * sd)")
}

@Test func multivalueShufflesAndLimits() throws {
    let r = try makeRouter("{ multivalue: web, n: 2 }")
    var seen = Set<String>()
    for seed in 1...50 as ClosedRange<UInt64> {
        let a = answer(r, seed: seed)
        let parts = a.records.split(separator: ",")
        #expect(parts.count == 2 && Set(parts).count == 2)
        #expect(parts.allSatisfy { ["192.0.2.1", "192.0.2.2", "198.51.100.1"].contains(String($0)) })
        seen.insert(a.records)
    }
    #expect(seen.count == 3) // every pair turns up over 50 draws
    #expect(answer(r, down: ["ams-1", "ams-2"]).records == "198.51.100.1")
}

/// Hashed: the same client network always gets the same endpoint; losing one endpoint
/// moves only the networks that had it; scope is the hashed network's prefix.
@Test func hashedStickyAndMinimalMovement() throws {
    let r = try makeRouter("{ hashed: [ams-1, ams-2, iad-1, iad-2] }")
    var before: [String: String] = [:]
    var counts: [String: Int] = [:]
    for i in 0..<1000 {
        let client = "10.\(i / 256).\(i % 256).7"
        let a = answer(r, client: client, seed: UInt64(i))
        #expect(a.scope == 24)
        #expect(answer(r, client: "10.\(i / 256).\(i % 256).200", seed: 99) == a) // same /24, other host
        before[client] = a.records
        counts[a.records, default: 0] += 1
    }
    #expect(counts.count == 4 && counts.values.allSatisfy { $0 > 150 }, "\(counts)")
    var moved = 0
    for (client, was) in before {
        let now = answer(r, client: client, down: ["ams-2"]).records
        if was == "192.0.2.2" { #expect(now != was); moved += 1 } else { #expect(now == was) }
    }
    #expect(moved == counts["192.0.2.2"])
    let v6 = try makeRouter("{ hashed: web, v6_prefix: 48 }")
    #expect(answer(v6, .aaaa, client: "2001:db8:1234:5678::1").scope == 48)
}

@Test func resolveReusesResultStorage() throws {
    let r = try makeRouter("web")
    var result = r.makeResult()
    let cap = result.addresses.capacity
    var rng = RoutingRandom(seed: 1)
    let client = ClientInfo(source: IPAddress("203.0.113.9")!, subnet: nil)
    let health = HealthSnapshot.allUp(count: r.model.endpoints.count)
    for _ in 0..<10 {
        r.resolve(nameIndex: 0, qtype: .a, client: client, health: health, random: &rng, into: &result)
        #expect(result.addresses.count == 3 && result.addresses.capacity == cap && result.ttl == 30)
    }
}

@Test func clientIdentification() {
    let src = IPAddress("198.51.100.7")!
    let ecs = ClientSubnet(family: 1, sourcePrefix: 24, scopePrefix: 0, address: IPAddress("81.2.69.0")!)
    let a = ClientInfo(source: src, subnet: ecs)
    #expect(a.address == IPAddress("81.2.69.0")! && a.sourcePrefix == 24 && a.reason == .clientSubnet && a.allowsScope)
    let b = ClientInfo(source: src, subnet: nil)
    #expect(b.address == src && b.sourcePrefix == 32 && b.reason == .sourceAddress)
    let c = ClientInfo(source: src, subnet: ClientSubnet(family: 1, sourcePrefix: 0, scopePrefix: 0, address: IPAddress("0.0.0.0")!))
    #expect(c.address == src && c.reason == .clientSubnetZero && !c.allowsScope)
    let mapped = ClientInfo(source: IPAddress("::ffff:192.0.2.1")!, subnet: nil)
    #expect(mapped.address == IPAddress("192.0.2.1")! && mapped.sourcePrefix == 32)
    let v6 = ClientInfo(source: src, subnet: ClientSubnet(family: 2, sourcePrefix: 56, scopePrefix: 0, address: IPAddress("2001:db8:1::")!))
    #expect(v6.address.isV6 && v6.sourcePrefix == 56)
}

@Test(arguments: [
    ("10.2.3.4", 0, 8, 15), ("10.1.2.3", 1, 16, 16), ("10.1.2.3", 1, 16, 16), ("192.0.2.1", 2, 24, 24),
    ("192.0.3.1", -1, 0, 24), ("11.1.1.1", -1, 0, 8), ("128.0.0.1", -1, 0, 2), ("64.0.0.1", -1, 0, 2),
] as [(String, Int, Int, Int)])
func prefixTrieScope(_ a: String, _ value: Int, _ matched: Int, _ scope: Int) {
    var t = PrefixTrie()
    t.insert(IPPrefix("10.0.0.0/8")!, value: 0)
    t.insert(IPPrefix("10.1.0.0/16")!, value: 1)
    t.insert(IPPrefix("192.0.2.0/24")!, value: 2)
    let r = t.lookup(IPAddress(a)!)
    #expect(Int(r.value) == value && r.matched == matched && r.scope == scope)
}

@Test func greatCircle() {
    // London to New York is about 5570 km.
    let d = greatCircleKm(51.5074, -0.1278, 40.7128, -74.0060)
    #expect(abs(d - 5570) < 20)
    #expect(greatCircleKm(10, 10, 10, 10) == 0)
}

/// The answer's TTL: `ttl_when_failing` while any endpoint the name can answer with is
/// suspect in the snapshot (even one not in this answer), else `ttl`; the decision cache
/// never mixes them because a new snapshot empties it.
@Test(arguments: [
    ([String](), UInt32(30)), (["ams-1"], 4), (["iad-1"], 4), (["sin-1"], 30),
] as [([String], UInt32)])
func ttlFollowsSuspectEndpoints(_ suspect: [String], _ want: UInt32) throws {
    let r = try makeRouter("{ failover: [ams-1, iad-1] }", nameExtra: "ttl: 30\nttl_when_failing: 4")
    var flags = Array(repeating: false, count: r.model.endpoints.count)
    for s in suspect { flags[r.model.endpointIndex(named: s)!] = true }
    let health = HealthSnapshot(states: Array(repeating: .up, count: flags.count), suspect: flags)
    var result = r.makeResult()
    var rng = RoutingRandom(seed: 1)
    let client = ClientInfo(source: IPAddress("203.0.113.9")!, subnet: nil)
    r.resolve(nameIndex: 0, qtype: .a, client: client, health: health, random: &rng, into: &result)
    #expect(result.ttl == want)
    #expect(result.addresses.map(\.description) == ["192.0.2.1"], "the TTL changes, the choice does not")
}
