import Foundation
import Testing
import TestSupport

/// Issue 17: `meridian drill --mode health`, the automatic path: the server fails the
/// datacenter's probes, the check goes down through its own fall count, the answers move.
@Suite("drill of the automatic path", .serialized)
struct HealthDrillTests {
    static func run(_ setup: DrillSetup, extra: [String] = []) async throws -> (CommandOutput, [String: Any]) {
        let r = try await MeridianProcess.run(["drill", "--down", "iad", "--mode", "health", "--config", setup.config, "--json",
                                               "--vantage", "10.1.0.0/16", "--timeout", "15s"] + extra, timeout: .seconds(90))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.combined)")
        return (r, json)
    }

    @Test func probesFailCheckGoesDownThroughFallAnswersMoveAndComeBack() async throws {
        let backend = try KeepingBackend(http: false)
        defer { backend.kill() }
        // interval 500ms x fall 3 + timeout 300ms: a budget of 1.8 s; rise 2 to come back.
        let setup = try DrillSetup(rto: "30s", ttl: 2, iadCheck: "{ type: tcp, host: 127.0.0.1, port: \(backend.port), interval: 500ms, timeout: 300ms, fall: 3, rise: 2 }")
        try await setup.withServer { server in
            let (r, json) = try await Self.run(setup)
            #expect(r.status == 0, "drill failed:\n\(r.combined)\nserver log:\n\(server.logText)")
            #expect(json["mode"] as? String == "health")
            let pairs = (json["pairs"] as? [[String: Any]] ?? []).filter { $0["in_datacenter_before"] as? Bool == true }
            // www from east and api: both pointed into iad.
            #expect(pairs.count == 2, "\(json)")
            for p in pairs {
                let first = try #require(p["first_failed_probe_s"] as? Double, "\(p)")
                let down = try #require(p["down_s"] as? Double, "\(p)")
                let moved = try #require(p["moved_in_s"] as? Double, "\(p)")
                // The first failed probe comes within one interval; fall 3 needs two more
                // intervals; the answers move after the check went down.
                #expect(first <= 0.8, "\(p)")
                #expect(down - first >= 0.9 && down - first <= 1.6, "two intervals of 500ms from the first failed probe to down: \(p)")
                #expect(moved >= down - 0.05 && moved <= down + 0.5, "\(p)")
                #expect(p["budget_detection_s"] as? Double == 1.8, "\(p)")
                #expect(p["verdict"] as? String == "ok" && p["returned_in_s"] is Double, "\(p)")
            }
            #expect(json["restored"] as? Bool == true && json["returned"] as? Bool == true)
            // The server's log shows the check going down through its fall count, then back up.
            #expect(server.logText.contains("failed by meridian drill --mode health"), "\(server.logText)")
            #expect(server.logText.contains("health drill of iad ended"), "\(server.logText)")
            // The status page's timeline shows the check going down and coming back.
            let page = try HTTP.request("GET", port: setup.controlPort, path: "/").text
            #expect(page.contains("<td>check probe (endpoints iad-1)</td><td class=\"down\">up -&gt; down</td>"), "\(page)")
            #expect(page.contains("<td>check probe (endpoints iad-1)</td><td class=\"up\">down -&gt; up</td>"), "\(page)")
            // The table form names the phases.
            let text = try await MeridianProcess.run(["drill", "--down", "iad", "--mode", "health", "--config", setup.config,
                                                      "--vantage", "10.1.0.0/16", "--timeout", "15s"], timeout: .seconds(90))
            print(text.stdout)
            #expect(text.status == 0 && text.stdout.contains("1ST FAILED") && text.stdout.contains("restored: probes of iad run for real again"), "\(text.combined)")
        }
    }

    /// TTL 5 s against an rto of 2 s (not enforced at load, so the server starts): every
    /// affected answer misses, dominated by the TTL. Each form on a fresh server: after a
    /// drill the answers carry the shorter TTL of a check that just flapped.
    static func missSetup(_ backend: KeepingBackend) throws -> DrillSetup {
        try DrillSetup(rto: "{ target: 2s, enforce: false }", ttl: 5,
                       iadCheck: "{ type: tcp, host: 127.0.0.1, port: \(backend.port), interval: 500ms, timeout: 300ms, fall: 2, rise: 1 }")
    }

    @Test func aMissExitsNonZeroAndNamesTheDominatingParts() async throws {
        let backend = try KeepingBackend(http: false)
        defer { backend.kill() }
        let setup = try Self.missSetup(backend)
        try await setup.withServer { _ in
            let text = try await MeridianProcess.run(["drill", "--down", "iad", "--mode", "health", "--config", setup.config,
                                                      "--vantage", "10.1.0.0/16", "--timeout", "15s"], timeout: .seconds(90))
            print(text.stdout)
            #expect(text.status == 1, "\(text.combined)")
            #expect(text.stdout.contains("miss: api.drill.test. from 10.1.0.0/16: EXCEEDS RTO: worst case"), "\(text.stdout)")
            #expect(text.stdout.contains("dominated by TTL 5s"), "\(text.stdout)")
            #expect(text.stdout.contains("restored: probes of iad run for real again, answers back in iad"), "\(text.stdout)")
        }
        let again = try Self.missSetup(backend)
        try await again.withServer { _ in
            let (r, json) = try await Self.run(again)
            #expect(r.status == 1)
            let missed = (json["pairs"] as? [[String: Any]] ?? []).filter { $0["passed"] as? Bool == false }
            #expect(missed.count == 2 && missed.allSatisfy { ($0["dominating"] as? [String])?.first == "TTL" }, "\(json)")
        }
    }

    @Test func refusedWhenTheDatacenterHasNoProbedCheck() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { _ in
            let (r, json) = try await Self.run(setup)
            #expect(r.status == 1)
            #expect((json["errors"] as? [String])?.contains { $0.contains("no endpoint of iad has a health check") } == true, "\(json)")
            #expect(json["forced"] as? Bool == false)
        }
    }
}
