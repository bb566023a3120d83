import DNSWire
import Foundation
import Testing
import TestSupport

/// Issue 17: decision counters per policy node. Queries that take different branches of a
/// name's policy move the counter of that branch (`node` label: the path from the policy's
/// root) and datacenter, on the real binary's /metrics.
@Suite("Decision metrics per policy node", .serialized)
struct DecisionMetricsTests {
    @Test func branchesTakenMoveTheirOwnCounters() async throws {
        let control = try freePort()
        let dir = try gslbFixtureCopy(server: "  control: \"127.0.0.1:\(control)\"\n")
        defer { dir.remove() }
        try await withGSLB(config: dir.path + "/meridian.yaml") { s in
            func metrics() throws -> PromText {
                let p = PromText(try HTTP.request("GET", port: control, path: "/metrics").text)
                #expect(p.errors.isEmpty, "\(p.errors)")
                return p
            }
            func count(_ name: String, _ node: String, _ dc: String, _ p: PromText) -> Double {
                p.value("meridian_gslb_policy_decisions_total", ["name": name, "node": node, "datacenter": dc])
            }
            let before = try metrics()
            // GB clients take the GB branch (three times: the second and third come from the
            // decision cache), SE clients the SE branch, a client without ECS the default.
            for _ in 0..<3 { _ = try await Dig.query("geo.gslb.test", "A", port: s.port, options: ["+subnet=81.2.69.142/32"]) }
            for _ in 0..<2 { _ = try await Dig.query("geo.gslb.test", "A", port: s.port, options: ["+subnet=89.160.20.112/32"]) }
            _ = try await Dig.query("geo.gslb.test", "A", port: s.port)
            _ = try await Dig.query("fo.gslb.test", "A", port: s.port)
            let after = try metrics()
            let text = try HTTP.request("GET", port: control, path: "/metrics").text
            let lines = text.split(separator: "\n").filter { $0.hasPrefix("meridian_gslb_policy_decisions_total") }
            print(lines.joined(separator: "\n"))
            let cases: [(String, String, String, Double)] = [
                ("geo.gslb.test.", "geo:GB/pool:lon", "lon", 3),
                ("geo.gslb.test.", "geo:SE/pool:sto", "sto", 2),
                ("geo.gslb.test.", "geo:default/pool:fra", "fra", 1),
                ("fo.gslb.test.", "failover:0/pool:lon-1", "lon", 1),
            ]
            for (name, node, dc, n) in cases {
                #expect(count(name, node, dc, after) - count(name, node, dc, before) == n, "\(name) \(node) \(dc):\n\(lines.joined(separator: "\n"))")
            }
            // No query took the failover's second choice or another datacenter of that branch.
            #expect(count("fo.gslb.test.", "failover:1/pool:iad-1", "iad", after) == 0)
            #expect(count("geo.gslb.test.", "geo:GB/pool:lon", "fra", after) == 0)
            // ECS scopes served: 3 at /31 (GB), 2 at /28 (SE); the query without ECS is not counted.
            func scope(_ le: String, _ p: PromText) -> Double { p.value("meridian_dns_ecs_scope_prefix_length_bucket", ["le": le]) }
            #expect(scope("24", after) - scope("24", before) == 0)
            #expect(scope("28", after) - scope("28", before) == 2)
            #expect(scope("32", after) - scope("32", before) == 5)
            #expect(scope("+Inf", after) - scope("+Inf", before) == 5)
            #expect(after.value("meridian_dns_ecs_scope_prefix_length_sum") - before.value("meridian_dns_ecs_scope_prefix_length_sum") == 3 * 31 + 2 * 28)
            #expect(after.types["meridian_dns_ecs_scope_prefix_length"] == "histogram")
            // The per-name counters stay as they were (names kept stable).
            #expect(after.value("meridian_gslb_decisions_total", ["name": "geo.gslb.test.", "datacenter": "lon"])
                    - before.value("meridian_gslb_decisions_total", ["name": "geo.gslb.test.", "datacenter": "lon"]) == 3)
        }
    }
}
