import Config
import DNSWire
import Routing
import Testing

/// One rule for degraded state in every policy kind (docs/configuration.md, "Degraded
/// endpoints"): fully up before degraded before down; weighted and hashed scale by the
/// factor; geo and subnet keep the client's match. Each row: policy, client, health, answer.
struct HealthCase: CustomTestStringConvertible, Sendable {
    var policy: String
    var geo = ""
    var client = "203.0.113.9"
    var down: [String] = []
    var degraded: [String] = []
    var want: String
    var preamble = basePreamble
    var testDescription: String { "\(policy) down=\(down) degraded=\(degraded)" }
}

/// The shared preamble under another name, so a field called `preamble` can default to it.
let basePreamble = preamble
/// `strict` needs both ams endpoints, `half` 2 of its 3; datacenter `iad` needs 2 of its 2.
let minimumPreamble = preamble
    .replacingOccurrences(of: "  iad: { lat: 38.95, lon: -77.45, country: US, continent: NA }",
                          with: "  iad: { lat: 38.95, lon: -77.45, country: US, continent: NA, min_healthy: 2 }")
    + "  strict: { members: [ams-1, ams-2], min_healthy: 2 }\n  half: { members: [ams-1, ams-2, iad-1], min_healthy: 50% }\n"

let londonClient = "81.2.69.142"   // GB, EU in the test City database; nearest: ams, then iad, then sin

let degradedCases: [HealthCase] = [
    // pool: fully-up members only; degraded ones when none is fully up; never down ones.
    HealthCase(policy: "web", degraded: ["ams-1"], want: "192.0.2.2,198.51.100.1"),
    HealthCase(policy: "web", degraded: ["ams-1", "ams-2", "iad-1"], want: "192.0.2.1,192.0.2.2,198.51.100.1"),
    HealthCase(policy: "web", down: ["ams-2", "iad-1"], degraded: ["ams-1"], want: "192.0.2.1"),
    // multivalue: the same, n covers the pool.
    HealthCase(policy: "{ multivalue: web, n: 8 }", degraded: ["iad-1"], want: amsV4),
    HealthCase(policy: "{ multivalue: web, n: 8 }", down: ["iad-1"], degraded: ["ams-1", "ams-2"], want: amsV4),
    // failover: a choice that is only degraded is passed over for a fully-up one...
    HealthCase(policy: "{ failover: [ams, iad] }", degraded: ["ams-1", "ams-2"], want: iadV4),
    HealthCase(policy: "{ failover: [ams, iad, sin] }", down: ["iad-1", "iad-2"], degraded: ["ams-1", "ams-2"], want: "192.0.2.100"),
    // ...and taken, first in order, when no choice is fully up.
    HealthCase(policy: "{ failover: [ams, iad] }", down: ["iad-1", "iad-2"], degraded: ["ams-1", "ams-2"], want: amsV4),
    HealthCase(policy: "{ failover: [ams, iad] }", degraded: ["ams-1", "ams-2", "iad-1", "iad-2"], want: amsV4),
    HealthCase(policy: "{ failover: [sin, ams, iad] }", down: ["sin-1"], degraded: ["ams-1", "ams-2", "iad-1", "iad-2"], want: amsV4),
    // A choice with one fully-up member is fully up: it answers that member.
    HealthCase(policy: "{ failover: [ams, iad] }", degraded: ["ams-1"], want: "192.0.2.2"),
    // A down choice keeps its place: its own when_all_down still answers there.
    HealthCase(policy: "{ failover: [ { failover: [ams-1], when_all_down: nodata }, iad ] }", down: ["ams-1"], degraded: ["iad-1", "iad-2"],
               want: "NODATA"),
    // geo and subnet keep the client's match while it has a usable member (locality).
    HealthCase(policy: "{ geo: { EU: ams, default: iad } }", geo: cityGeo, client: londonClient, degraded: ["ams-1", "ams-2"], want: amsV4),
    HealthCase(policy: "{ geo: { EU: ams, default: iad } }", geo: cityGeo, client: londonClient, degraded: ["ams-1"], want: "192.0.2.2"),
    HealthCase(policy: "{ subnet: { 10.0.0.0/8: ams, default: iad } }", client: "10.1.2.3", degraded: ["ams-1", "ams-2"], want: amsV4),
    // nearest: the nearest fully-up choice, then the nearest degraded one.
    HealthCase(policy: "{ nearest: [ams, iad, sin] }", geo: cityGeo, client: londonClient, degraded: ["ams-1", "ams-2"], want: iadV4),
    HealthCase(policy: "{ nearest: [ams, iad, sin] }", geo: cityGeo, client: londonClient, down: ["iad-1", "iad-2"],
               degraded: ["ams-1", "ams-2"], want: "192.0.2.100"),
    HealthCase(policy: "{ nearest: [ams, iad, sin] }", geo: cityGeo, client: londonClient, down: ["sin-1"],
               degraded: ["ams-1", "ams-2", "iad-1", "iad-2"], want: amsV4),
    HealthCase(policy: "{ nearest: [ams, iad, sin], n: 2 }", geo: cityGeo, client: londonClient, down: ["sin-1"],
               degraded: ["ams-1", "ams-2"], want: amsV4 + "," + iadV4),
    HealthCase(policy: "{ nearest: [ams, iad, sin] }", down: ["ams-1", "ams-2"], degraded: ["iad-1", "iad-2"], want: "192.0.2.100"),
    // weighted: a degraded choice keeps its factor of the weight; alone it still answers.
    HealthCase(policy: "{ weighted: { ams: 1, iad: 1 } }", down: ["iad-1", "iad-2"], degraded: ["ams-1", "ams-2"], want: amsV4),

    // min_healthy: a pool, a datacenter or a pool-expanded node below it counts as down.
    HealthCase(policy: "{ failover: [strict, iad] }", down: ["ams-1"], want: iadV4, preamble: minimumPreamble),
    HealthCase(policy: "{ failover: [strict, iad] }", degraded: ["ams-1"], want: "192.0.2.2", preamble: minimumPreamble),
    HealthCase(policy: "{ failover: [half, sin] }", down: ["ams-1"], want: "192.0.2.2,198.51.100.1", preamble: minimumPreamble),
    HealthCase(policy: "{ failover: [half, sin] }", down: ["ams-1", "ams-2"], want: "192.0.2.100", preamble: minimumPreamble),
    HealthCase(policy: "{ failover: [iad, ams] }", down: ["iad-2"], want: amsV4, preamble: minimumPreamble),
    HealthCase(policy: "{ geo: { NA: iad, default: sin } }", geo: cityGeo, client: "216.160.83.56", down: ["iad-1"],
               want: "192.0.2.100", preamble: minimumPreamble),
    HealthCase(policy: "{ nearest: [iad, sin] }", down: ["iad-1"], want: "192.0.2.100", preamble: minimumPreamble),
    HealthCase(policy: "{ failover: [ { failover: strict }, sin ] }", down: ["ams-1"], want: "192.0.2.100", preamble: minimumPreamble),
    HealthCase(policy: "{ weighted: { strict: 1, sin: 1 } }", down: ["ams-2"], want: "192.0.2.100", preamble: minimumPreamble),
    HealthCase(policy: "{ failover: [ { pool: strict, when_all_down: nodata }, iad ] }", down: ["ams-1"], want: "NODATA",
               preamble: minimumPreamble),
    // At the top, below the minimum with the default when_all_down (open): answer as if all were up.
    HealthCase(policy: "strict", down: ["ams-1"], want: amsV4, preamble: minimumPreamble),
    // An endpoint named directly has no minimum.
    HealthCase(policy: "{ failover: [ams-2, iad] }", down: ["ams-1"], want: "192.0.2.2", preamble: minimumPreamble),
]

@Test(arguments: degradedCases)
func degradedAndMinimumHealthRankChoices(_ c: HealthCase) throws {
    let r = try makeRouter(c.policy, geo: c.geo, preamble: c.preamble)
    let got = answer(r, client: c.client, down: c.down, degraded: Dictionary(uniqueKeysWithValues: c.degraded.map { ($0, 0.5) }))
    #expect(got.records == c.want)
}

/// hashed scales a degraded choice's weight by its factor (like weighted): its share falls
/// from 1/2 to 1/3 with factor 0.5, only clients that had it move, and no one moves to it.
@Test func hashedScalesDegradedWeightAndStaysSticky() throws {
    let r = try makeRouter("{ hashed: [ams-1, iad-1] }")
    var movedToAms = 0, amsBefore = 0, amsAfter = 0
    let networks = 3000
    for i in 0..<networks {
        let client = "10.\(i / 256).\(i % 256).1"
        let before = answer(r, client: client).records
        let after = answer(r, client: client, degraded: ["ams-1": 0.5]).records
        if before == "192.0.2.1" { amsBefore += 1 }
        if after == "192.0.2.1" { amsAfter += 1; if before != after { movedToAms += 1 } }
    }
    #expect(movedToAms == 0, "degrading ams-1 must not move anyone onto it")
    #expect(abs(Double(amsBefore) / Double(networks) - 0.5) < 0.04)
    #expect(abs(Double(amsAfter) / Double(networks) - 1.0 / 3) < 0.04, "share \(amsAfter) of \(networks)")
    // All degraded: the same factor everywhere, so nobody moves.
    for i in 0..<200 {
        let client = "10.\(i / 256).\(i % 256).1"
        #expect(answer(r, client: client).records == answer(r, client: client, degraded: ["ams-1": 0.5, "iad-1": 0.5]).records)
    }
}

@Test func minimumPercentRoundsUp() {
    #expect(MinHealthy.percent(50).required(of: 3) == 2)
    #expect(MinHealthy.percent(50).required(of: 4) == 2)
    #expect(MinHealthy.percent(1).required(of: 4) == 1)
    #expect(MinHealthy.percent(100).required(of: 4) == 4)
    #expect(MinHealthy.count(2).required(of: 4) == 2)
}
