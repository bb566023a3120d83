import Foundation
import Glibc
import Testing
import TestSupport

/// Issue 12, items 5 and 6, through the real binary and dig: answers for a name carry
/// `ttl_when_failing` while an endpoint under it is failing (before `fall` is reached) or has
/// just changed state, and a config whose failover budget exceeds an enforced `rto` is
/// refused by `check`, `serve` and a reload alike.
@Suite("health-derived TTL and rto enforcement", .serialized)
struct HealthTTLTests {
    /// `fo` fails over from `primary` (watched by a TCP check on `backendPort`: interval 1 s,
    /// fall 5) to `backup`; `one` is `primary` alone with the default `ttl_when_failing`
    /// (its smallest check interval, 1 s); `other` never answers with `primary`.
    static func yaml(backendPort: UInt16, control: UInt16? = nil, rto: String = "60s", primary: String = "192.0.2.1") -> String {
        (control.map { "server: { control: \"127.0.0.1:\($0)\" }\n" } ?? "") + """
        defaults: { ttl: 30 }
        zones:
          gslb.test:
            file: gslb.test.zone
            names:
              fo:
                ttl_when_failing: 2
                rto: \(rto)
                policy: { failover: [primary, backup] }
              one: { policy: primary }
              other: { policy: backup }
        checks:
          web: { type: tcp, host: 127.0.0.1, port: \(backendPort), interval: 1s, timeout: 500ms, rise: 1, fall: 5 }
        endpoints:
          primary: { v4: \(primary), check: web }
          backup: { v4: 192.0.2.2 }

        """
    }

    /// (address, TTL) of the first A record, or nil.
    static func answer(_ name: String, port: UInt16) async -> (String, UInt32)? {
        guard let r = try? await Dig.query(name, "A", port: port), let a = r.answer.first else { return nil }
        return (a.rdata, a.ttl)
    }

    @Test func failingEndpointShortensTheTTLBeforeFallIsReached() async throws {
        let backend = try Backend(port: try freePort())
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove(); backend.stop() }
        try dir.write("meridian.yaml", contents: Self.yaml(backendPort: backend.port))
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            let p = server.port
            #expect(await secondsUntil(limit: 5) { await Self.answer("fo.gslb.test", port: p) ?? ("", 0) == ("192.0.2.1", 30) } != nil,
                    "healthy: primary with the normal TTL; log:\n\(server.logText)")
            #expect(await Self.answer("one.gslb.test", port: p) ?? ("", 0) == ("192.0.2.1", 30))
            print("healthy:\n" + (try await Dig.short("fo.gslb.test", port: p)).joined(separator: "\n"))

            backend.stop()
            // The first failed probe comes within interval + timeout; `fall` (5 probes) is
            // 5 s away, so primary still answers, with the short TTL.
            let shortened = await secondsUntil(limit: 4) { await Self.answer("fo.gslb.test", port: p)?.1 == 2 }
            let during = await Self.answer("fo.gslb.test", port: p)
            print("failing (\(shortened.map { String(format: "%.1f", $0) } ?? "never") s after the backend died):\n"
                  + (try await Dig.short("fo.gslb.test", port: p)).joined(separator: "\n"))
            #expect(shortened != nil && shortened! <= 2.5, "log:\n\(server.logText)")
            #expect(during?.0 == "192.0.2.1", "fall is not reached yet: primary still answers")
            #expect(await Self.answer("one.gslb.test", port: p)?.1 == 1, "default ttl_when_failing: the check interval, 1 s")
            #expect(await Self.answer("other.gslb.test", port: p)?.1 == 30, "a name without the failing endpoint keeps its TTL")

            // Down after fall: backup answers, still short while the change is recent ...
            let moved = await secondsUntil(limit: 8) { await Self.answer("fo.gslb.test", port: p)?.0 == "192.0.2.2" }
            #expect(moved != nil, "log:\n\(server.logText)")
            #expect(await Self.answer("fo.gslb.test", port: p)?.1 == 2, "flapping: changed state within fall x interval")
            // ... and the normal TTL once it has been down for fall x interval.
            let settled = await secondsUntil(limit: 9) { await Self.answer("fo.gslb.test", port: p) ?? ("", 0) == ("192.0.2.2", 30) }
            print("down and settled:\n" + (try await Dig.short("fo.gslb.test", port: p)).joined(separator: "\n"))
            #expect(settled != nil, "log:\n\(server.logText)")
        }
    }

    /// TTL 30 s with interval 1 s, timeout 500 ms and fall 5: an answer given just before the
    /// first failed probe keeps its 30 s in resolvers, so the budget is 1 + 0.5 + 30 = 31.5 s
    /// (not 5 + 0.5 + 2), above the rto of 10 s.
    static let overBudget = "failover time 31.500s exceeds rto 10s; dominated by TTL 30s"

    @Test func checkAndServeRefuseABudgetOverTheRTO() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        let text = Self.yaml(backendPort: 9, rto: "10s")
        try dir.write("meridian.yaml", contents: text)
        let path = dir.path + "/meridian.yaml"
        let line = try #require(text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.hasPrefix("      fo:") }) + 1
        let check = try await MeridianProcess.run(["check", "--config", path])
        print("meridian check (rto 10s):\n\(check.combined)")
        try await CheckAgreesWithServeTests.expectBothRefuse(
            path: path, location: "\(path):\(line):7: fo.gslb.test.: \(Self.overBudget)", why: "budget over rto")
    }

    @Test func theOptOutStartsAndCheckReportsIt() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        try dir.write("meridian.yaml", contents: Self.yaml(backendPort: 9, rto: "{ target: 10s, enforce: false }"))
        let path = dir.path + "/meridian.yaml"
        let check = try await MeridianProcess.run(["check", "--config", path])
        print("meridian check (enforce: false):\n\(check.combined)")
        #expect(check.status == 0, "\(check.combined)")
        #expect(check.stdout.contains("\(Self.overBudget) (accepted: enforce: false)"), "\(check.combined)")
        try await withGSLB(config: path) { server in
            #expect(await Self.answer("other.gslb.test", port: server.port)?.0 == "192.0.2.2")
        }
    }

    /// A SIGHUP with a config over its rto is a failed reload: logged with its location,
    /// counted in /metrics, and the old config keeps answering.
    @Test func reloadOverTheRTOIsRejected() async throws {
        let backend = try Backend(port: try freePort())
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove(); backend.stop() }
        let control = try freePort()
        try dir.write("meridian.yaml", contents: Self.yaml(backendPort: backend.port, control: control))
        let path = dir.path + "/meridian.yaml"
        try await withGSLB(config: path) { server in
            #expect(await secondsUntil(limit: 5) { await Self.answer("fo.gslb.test", port: server.port)?.0 == "192.0.2.1" } != nil)
            func failedReloads() -> Double {
                guard let r = try? HTTP.request("GET", port: control, path: "/metrics") else { return -1 }
                return PromText(r.text).value("meridian_reloads_total", ["result": "failed"])
            }
            #expect(await secondsUntil(limit: 5) { failedReloads() == 0 } != nil, "control API; log:\n\(server.logText)")
            // The new config would also move primary to 192.0.2.9: it must not be served.
            try dir.write("meridian.yaml", contents: Self.yaml(backendPort: backend.port, control: control, rto: "10s", primary: "192.0.2.9"))
            server.signal(SIGHUP)
            #expect(await secondsUntil(limit: 10) { failedReloads() == 1 } != nil, "log:\n\(server.logText)")
            #expect(server.logText.contains("\(path):7:7: fo.gslb.test.: \(Self.overBudget)"), "log:\n\(server.logText)")
            #expect(await Self.answer("fo.gslb.test", port: server.port)?.0 == "192.0.2.1", "the old config keeps answering")
            print("reload log:\n" + server.logText.split(separator: "\n").filter { $0.contains("reload") || $0.contains("rto") }.joined(separator: "\n"))
        }
    }
}
