import Foundation
import Glibc
import Testing
import TestSupport

/// Files that change, block or explode under the loaders: a MaxMind database overwritten
/// while serving, FIFOs where files are expected, YAML alias bombs, runaway zone input.
/// Each runs the real binary (`serve` with SIGHUP, or `check`).
@Suite("Hostile input files", .serialized)
struct HostileFileTests {
    static let geoDatabase = "/work/shared/geoip/GeoIP2-City-Test.mmdb"

    /// A private copy of the GSLB fixture whose config reads `geo.mmdb` (a copy of
    /// MaxMind's test database) next to it, so a test may truncate or replace it.
    func gslbFolder() throws -> TemporaryZoneFolder {
        let folder = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        try FileManager.default.copyItem(atPath: Self.geoDatabase, toPath: folder.path + "/geo.mmdb")
        let yaml = try folder.read("meridian.yaml")
        try folder.write("meridian.yaml", contents: yaml.replacingOccurrences(of: "../../../../../shared/geoip/GeoIP2-City-Test.mmdb", with: "geo.mmdb"))
        return folder
    }

    func geoAnswer(_ server: MeridianProcess, _ subnet: String) async throws -> [String] {
        try await Dig.query("geo.gslb.test", "A", port: server.port, options: ["+subnet=\(subnet)"]).answer.map(\.rdata).sorted()
    }

    /// Asserts that a running server still answers as before after a bad reload, and
    /// that it still stops cleanly on SIGTERM.
    func expectKeepsServing(_ server: MeridianProcess, _ why: String) async throws {
        #expect(server.isRunning, "\(why): server died; log:\n\(server.logText)")
        #expect(try await geoAnswer(server, "81.2.69.142/32") == ["192.0.2.1"], "\(why): log:\n\(server.logText)")
    }

    // MARK: item 1: the GeoIP database changed under the server

    static let geoDatabaseExists = FileManager.default.fileExists(atPath: geoDatabase)

    /// Before the fix the database was mapped shared from the file itself: truncating it
    /// killed the server with SIGBUS at the next lookup that missed the decision cache.
    @Test(.enabled(if: geoDatabaseExists, "needs \(geoDatabase)"))
    func truncatedGeoDatabaseDoesNotAffectTheRunningServer() async throws {
        let folder = try gslbFolder()
        defer { folder.remove() }
        try await withGSLB(config: folder.path + "/meridian.yaml") { server in
            #expect(try await geoAnswer(server, "89.160.20.112/32") == ["192.0.2.2"])
            #expect(truncate(folder.path + "/geo.mmdb", 0) == 0)
            // Fresh client networks each time, so every query misses the decision cache and
            // reads the database.
            for i in 0..<12 {
                #expect(try await geoAnswer(server, "81.2.69.\(142 + i % 2)/32") == ["192.0.2.1"], "log:\n\(server.logText)")
                #expect(try await geoAnswer(server, "89.160.20.\(112 + i)/32") == ["192.0.2.2"], "log:\n\(server.logText)")
                #expect(try await geoAnswer(server, "216.160.83.\(56 + i % 8)/32") == ["198.51.100.1"])
                #expect(try await geoAnswer(server, "10.\(i).0.0/16") == ["192.0.2.3"])
            }
            // Replacing it in place with other bytes changes nothing either.
            try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: folder.path + "/geo.mmdb"))
            #expect(try await geoAnswer(server, "89.160.20.120/32") == ["192.0.2.2"])
            #expect(try await geoAnswer(server, "11.0.0.0/8") == ["192.0.2.3"])
            // A reload now fails cleanly and keeps the old config.
            #expect(truncate(folder.path + "/geo.mmdb", 0) == 0)
            server.signal(SIGHUP)
            #expect(await eventually { server.logText.contains("reload failed") }, "log:\n\(server.logText)")
            #expect(server.logText.contains("geo.mmdb"), "the error names the file; log:\n\(server.logText)")
            try await expectKeepsServing(server, "after a reload with a truncated database")
            #expect(try await geoAnswer(server, "89.160.20.125/32") == ["192.0.2.2"])
        }
    }

    // MARK: item 2: FIFOs where files are expected

    static func mkfifoOrThrow(_ path: String) throws {
        guard mkfifo(path, 0o600) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    struct FIFOCase: Sendable, CustomStringConvertible {
        var description: String
        /// Places the FIFO in the zones folder (and `outside`, a folder outside it).
        var arrange: @Sendable (_ zones: String, _ outside: String) throws -> Void
        /// Text the error must contain.
        var expected: String
    }

    static let fifoCases: [FIFOCase] = [
        FIFOCase(description: "a zone file that is a FIFO", arrange: { zones, _ in
            try mkfifoOrThrow(zones + "/fifo.test.zone")
        }, expected: "fifo.test.zone:0:0: cannot read zone file"),
        FIFOCase(description: "an $INCLUDE of a FIFO", arrange: { zones, _ in
            try mkfifoOrThrow(zones + "/hosts.inc")
            try "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n$INCLUDE hosts.inc\n"
                .write(toFile: zones + "/inc.test.zone", atomically: true, encoding: .utf8)
        }, expected: "inc.test.zone:5:10: cannot read $INCLUDE file \"hosts.inc\": not a regular file (a FIFO)"),
        FIFOCase(description: "a symbolic link in the zones folder to a FIFO outside it", arrange: { zones, outside in
            try mkfifoOrThrow(outside + "/elsewhere")
            try FileManager.default.createSymbolicLink(atPath: zones + "/link.inc", withDestinationPath: outside + "/elsewhere")
            try "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n$INCLUDE link.inc\n"
                .write(toFile: zones + "/link.test.zone", atomically: true, encoding: .utf8)
        }, expected: "link.test.zone:5:10: $INCLUDE file \"link.inc\" is outside the zones folder (through a symbolic link)"),
    ]

    /// A copy of the zones fixture and an empty folder outside it, removed after `body`.
    func withFolders(_ body: (_ zones: String, _ outside: String) async throws -> Void) async throws {
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        let outside = try makeTemporaryDirectory(prefix: "meridian-outside")
        defer { try? FileManager.default.removeItem(at: outside) }
        try await body(folder.path, outside.path)
    }

    /// Before the fix `check` blocked for ever in open(2) on the FIFO.
    @Test(arguments: fifoCases)
    func checkRefusesAFIFOPromptly(_ c: FIFOCase) async throws {
        try await withFolders { zones, outside in
            try c.arrange(zones, outside)
            let started = Date()
            let out = try await MeridianProcess.run(["check", "--zones", zones], timeout: .seconds(20))
            #expect(!out.timedOut, "check hung: \(out)")
            #expect(Date().timeIntervalSince(started) < 10)
            #expect(out.status != 0, "\(out)")
            #expect(out.combined.contains(c.expected), "\(out)")
        }
    }

    /// Before the fix the reload thread blocked for ever in open(2): no later reload and no
    /// clean shutdown.
    @Test(arguments: fifoCases)
    func reloadRefusesAFIFOAndKeepsServing(_ c: FIFOCase) async throws {
        try await withFolders { zones, outside in
            let server = try await MeridianProcess.serve(zones: zones)
            try c.arrange(zones, outside)
            server.signal(SIGHUP)
            #expect(await eventually { server.logText.contains("reload failed") }, "log:\n\(server.logText)")
            #expect(server.logText.contains(c.expected), "log:\n\(server.logText)")
            let r = try await Dig.query("www.example.com", "A", port: server.port)
            #expect(r.answer.map(\.rdata).sorted() == ["192.0.2.10", "192.0.2.11"], "old zones keep serving: \(r.raw)")
            let status = await server.stop(grace: .seconds(5))
            #expect(status == 0, "SIGTERM after the bad reload: exit \(status); log:\n\(server.logText)")
        }
    }

    @Test(.enabled(if: geoDatabaseExists, "needs \(geoDatabase)"))
    func geoDatabaseThatIsAFIFOIsRefused() async throws {
        let folder = try gslbFolder()
        defer { folder.remove() }
        let server = try await startGSLB(config: folder.path + "/meridian.yaml")
        try FileManager.default.removeItem(atPath: folder.path + "/geo.mmdb")
        try Self.mkfifoOrThrow(folder.path + "/geo.mmdb")
        let out = try await MeridianProcess.run(["check", "--config", folder.path + "/meridian.yaml"], timeout: .seconds(20))
        #expect(!out.timedOut && out.status != 0, "\(out)")
        #expect(out.combined.contains("geo.database: cannot read MaxMind database (not a regular file (a FIFO))"), "\(out)")
        server.signal(SIGHUP)
        #expect(await eventually { server.logText.contains("reload failed") }, "log:\n\(server.logText)")
        try await expectKeepsServing(server, "after a reload with a FIFO database")
        let status = await server.stop(grace: .seconds(5))
        #expect(status == 0, "SIGTERM after the bad reload: exit \(status); log:\n\(server.logText)")
    }

    // MARK: item 3: YAML alias bombs

    /// Anchors a0...a9, each a list of `fan` aliases of the one before, then `*a9` used as
    /// a mapping key. Yams hashed the key's whole expansion to look for duplicate keys: with
    /// `fan` 10 (10^10 nodes in under 600 bytes) `check` spun for over ten minutes.
    static func aliasKeyBomb(fan: Int) -> String {
        var lines = ["a0: &a0 [" + Array(repeating: "x", count: fan).joined(separator: ", ") + "]"]
        for i in 1..<10 { lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: fan).joined(separator: ", ") + "]") }
        return lines.joined(separator: "\n") + "\n? *a9\n: v\n"
    }

    /// A valid-looking config whose GSLB policies nest aliases four wide, twelve deep:
    /// about 4^11 policy nodes from 900 bytes, which the loader walked one by one.
    static var policyBomb: String {
        var s = "zones:\n  gslb.test:\n    file: gslb.test.zone\n    names:\n      n0:\n        policy: &p0 { failover: [a, b] }\n"
        for i in 1..<12 {
            s += "      n\(i):\n        policy: &p\(i) { failover: [" + Array(repeating: "*p\(i - 1)", count: 4).joined(separator: ", ") + "] }\n"
        }
        return s + "endpoints:\n  a: { v4: 192.0.2.1 }\n  b: { v4: 192.0.2.2 }\n"
    }

    /// (what, file text, expected error); reported by `what` only.
    static let bombs: [(String, String, String)] = [
        ("alias as a mapping key", aliasKeyBomb(fan: 2), ":11:3: mapping keys must be plain text, found an alias"),
        ("ten-fold anchors with an alias key", aliasKeyBomb(fan: 10), ":6:20: more than 250000 YAML nodes after expanding aliases"),
        ("policy tree of aliases", policyBomb, "more than 250000 YAML nodes after expanding aliases"),
    ]

    @Test(arguments: bombs)
    func checkRefusesAnAliasBombPromptly(_ what: String, _ yaml: String, _ expected: String) async throws {
        let folder = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { folder.remove() }
        try folder.write("bomb.yaml", contents: yaml)
        let started = Date()
        let out = try await MeridianProcess.run(["check", "--config", folder.path + "/bomb.yaml"], timeout: .seconds(20))
        #expect(!out.timedOut, "\(what): check still running after 20 s")
        #expect(Date().timeIntervalSince(started) < 5, "\(what)")
        #expect(out.status != 0 && out.combined.contains("bomb.yaml:"), "\(what): \(out)")
        #expect(out.combined.contains(expected), "\(what): \(out)")
    }

    @Test(.enabled(if: geoDatabaseExists, "needs \(geoDatabase)"), arguments: bombs)
    func reloadRefusesAnAliasBombAndKeepsServing(_ what: String, _ yaml: String, _ expected: String) async throws {
        let folder = try gslbFolder()
        defer { folder.remove() }
        try await withGSLB(config: folder.path + "/meridian.yaml") { server in
            try folder.write("meridian.yaml", contents: yaml)
            server.signal(SIGHUP)
            #expect(await eventually(20) { server.logText.contains("reload failed") }, "\(what): log:\n\(server.logText)")
            #expect(server.logText.contains(expected), "\(what): log:\n\(server.logText)")
            try await expectKeepsServing(server, what)
            let rss = try #require(residentKiB(server))
            #expect(rss < 200 * 1024, "\(what): the server holds \(rss) KiB after the refused reload")
        }
    }

    // MARK: item 4: runaway zone input

    /// 8 MB of "(" in one record: before, `check` took 8.2 s and 806 MB and printed 4.19
    /// million error lines under a "stopped after 1000" message.
    @Test func checkOnEightMegabytesOfParenthesesIsFastAndCapped() async throws {
        let folder = try makeTemporaryDirectory(prefix: "meridian-parens")
        defer { try? FileManager.default.removeItem(at: folder) }
        let text = "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\nx TXT " + String(repeating: "(", count: 8 << 20) + "\n"
        try text.write(to: folder.appendingPathComponent("paren.test.zone"), atomically: true, encoding: .utf8)
        let started = Date()
        let out = try await MeridianProcess.run(["check", "--zones", folder.path], timeout: .seconds(30))
        let seconds = Date().timeIntervalSince(started)
        #expect(!out.timedOut && out.status != 0, "\(out.stderr.prefix(500))")
        #expect(seconds < 4, "check took \(seconds) s")
        let lines = out.combined.split(separator: "\n")
        #expect(lines.count <= 1000 + 3, "\(lines.count) lines of output")
        #expect(out.combined.contains("paren.test.zone:5:8: nested \"(\""), "\(out.stderr.prefix(500))")
        #expect(out.combined.contains("too many errors: stopped after 1000"))
    }
}
