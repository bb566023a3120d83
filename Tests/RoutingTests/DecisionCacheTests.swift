import Config
import DNSWire
import Routing
import Testing

/// For A and AAAA: the answer through `cache` is the direct one (records, scope, TTL, and
/// what metrics count it under), with the same random seed.
func expectCacheAgrees(_ r: Router, _ cache: DecisionCache, _ client: ClientInfo, _ health: HealthSnapshot, _ what: String,
                       sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    for qtype in [RRType.a, .aaaa] {
        var direct = r.makeResult(), cached = r.makeResult()
        var rng1 = RoutingRandom(seed: 1), rng2 = RoutingRandom(seed: 1)
        r.resolve(nameIndex: 0, qtype: qtype, client: client, health: health, random: &rng1, into: &direct)
        cache.resolve(router: r, nameIndex: 0, qtype: qtype, client: client, health: health, random: &rng2, into: &cached)
        #expect(direct.addresses == cached.addresses && direct.cname == cached.cname && direct.nodata == cached.nodata
                && direct.scopePrefix == cached.scopePrefix && direct.ttl == cached.ttl
                && direct.firstEndpoint == cached.firstEndpoint && direct.answeringNode == cached.answeringNode,
                "\(what) \(qtype)", sourceLocation: sourceLocation)
    }
}

/// The cache must never change an answer: for many clients, cached and direct agree,
/// and repeated queries from one network hit.
@Test(arguments: [
    "{ geo: { EU: ams, SE: sin, US-WA: iad-2, NA: iad-1, default: iad } }",
    "{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: iad, default: sin } }",
    "{ hashed: [ams-1, ams-2, iad-1, iad-2] }",
    "{ failover: [ams, { geo: { EU: iad, default: sin } }] }",
    "{ nearest: [ams, iad, sin] }",
])
func cacheAgreesWithDirectResolve(_ policy: String) throws {
    let r = try makeRouter(policy, geo: cityGeo)
    let cache = DecisionCache(router: r, slots: 256)
    let clients = ["81.2.69.142", "81.2.69.143", "81.2.69.160", "89.160.20.112", "216.160.83.56", "2.125.160.216",
                   "10.1.2.3", "10.2.3.4", "10.200.0.1", "11.0.0.1", "203.0.113.9", "2001:218::1", "2001:db8::5"]
    for downSet in [[], ["ams-1", "ams-2"]] {
        var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
        for d in downSet { states[r.model.endpointIndex(named: d)!] = .down }
        let health = HealthSnapshot(states: states)
        // Five rounds: a per-network decision is kept on its second miss (admission), so
        // from the third round on every client hits.
        for round in 0..<5 {
            for c in clients {
                let client = ClientInfo(source: IPAddress(c)!, subnet: nil)
                expectCacheAgrees(r, cache, client, health, "\(c) round \(round)")
            }
        }
    }
    #expect(cache.hits > cache.misses)
}

@Test func cacheSkipsRandomAnswersAndEmptiesOnHealthChange() throws {
    let r = try makeRouter("{ weighted: { ams-1: 1, iad-1: 1 } }")
    let cache = DecisionCache(router: r)
    var rng = RoutingRandom(seed: 3)
    var result = r.makeResult()
    let client = ClientInfo(source: IPAddress("203.0.113.9")!, subnet: nil)
    let health = HealthSnapshot.allUp(count: r.model.endpoints.count)
    var seen = Set<String>()
    for _ in 0..<50 {
        cache.resolve(router: r, nameIndex: 0, qtype: .a, client: client, health: health, random: &rng, into: &result)
        seen.insert(result.addresses.description)
    }
    #expect(seen.count == 2 && cache.hits == 0)

    let f = try makeRouter("{ failover: [ams-1, iad-1] }")
    let c2 = DecisionCache(router: f)
    var res = f.makeResult()
    let up = HealthSnapshot.allUp(count: f.model.endpoints.count)
    c2.resolve(router: f, nameIndex: 0, qtype: .a, client: client, health: up, random: &rng, into: &res)
    c2.resolve(router: f, nameIndex: 0, qtype: .a, client: client, health: up, random: &rng, into: &res)
    #expect(c2.hits == 1 && res.addresses.map(\.description) == ["192.0.2.1"])
    var states = up.states
    states[f.model.endpointIndex(named: "ams-1")!] = .down
    c2.resolve(router: f, nameIndex: 0, qtype: .a, client: client, health: HealthSnapshot(states: states, generation: 1), random: &rng, into: &res)
    #expect(res.addresses.map(\.description) == ["198.51.100.1"])
}

/// The encoded answer a worker keeps beside a decision: found again for the same network,
/// gone when the slot takes a new decision or the health changes; with a tiny table every
/// network still finds its own decision (two-way slots, eviction never mixes networks).
@Test func payloadsFollowTheirDecision() throws {
    let r = try makeRouter("{ geo: { EU: ams, SE: sin, US-WA: iad-2, NA: iad-1, default: iad } }", geo: cityGeo)
    let cache = DecisionCache(router: r, slots: 4)
    var rng = RoutingRandom(seed: 1)
    var result = r.makeResult()
    let health = HealthSnapshot.allUp(count: r.model.endpoints.count)
    let london = ClientInfo(source: IPAddress("81.2.69.142")!, subnet: nil)
    #expect(cache.lookup(router: r, nameIndex: 0, qtype: .a, client: london, health: health) == -1)
    let s = cache.store(router: r, nameIndex: 0, qtype: .a, client: london, health: health, random: &rng, into: &result)
    #expect(s >= 0 && cache.payload(s) == nil)
    [UInt8]([1, 2, 3]).withUnsafeBytes { cache.setPayload(s, bytes: $0, records: 1, tag: 7) }
    let again = cache.lookup(router: r, nameIndex: 0, qtype: .a, client: london, health: health)
    #expect(again == s)
    let p = try #require(cache.payload(again))
    #expect(Array(p.bytes) == [1, 2, 3] && p.records == 1 && p.tag == 7)
    var states = health.states
    states[0] = .down
    let changed = HealthSnapshot(states: states, generation: 1)
    #expect(cache.lookup(router: r, nameIndex: 0, qtype: .a, client: london, health: changed) == -1)

    for c in ["81.2.69.142", "89.160.20.112", "216.160.83.56", "2.125.160.216", "10.1.2.3"] {
        let client = ClientInfo(source: IPAddress(c)!, subnet: nil)
        var direct = r.makeResult()
        r.resolve(nameIndex: 0, qtype: .a, client: client, health: changed, random: &rng, into: &direct)
        var cached = r.makeResult()
        for _ in 0..<2 {
            let t = cache.lookup(router: r, nameIndex: 0, qtype: .a, client: client, health: changed)
            if t >= 0 { cache.load(t, into: &cached) } else {
                _ = cache.store(router: r, nameIndex: 0, qtype: .a, client: client, health: changed, random: &rng, into: &cached)
            }
            #expect(cached.addresses == direct.addresses, "\(c)")
        }
    }
}

/// Issue 20: a slot is sized by the largest answer the policies can give, not by the
/// endpoint count (20,000 endpoints made each worker's cache reserve gigabytes); an answer
/// larger than `maxSlotAddresses` is evaluated every time rather than kept, and stays whole.
@Test func slotsAreSizedByTheLargestAnswer() throws {
    var endpoints = "endpoints:\n"
    for i in 0..<2_000 { endpoints += "  e\(i): { v4: 10.0.\(i >> 8).\(i & 255) }\n" }
    let big = (0..<20).map { "e\($0)" }.joined(separator: ", ")
    func router(_ policy: String) throws -> Router {
        let yaml = endpoints + "pools:\n  big: [\(big)]\nzones:\n  example.com:\n    names:\n      t:\n        policy: \(policy)\n"
        return try Router(model: ConfigLoader.load(yaml: yaml, file: "test.yaml", baseDirectory: Paths.zoneFolder))
    }
    let small = try router("{ failover: [e0, e1999] }")
    #expect(small.maxAddresses == 1 && DecisionCache(router: small).slotAddresses == 1)

    let r = try router("big")
    let cache = DecisionCache(router: r)
    #expect(r.maxAddresses == 20 && cache.slotAddresses == DecisionCache.maxSlotAddresses)
    let client = ClientInfo(source: IPAddress("203.0.113.9")!, subnet: nil)
    let health = HealthSnapshot.allUp(count: r.model.endpoints.count)
    var rng = RoutingRandom(seed: 1)
    var result = r.makeResult()
    for _ in 0..<3 {
        cache.resolve(router: r, nameIndex: 0, qtype: .a, client: client, health: health, random: &rng, into: &result)
        #expect(result.addresses.count == 20)
    }
    #expect(cache.hits == 0 && cache.misses == 3)
}

/// Issue 13: a name decided by its root's compiled lookup alone (geo, subnet or nearest
/// over pools) is cached by that lookup's value, so clients from ever new networks hit,
/// and each still gets its own scope and exactly the direct answer, under any health;
/// a name with another locating node below its root keeps the per-network rules, and a
/// random choice below a keyed root is still never kept (`cacheSkipsRandomAnswers...`).
@Test(arguments: [
    ("{ geo: { EU: ams, SE: sin, US-WA: iad-2, NA: iad-1, default: iad } }", true),
    ("{ geo: { EU: { weighted: { ams-1: 1, ams-2: 1 } }, default: iad } }", true),
    ("{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: iad, 2001:db8::/32: sin, default: web } }", true),
    ("{ nearest: [ams, iad, sin] }", true),
    ("{ geo: { EU: { subnet: { 81.2.0.0/16: sin, default: ams } }, default: iad } }", false),
])
func keyedDecisionsHitAcrossNetworks(_ policy: String, keyed: Bool) throws {
    let r = try makeRouter(policy, geo: cityGeo)
    let cache = DecisionCache(router: r, slots: 64)
    // Networks from all over both families, each queried once per round with ECS for it:
    // a per-network cache could only hit in the second round.
    var networks = ["81.2.69.0/24", "81.2.70.0/24", "89.160.20.0/24", "216.160.83.0/24", "2.125.160.0/24", "10.1.2.0/24",
                    "10.2.3.0/24", "2001:218::/56", "2001:db8:5::/56", "2a02:cf40::/48"]
    for i in 0..<150 { networks.append("\(1 + i % 223).\((i * 37) % 256).\((i * 101) % 256).0/24") }
    for downSet in [[], ["ams-1", "ams-2"], ["iad-1", "iad-2", "ams-1"]] {
        var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
        for d in downSet { states[r.model.endpointIndex(named: d)!] = .down }
        let health = HealthSnapshot(states: states, generation: UInt64(downSet.count))
        let before = (hits: cache.hits, misses: cache.misses)
        for net in networks {
            let p = try #require(IPPrefix(net))
            let subnet = ClientSubnet(family: p.address.isV4 ? 1 : 2, sourcePrefix: UInt8(p.length), scopePrefix: 0, address: p.address)
            let client = ClientInfo(source: IPAddress("198.51.100.53")!, subnet: subnet)
            expectCacheAgrees(r, cache, client, health, "\(net) down \(downSet)")
        }
        let hits = cache.hits - before.hits, misses = cache.misses - before.misses
        if keyed {
            // One miss per distinct decision value and type; the rest hit, in the first round.
            #expect(hits > 8 * misses, "\(hits) hits, \(misses) misses, down \(downSet)")
        } else {
            #expect(hits < misses, "\(hits) hits, \(misses) misses, down \(downSet)")
        }
    }
}

/// The admission filter: a decision keyed by the client's network is kept only when the
/// same /24 (or /56) misses a second time, every answer meanwhile is the direct one, and a
/// stream of networks seen once neither takes slots nor evicts a decision in use. Without
/// the filter the first miss keeps it (and the stream evicts it).
@Test func perNetworkDecisionsAreKeptOnTheSecondSighting() throws {
    let r = try makeRouter("{ failover: [ams, { geo: { EU: iad, default: sin } }] }", geo: cityGeo)
    // ams down: the failover falls to the geo node, so the decision depends on the client's
    // network (with ams up it is one decision for everyone, scope 0, kept at once).
    var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
    for d in ["ams-1", "ams-2"] { states[r.model.endpointIndex(named: d)!] = .down }
    let health = HealthSnapshot(states: states)
    var rng = RoutingRandom(seed: 1)
    func subnetClient(_ net: String) throws -> ClientInfo {
        let p = try #require(IPPrefix(net))
        let subnet = ClientSubnet(family: p.address.isV4 ? 1 : 2, sourcePrefix: UInt8(p.length), scopePrefix: 0, address: p.address)
        return ClientInfo(source: IPAddress("198.51.100.53")!, subnet: subnet)
    }
    let hot = try subnetClient("81.2.69.0/24")
    for admission in [true, false] {
        let cache = DecisionCache(router: r, slots: 64, admitOnSecondSighting: admission)
        var result = r.makeResult()
        // Sightings: lookup misses, then the store keeps the decision (or not).
        var kept: [Bool] = []
        for round in 0..<3 {
            var slot = cache.lookup(router: r, nameIndex: 0, qtype: .a, client: hot, health: health)
            if slot < 0 {
                slot = cache.store(router: r, nameIndex: 0, qtype: .a, client: hot, health: health, random: &rng, into: &result)
                kept.append(slot >= 0)
            } else {
                cache.load(slot, into: &result)
                kept.append(true)
            }
            var direct = r.makeResult()
            r.resolve(nameIndex: 0, qtype: .a, client: hot, health: health, random: &rng, into: &direct)
            #expect(result.addresses == direct.addresses && result.scopePrefix == direct.scopePrefix && direct.scopePrefix > 0,
                    "round \(round)")
        }
        #expect(kept == (admission ? [false, true, true] : [true, true, true]), "admission \(admission)")
        #expect(cache.hits == (admission ? 1 : 2))
        // 2,000 networks seen once each (64 slots): with the filter none is kept, so the hot
        // network's decision stays; without it they take every slot in turn.
        for i in 0..<2_000 {
            let c = try subnetClient("\(1 + i % 200).\((i * 37) % 256).\((i * 101) % 256).0/24")
            expectCacheAgrees(r, cache, c, health, "one-time network \(i)")
        }
        let hitsBefore = cache.hits
        #expect(cache.lookup(router: r, nameIndex: 0, qtype: .a, client: hot, health: health) >= 0 || !admission)
        if admission { #expect(cache.hits == hitsBefore + 1) }
    }
}
