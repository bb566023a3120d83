import Config
import DNSWire
import Foundation
import Routing
import Testing

/// One `explain` call: every policy kind, each trace line (choices, fallthrough, skips,
/// every `when_all_down` mode, location sources). Random choices are forced (one choice
/// left, or one usable member) so the text is the same on every run.
struct ExplainCase: CustomTestStringConvertible, Sendable {
    var policy: String
    var extra = ""
    var geo = ""
    var qtype: RRType = .a
    var client = "203.0.113.9"
    var ecs: String? = nil
    var down: [String] = []
    var degraded: [String: Double] = [:]
    var preamble = basePreamble
    var testDescription: String { "\(policy) \(extra) \(qtype) \(client) ecs=\(ecs ?? "-") down=\(down)" }
}

let asnGeo = cityGeo + "  asn_database: \(Paths.asn)\n"
let cidrGeo = cityGeo + "  cidr:\n    81.2.69.128/25: iad\n    81.2.69.0/24: office\n    10.9.0.0/16: \"10.5,20.25\"\n"

let explainCases: [ExplainCase] = [
    ExplainCase(policy: "web"),
    ExplainCase(policy: "web", qtype: .aaaa, down: ["ams-1"]),
    ExplainCase(policy: "web", down: ["ams-1", "ams-2", "iad-1"]),
    ExplainCase(policy: "web", extra: "types: [A]", qtype: .aaaa),
    ExplainCase(policy: "v4only", qtype: .aaaa),
    ExplainCase(policy: "cdn"),
    ExplainCase(policy: "{ failover: [v4only, ams] }", qtype: .aaaa),
    ExplainCase(policy: "{ multivalue: web, n: 2 }", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ multivalue: ams-1 }", down: ["ams-1"]),
    ExplainCase(policy: "{ failover: [ams, iad] }", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ failover: [ams, iad] }", down: ["ams-1", "ams-2", "iad-1", "iad-2"]),
    ExplainCase(policy: "{ failover: [ams, iad], when_all_down: nodata }", down: ["ams-1", "ams-2", "iad-1", "iad-2"]),
    ExplainCase(policy: "{ failover: [ams, iad] }", extra: "when_all_down: fallback\nfallback: [192.0.2.250, \"2001:db8::250\"]",
                down: ["ams-1", "ams-2", "iad-1", "iad-2"]),
    ExplainCase(policy: "{ failover: [ams], when_all_down: fallback, fallback: [sorry.example.net] }", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ failover: [ { failover: [ams-1], when_all_down: parent }, iad ] }", down: ["ams-1"]),
    ExplainCase(policy: "{ failover: [ { failover: [ams-1], when_all_down: open }, iad ] }", down: ["ams-1"]),
    ExplainCase(policy: "{ weighted: { ams: 1, iad: 1 } }", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ weighted: { ams: 2, iad: 0 } }", degraded: ["ams-1": 0.5, "ams-2": 0.25]),
    ExplainCase(policy: "{ weighted: { ams: 1, iad: 0 } }", down: ["ams-1", "ams-2", "iad-1", "iad-2"]),
    ExplainCase(policy: "{ geo: { EU: { failover: [ams, iad] }, default: iad } }", geo: cityGeo, client: "81.2.69.142"),
    ExplainCase(policy: "{ geo: { EU: ams, default: iad } }", geo: cityGeo, client: "81.2.69.142", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ geo: { EU: ams, default: iad } }", geo: cityGeo, client: "203.0.113.9"),
    ExplainCase(policy: "{ geo: { EU: ams, GB: iad, GB-ENG: sin, default: iad } }", geo: cityGeo, client: "81.2.69.142"),
    ExplainCase(policy: "{ geo: { EU: ams, NA: iad } }", geo: cityGeo, client: "203.0.113.9"),
    ExplainCase(policy: "{ geo: { AS1221: sin, EU: ams, default: iad } }", geo: asnGeo, client: "1.128.0.1"),
    ExplainCase(policy: "{ geo: { office: sin, iad: iad, default: ams } }", geo: cidrGeo, client: "81.2.69.10"),
    ExplainCase(policy: "{ geo: { office: sin, iad: iad, default: ams } }", geo: cidrGeo, client: "81.2.69.200"),
    ExplainCase(policy: "{ geo: { EU: ams, default: iad } }", client: "81.2.69.142"),
    ExplainCase(policy: "{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: iad, default: sin } }", client: "10.1.2.3"),
    ExplainCase(policy: "{ subnet: { 10.0.0.0/8: ams, 10.1.0.0/16: iad, default: sin } }", client: "10.1.2.3",
                down: ["iad-1", "iad-2"]),
    ExplainCase(policy: "{ subnet: { 10.0.0.0/8: ams, default: sin } }", client: "11.0.0.1"),
    ExplainCase(policy: "{ subnet: { 10.0.0.0/8: ams } }", qtype: .aaaa, client: "2001:db8::5"),
    ExplainCase(policy: "{ subnet: { 10.0.0.0/8: ams, 2001:db8::/32: iad } }", qtype: .aaaa, client: "192.0.2.9",
                ecs: "2001:db8:1::/48"),
    ExplainCase(policy: "{ nearest: [ams, iad, sin] }", geo: cityGeo, client: "81.2.69.142"),
    ExplainCase(policy: "{ nearest: [ams, iad, sin] }", geo: cityGeo, client: "81.2.69.142", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ nearest: [ams, iad, sin], bias: { iad: 9000 }, n: 2 }", geo: cityGeo, client: "81.2.69.142"),
    ExplainCase(policy: "{ nearest: [ams, iad, sin] }", client: "81.2.69.142", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ nearest: [ams, iad] }", geo: cidrGeo, client: "10.9.1.1"),
    ExplainCase(policy: "{ nearest: [ams, iad] }", down: ["ams-1", "ams-2", "iad-1", "iad-2"]),
    ExplainCase(policy: "{ hashed: [ams-1, ams-2, iad-1, iad-2] }", client: "198.51.100.7"),
    ExplainCase(policy: "{ hashed: [ams-1, ams-2, iad-1, iad-2], v4_prefix: 16 }", client: "198.51.100.7", down: ["ams-1", "ams-2"]),
    ExplainCase(policy: "{ hashed: [ams-1, iad-2] }", client: "198.51.100.7", ecs: "198.51.100.0/0"),
    ExplainCase(policy: "{ hashed: [ams-1, iad-2] }", down: ["ams-1", "iad-2"]),
    ExplainCase(policy: "{ geo: { EU: { weighted: { ams: 1, iad: 1 } }, default: { subnet: { 203.0.113.0/24: { hashed: [sin-1, iad-2] } } } } }",
                geo: cityGeo, client: "203.0.113.9", down: ["iad-2"]),
    // Degraded ranks after fully up (issue 12): a pool leaves degraded members out, failover
    // and nearest pass a degraded choice over.
    ExplainCase(policy: "web", degraded: ["ams-1": 0.5]),
    ExplainCase(policy: "{ failover: [ams, iad] }", degraded: ["ams-1": 0.5, "ams-2": 0.5]),
    ExplainCase(policy: "{ failover: [ams, iad] }", down: ["iad-1", "iad-2"], degraded: ["ams-1": 0.5, "ams-2": 0.5]),
    ExplainCase(policy: "{ nearest: [ams, iad, sin] }", geo: cityGeo, client: "81.2.69.142", degraded: ["ams-1": 0.5, "ams-2": 0.5]),
    // min_healthy: below it a pool counts as down; above it the answer says how many are healthy.
    ExplainCase(policy: "{ failover: [strict, iad] }", down: ["ams-1"], preamble: minimumPreamble),
    ExplainCase(policy: "{ failover: [half, sin] }", down: ["ams-1"], preamble: minimumPreamble),
    ExplainCase(policy: "{ failover: [iad, ams] }", down: ["iad-2"], preamble: minimumPreamble),
]

/// The full `explain` text of each case, one golden per case in ExplainGolden.swift.
/// Regenerate with MERIDIAN_UPDATE_GOLDEN=1 (rewrites that file; review the diff).
func explainText(_ c: ExplainCase) throws -> String {
    let r = try makeRouter(c.policy, nameExtra: c.extra, geo: c.geo, preamble: c.preamble)
    var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
    for d in c.down { states[r.model.endpointIndex(named: d)!] = .down }
    for (d, f) in c.degraded { states[r.model.endpointIndex(named: d)!] = .degraded(factor: f) }
    return r.explain(name: try DNSName("t.example.com."), qtype: c.qtype, client: IPAddress(c.client)!,
                     ecs: c.ecs.flatMap { IPPrefix($0) }, health: HealthSnapshot(states: states))
}

@Test func explainTextMatchesGolden() throws {
    let texts = try explainCases.map(explainText)
    if ProcessInfo.processInfo.environment["MERIDIAN_UPDATE_GOLDEN"] == "1" {
        var out = "// Generated by ExplainTraceTests (MERIDIAN_UPDATE_GOLDEN=1): the explain text of each explainCases entry.\n"
        out += "let explainGolden: [String] = [\n"
        for t in texts { out += "    #\"\"\"\n" + t + "\n\"\"\"#,\n" }  // a literal drops its last newline
        out += "]\n"
        try out.write(toFile: Paths.here.path + "/ExplainGolden.swift", atomically: true, encoding: .utf8)
        return
    }
    #expect(texts.count == explainGolden.count)
    for (i, (t, g)) in zip(texts, explainGolden).enumerated() {
        #expect(t == g, "case \(i): \(explainCases[i].testDescription)\n\(t)")
    }
}
