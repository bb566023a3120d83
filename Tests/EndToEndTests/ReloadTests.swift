import DNSWire
import Foundation
import Glibc
import Testing
import TestSupport

/// SIGHUP reloads (issue 2's snapshot swap, issue 5's reload guarantees) against the real binary.
@Suite("Reload", .serialized)
struct ReloadTests {
    func wwwAddresses(_ port: UInt16) async throws -> Set<String> {
        Set(try await Dig.query("www.example.com", "A", port: port).answer.map(\.rdata))
    }

    @Test func reloadPicksUpAZoneChange() async throws {
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        try await withMeridian(zones: folder.path) { server in
            #expect(try await wwwAddresses(server.port) == ["192.0.2.10", "192.0.2.11"])
            let text = try folder.read("example.com.zone")
            try folder.write("example.com.zone", contents: text.replacingOccurrences(of: "IN A    192.0.2.10\n", with: "IN A    192.0.2.110\n"))
            server.signal(SIGHUP)
            let moved = try await eventually { try await wwwAddresses(server.port) == ["192.0.2.110", "192.0.2.11"] }
            #expect(moved, "log:\n\(server.logText)")
            #expect(server.logText.contains("reload ok"))
        }
    }

    @Test func badReloadKeepsTheOldAnswersAndSaysWhere() async throws {
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        try await withMeridian(zones: folder.path) { server in
            let text = try folder.read("example.com.zone")
            // Line 21 of the fixture is `www IN A 192.0.2.11`: break its address.
            try folder.write("example.com.zone", contents: text.replacingOccurrences(of: "IN A    192.0.2.11\n", with: "IN A    192.0.2.300\n"))
            server.signal(SIGHUP)
            let failed = await eventually { server.logText.contains("reload failed") }
            #expect(failed, "log:\n\(server.logText)")
            #expect(server.logText.contains("example.com.zone:21:"), "the error names file:line:column; log:\n\(server.logText)")
            #expect(try await wwwAddresses(server.port) == ["192.0.2.10", "192.0.2.11"], "the old zone keeps serving")
            // A later good reload still works.
            try folder.write("example.com.zone", contents: text.replacingOccurrences(of: "IN A    192.0.2.11\n", with: "IN A    192.0.2.12\n"))
            server.signal(SIGHUP)
            #expect(try await eventually { try await wwwAddresses(server.port) == ["192.0.2.10", "192.0.2.12"] })
        }
    }

    /// 20 reloads alternating two zone versions while a client sends a bounded stream of
    /// queries: every query is answered, each answer is one of the two versions, and after
    /// the last reload only the final version answers.
    @Test func reloadUnderLoadLosesNothing() async throws {
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        let original = try folder.read("example.com.zone")
        let versionA = original
        let versionB = original.replacingOccurrences(of: "IN A    192.0.2.10\n", with: "IN A    192.0.2.210\n")
        try await withMeridian(zones: folder.path) { server in
            let port = server.port
            let stop = Flag()
            let loader = Task.detached { () -> (sent: Int, answered: Int, wrong: Int) in
                let client = RawDNSClient(host: "127.0.0.1", port: port)
                var sent = 0, answered = 0, wrong = 0
                let name = try! DNSName("www.example.com.")
                // Bounded: at most 20,000 queries and 60 s.
                let deadline = Date().addingTimeInterval(60)
                while sent < 20_000 && Date() < deadline && !stop.isSet {
                    let q = DNSWire.QueryBuilder.query(id: UInt16(truncatingIfNeeded: sent), name: name, type: .a)
                    sent += 1
                    guard let reply = try? client.udpExchange(q, timeout: .seconds(1)),
                          let m = try? Message(decoding: reply) else { continue }
                    answered += 1
                    let addrs = Set(m.answers.compactMap { IPAddress(bytes: $0.rdata)?.description })
                    if addrs != ["192.0.2.10", "192.0.2.11"] && addrs != ["192.0.2.210", "192.0.2.11"] { wrong += 1 }
                }
                return (sent, answered, wrong)
            }
            for i in 0..<20 {
                try folder.write("example.com.zone", contents: i % 2 == 0 ? versionB : versionA)
                server.signal(SIGHUP)
                try await Task.sleep(for: .milliseconds(150))
            }
            // 20 reloads ended on version A; wait for the log to show all of them.
            let all = await eventually(10) { server.logText.components(separatedBy: "reload ok").count - 1 >= 20 }
            stop.set()
            let r = await loader.value
            print("reload under load: \(r.sent) queries sent, \(r.answered) answered, \(r.wrong) wrong, 20 reloads")
            #expect(all, "log:\n\(server.logText)")
            #expect(!server.logText.contains("reload failed"))
            #expect(r.sent > 100)
            #expect(r.answered == r.sent, "every query is answered during reloads")
            #expect(r.wrong == 0)
            #expect(try await wwwAddresses(port) == ["192.0.2.10", "192.0.2.11"])
        }
    }
}

/// A stop flag shared with a detached task.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

/// Issue 5: health state survives a reload that leaves its check unchanged, and a broken
/// YAML keeps the old configuration serving with the error's line:column in the log.
@Suite("Reload with GSLB", .serialized)
struct GSLBReloadTests {
    @Test func healthSurvivesAReloadAndBrokenYAMLKeepsServing() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        // A slow failing check: its first result takes 2 s, so a reload that restarted it
        // from "up" would answer with the primary for those 2 s.
        let yaml = Fixtures.failoverYAML(checkName: "slow",
            checkSpec: "{ type: exec, command: [/bin/sh, -c, \"sleep 2; exit 1\"], interval: 10s, timeout: 5s, fall: 1 }")
        try dir.write("meridian.yaml", contents: yaml)
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            func answer() async throws -> [String] { try await Dig.query("fo.gslb.test", "A", port: server.port).answer.map(\.rdata) }
            // The start-up round waited for the check: the primary is already down.
            #expect(try await answer() == ["192.0.2.2"], "log:\n\(server.logText)")
            server.signal(SIGHUP)
            var reloaded = false
            for _ in 0..<50 where !reloaded {
                try await Task.sleep(for: .milliseconds(50))
                reloaded = server.logText.contains("reload ok")
            }
            #expect(reloaded)
            for _ in 0..<10 {
                #expect(try await answer() == ["192.0.2.2"], "state carried over the reload")
                try await Task.sleep(for: .milliseconds(150))
            }
            // Broken YAML: a tab where YAML wants spaces, on line 2.
            try dir.write("meridian.yaml", contents: yaml.replacingOccurrences(of: "zones:\n  gslb.test:", with: "zones:\n\tgslb.test:"))
            server.signal(SIGHUP)
            var failed = false
            for _ in 0..<50 where !failed {
                try await Task.sleep(for: .milliseconds(50))
                failed = server.logText.contains("reload failed")
            }
            #expect(failed, "log:\n\(server.logText)")
            #expect(server.logText.contains("meridian.yaml:3:"), "the YAML error names its line; log:\n\(server.logText)")
            #expect(try await answer() == ["192.0.2.2"], "the old configuration keeps serving")
        }
    }
}
