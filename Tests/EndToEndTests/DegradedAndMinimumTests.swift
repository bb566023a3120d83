import DNSWire
import Foundation
import Testing
import TestSupport

/// Issue 12: degraded state moves a failover answer in every policy kind (here through a
/// `degraded:0.5` override), and `min_healthy` makes a datacenter count as down before its
/// last endpoint fails.
@Suite("Degraded and min_healthy end to end", .serialized)
struct DegradedAndMinimumTests {
    /// `www: failover [ams, iad]`: a degraded ams (and iad up) moves the answer to iad at once,
    /// explain says why, and clearing the override brings it back.
    @Test func degradedOverrideMovesAFailoverAnswer() async throws {
        try await withControl { s in
            #expect(try await s.answer() == ["192.0.2.10"])
            let set = try s.http("POST", "/override", json: #"{"target": "dc:ams", "state": "degraded:0.5", "reason": "slow disks"}"#)
            #expect(set.status == 200, "\(set.text)")
            #expect(try await s.answer() == ["198.51.100.10"], "a degraded first choice must give way to a fully-up one")
            let explain = try s.http("GET", "/explain?name=www.ctl.test&type=A&client=192.0.2.99")
            #expect(explain.text.contains("failover: pool ams is only degraded, trying fully-up choices first"), "\(explain.text)")
            // With iad down too, the degraded ams is still better than nothing.
            #expect(try s.http("POST", "/override", json: #"{"target": "dc:iad", "state": "down", "reason": "maintenance"}"#).status == 200)
            #expect(try await s.answer() == ["192.0.2.10"])
            #expect(try s.http("DELETE", "/override?target=dc:iad").status == 200)
            #expect(try s.http("DELETE", "/override?target=dc:ams").status == 200)
            #expect(try await s.answer() == ["192.0.2.10"])
        }
    }

    /// Four real TCP backends in ams with `min_healthy: 2`, failover to iad: closing one
    /// keeps ams (3 healthy), closing three moves the answer to iad within the check bound
    /// (interval x fall + timeout + 1 s); `/explain`, `/status` and `meridian status` show the rule.
    @Test func datacenterBelowMinHealthyFailsOver() async throws {
        var backends: [Backend] = []
        for _ in 0..<4 { backends.append(try Backend(port: try freePort())) }
        defer { for b in backends { b.stop() } }
        let interval = 0.5, timeout = 0.5, fall = 2
        let ams = (1...4).map { "192.0.2.\($0)" }
        try await withControl(config: { control in
            var y = """
                server: { control: "\(control)" }
                defaults: { ttl: 1 }
                zones:
                  ctl.test:
                    file: ctl.test.zone
                    names:
                      www: { policy: { failover: [ams, iad] } }
                datacenters:
                  ams: { lat: 52.37, lon: 4.90, min_healthy: 2 }
                  iad: { lat: 38.95, lon: -77.45 }
                checks:
                  defaults: { interval: \(Int(interval * 1000))ms, timeout: \(Int(timeout * 1000))ms, rise: 2, fall: \(fall) }

                """
            for (i, b) in backends.enumerated() { y += "  be\(i + 1): { type: tcp, host: 127.0.0.1, port: \(b.port) }\n" }
            y += "endpoints:\n"
            for i in 1...4 { y += "  ams-\(i): { v4: 192.0.2.\(i), dc: ams, check: be\(i) }\n" }
            y += "  iad-1: { v4: 198.51.100.10, dc: iad }\n"
            return y
        }) { s in
            #expect(try await s.answer() == ams)
            backends[0].stop()
            let bound = interval * Double(fall) + timeout + 1
            let one = await secondsUntil(limit: bound + 5) { (try? await s.answer()) == Array(ams.dropFirst()) }
            #expect(one != nil, "3 of 4 healthy is above min_healthy 2: ams keeps answering; log:\n\(s.dns.logText)")
            backends[1].stop(); backends[2].stop()
            let moved = await secondsUntil(limit: bound + 5) { (try? await s.answer()) == ["198.51.100.10"] }
            print("min_healthy: answer moved to iad \(moved.map { String(format: "%.2f", $0) } ?? "never") s after 3 of 4 closed (bound \(bound) s)")
            #expect(moved != nil && moved! <= bound, "log:\n\(s.dns.logText)")

            let explain = try s.http("GET", "/explain?name=www.ctl.test&type=A&client=192.0.2.99")
            #expect(explain.text.contains("pool ams: 1 of 4 healthy, below min_healthy 2: counts as down"), "\(explain.text)")
            let status = try JSONSerialization.jsonObject(with: Data(try s.http("GET", "/status").body)) as? [String: Any]
            let minimums = try #require(status?["minimums"] as? [[String: Any]])
            #expect(minimums.count == 1)
            #expect(minimums.first?["name"] as? String == "ams" && minimums.first?["healthy"] as? Int == 1
                    && minimums.first?["counts_as_down"] as? Bool == true, "\(minimums)")
            let table = try await MeridianProcess.run(["status", "--control", "http://127.0.0.1:\(s.control)"])
            #expect(table.stdout.contains("datacenter ams: 1 of 4 healthy, below min_healthy 2: counts as down"), "\(table.stdout)\(table.stderr)")
            print(explain.text)
            print(table.stdout)
        }
    }

    /// `check` and `serve` refuse a min_healthy out of range at the same line and column:
    /// a pool's count above its members, a datacenter's above its endpoints, a bad percentage.
    @Test(arguments: [
        ("  web: { members: [a, b], min_healthy: 3 }", "  ams: { lat: 52.37, lon: 4.90 }", 10, 40,
         "pool web: min_healthy 3 out of range 1...2 (it has 2 members)"),
        ("  web: { members: [a, b], min_healthy: 0% }", "  ams: { lat: 52.37, lon: 4.90 }", 10, 40,
         "pool web: min_healthy \"0%\" is not a percentage 1%...100%"),
        ("  web: [a, b]", "  ams: { lat: 52.37, lon: 4.90, min_healthy: 2 }", 12, 46,
         "datacenter ams: min_healthy 2 out of range 1...1 (it has 1 endpoint)"),
    ] as [(String, String, Int, Int, String)])
    func checkAndServeRefuseAnOutOfRangeMinHealthy(_ pool: String, _ dc: String, _ line: Int, _ column: Int, _ message: String) async throws {
        let dir = try ControlFixture.folder("""
            zones:
              ctl.test:
                file: ctl.test.zone
                names:
                  www: { policy: web }
            endpoints:
              a: { v4: 192.0.2.1, dc: ams }
              b: { v4: 192.0.2.2 }
            pools:
            \(pool)
            datacenters:
            \(dc)
            """)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("meridian.yaml").path
        try await CheckAgreesWithServeTests.expectBothRefuse(path: path, location: "\(path):\(line):\(column): \(message)", why: message)
    }
}
