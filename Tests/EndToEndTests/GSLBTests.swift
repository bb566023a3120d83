import DNSWire
import Foundation
import Testing
import TestSupport

extension Fixtures {
    /// The start of a config with one failover name, fo.gslb.test (TTL 1), over endpoints
    /// `primary` and `backup`; the caller adds `checks:` and `endpoints:`.
    static let failoverNamePreamble = """
        defaults: { ttl: 1 }
        zones:
          gslb.test:
            file: gslb.test.zone
            names:
              fo: { policy: { failover: [primary, backup] } }

        """

    /// A config for gslb.test with one failover name `fo` (TTL 1): `primary` (192.0.2.1)
    /// watched by the check `checkName` defined as `checkSpec`, then `backup` (192.0.2.2).
    /// `otherChecks` are more lines under `checks:` (`name: spec`).
    static func failoverYAML(checkName: String, checkSpec: String, server: String? = nil,
                             primary: String = "192.0.2.1", otherChecks: [String] = []) -> String {
        (server.map { "server: \($0)\n" } ?? "") + failoverNamePreamble + """
            checks:
              \(checkName): \(checkSpec)\(otherChecks.map { "\n  " + $0 }.joined())
            endpoints:
              primary: { v4: \(primary), check: \(checkName) }
              backup: { v4: 192.0.2.2 }
            """
    }

    /// GSLB names over MaxMind's test database (GeoIP2-City-Test.mmdb in ../shared/geoip).
    static var gslbConfig: String { root.appendingPathComponent("gslb/meridian.yaml").path }
    static var brokenConfigs: URL {
        root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("ConfigTests/Fixtures")
    }
}

/// Starts `meridian serve --config FILE` on a free port for `body`.
func withGSLB(config: String = Fixtures.gslbConfig, _ body: (MeridianProcess) async throws -> Void) async throws {
    let s = try await startGSLB(config: config)
    do { try await body(s) } catch { await s.stop(); throw error }
    #expect(s.isRunning, "meridian died; log:\n\(s.logText)")
    await s.stop()
}

/// `meridian serve --config FILE` on a free port (three tries), ready for gslb.test.
func startGSLB(config: String = Fixtures.gslbConfig) async throws -> MeridianProcess {
    var server: MeridianProcess?
    for _ in 0..<3 where server == nil {
        let port = try freePort()
        server = try? await MeridianProcess.start(["serve", "--config", config, "--listen", "127.0.0.1:\(port)"],
                                                   port: port, probeName: "gslb.test.")
    }
    return try #require(server, "meridian serve --config \(config) did not start")
}

/// Issue 3's black-box tests: the real binary, `dig +subnet`, and a raw client for volume.
@Suite("GSLB end to end", .serialized)
struct GSLBTests {
    struct GeoCase: Sendable, CustomStringConvertible {
        var subnet: String
        var answer: [String]
        var scope: Int
        var why: String
        var description: String { why }
    }

    // Networks and their prefixes from GeoIP2-City-Test.json (../shared/geoip).
    static let geoCases: [GeoCase] = [
        GeoCase(subnet: "81.2.69.142/32", answer: ["192.0.2.1"], scope: 31, why: "GB (London) -> lon, database network /31"),
        GeoCase(subnet: "89.160.20.112/32", answer: ["192.0.2.2"], scope: 28, why: "SE -> sto, database network /28"),
        GeoCase(subnet: "216.160.83.56/32", answer: ["198.51.100.1"], scope: 29, why: "US (continent NA) -> iad, /29"),
        GeoCase(subnet: "203.0.113.9/32", answer: ["198.51.100.1"], scope: 24, why: "operator CIDR map (office /24) beats the database"),
        GeoCase(subnet: "0.0.0.0/0", answer: ["192.0.2.3"], scope: 0, why: "ECS /0: decided on the source address, scope 0"),
    ]

    @Test("Clients in different places get different datacenters, with the decision's ECS scope", arguments: geoCases)
    func geoWithClientSubnet(_ c: GeoCase) async throws {
        try await withGSLB { server in
            for tcp in [false, true] {
                let r = try await Dig.query("geo.gslb.test", "A", port: server.port, options: ["+subnet=\(c.subnet)"] + (tcp ? ["+tcp"] : []))
                #expect(r.status == "NOERROR" && r.aa, "\(r.raw)")
                #expect(r.answer.map(\.rdata).sorted() == c.answer, "\(c.why): \(r.raw)")
                let scope = r.clientSubnet?.split(separator: "/").last.flatMap { Int($0) }
                #expect(scope == c.scope, "\(c.why): CLIENT-SUBNET \(r.clientSubnet ?? "none")")
            }
        }
    }

    @Test func withoutECSTheSourceAddressDecidesAndNoECSComesBack() async throws {
        try await withGSLB { server in
            // 127.0.0.1 is in no database network and no CIDR entry: the geo default.
            let r = try await Dig.query("geo.gslb.test", "A", port: server.port)
            #expect(r.answer.map(\.rdata) == ["192.0.2.3"])
            #expect(r.clientSubnet == nil, "a query without ECS gets no ECS option back")
        }
    }

    @Test func familiesAndTailoredCNAME() async throws {
        try await withGSLB { server in
            // Only IPv4 endpoints under `v4only`: AAAA is NODATA (SOA), not NXDOMAIN.
            let aaaa = try await Dig.query("v4only.gslb.test", "AAAA", port: server.port)
            #expect(aaaa.status == "NOERROR" && aaaa.answer.isEmpty && aaaa.authority.first?.type == "SOA", "\(aaaa.raw)")
            // A tailored CNAME is answered alone (RFC 7871 7.2.1) ...
            let gb = try await Dig.query("alias.gslb.test", "A", port: server.port, options: ["+subnet=81.2.69.142/32"])
            #expect(gb.answer.map(\.type) == ["CNAME"], "\(gb.raw)")
            #expect(gb.answer.first?.rdata == "edge.gslb.test.")
            // ... and other clients get addresses.
            let other = try await Dig.query("alias.gslb.test", "A", port: server.port, options: ["+subnet=1.2.3.0/24"])
            #expect(other.answer.map(\.rdata) == ["192.0.2.1"], "\(other.raw)")
            // Other types at a GSLB name: NODATA.
            let mx = try await Dig.query("geo.gslb.test", "MX", port: server.port)
            #expect(mx.status == "NOERROR" && mx.answer.isEmpty)
        }
    }

    /// 10,000 queries to `weighted { lon: 3, iad: 1 }`: lon's share is 0.75; with
    /// n = 10,000 the standard deviation of the share is sqrt(0.75 * 0.25 / n) = 0.0043,
    /// so 5 sigma is 0.022 (a false failure about once in 1.7 million runs).
    @Test func weightedSplitWithinFiveSigma() async throws {
        try await withGSLB { server in
            let client = RawDNSClient(host: "127.0.0.1", port: server.port)
            let name = try DNSName("wrr.gslb.test.")
            var lon = 0, iad = 0, other = 0
            for i in 0..<10_000 {
                let q = DNSWire.QueryBuilder.query(id: UInt16(truncatingIfNeeded: i), name: name, type: .a)
                guard let reply = try client.udpExchange(q, timeout: .seconds(2)), let m = try? Message(decoding: reply) else { other += 1; continue }
                switch m.answers.first.flatMap({ IPAddress(bytes: $0.rdata) })?.description {
                case "192.0.2.1": lon += 1
                case "198.51.100.1": iad += 1
                default: other += 1
                }
            }
            let share = Double(lon) / 10_000
            print("weighted 3:1 over 10,000 queries: lon \(lon), iad \(iad), other \(other), share \(share)")
            #expect(other == 0)
            #expect(abs(share - 0.75) < 0.022)
        }
    }

    @Test func hashedIsStickyPerClientNetwork() async throws {
        try await withGSLB { server in
            var seen: [String: String] = [:]
            var distinct = Set<String>()
            for net in 1...24 {
                let subnet = "10.\(net).7.0/24"
                var answers = Set<String>()
                for _ in 0..<5 {
                    let r = try await Dig.query("sticky.gslb.test", "A", port: server.port, options: ["+subnet=\(subnet)"])
                    answers.formUnion(r.answer.map(\.rdata))
                    #expect(r.clientSubnet?.hasSuffix("/24") == true, "scope is the hashed prefix: \(r.clientSubnet ?? "none")")
                }
                #expect(answers.count == 1, "network \(subnet) got \(answers)")
                seen[subnet] = answers.first
                distinct.formUnion(answers)
            }
            #expect(distinct.count >= 3, "24 networks spread over the 4 choices: \(distinct)")
        }
    }

    @Test func explainPrintsTheDecision() async throws {
        let out = try await MeridianProcess.run(["explain", "--config", Fixtures.gslbConfig, "geo.gslb.test", "A",
                                                 "--client", "192.0.2.77", "--ecs", "81.2.69.142/32"])
        #expect(out.status == 0, "\(out.combined)")
        let lines = out.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "query:    geo.gslb.test. A")
        #expect(lines.contains { $0.hasPrefix("client:   81.2.69.142/32") && $0.contains("Client Subnet") }, "\(out.stdout)")
        #expect(lines.contains { $0.hasPrefix("location: country GB") && $0.contains("/31") }, "\(out.stdout)")
        #expect(lines.contains { $0.contains("geo: client matches geo key country GB -> pool lon") }, "\(out.stdout)")
        #expect(lines.contains("answer:   192.0.2.1"), "\(out.stdout)")
        #expect(lines.contains("ttl:      30"), "\(out.stdout)")
        #expect(lines.contains { $0.hasPrefix("scope:    /31") }, "\(out.stdout)")
        // --down moves the answer, through the same code the server runs.
        let down = try await MeridianProcess.run(["explain", "--config", Fixtures.gslbConfig, "fo.gslb.test", "A",
                                                  "--client", "192.0.2.77", "--down", "lon-1"])
        #expect(down.stdout.contains("answer:   198.51.100.1"), "\(down.stdout)")
    }

    /// One broken config per error kind (the ConfigTests fixtures, whose first line says
    /// `# expect: L:C: message`): `meridian check` prints it with file:line:column and exits 1.
    @Test func checkReportsEachBrokenConfig() async throws {
        let dir = Fixtures.brokenConfigs
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 10)
        for f in files {
            let path = dir.appendingPathComponent(f).path
            let first = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
            guard first.hasPrefix("# expect: ") else { continue }
            // FIXTURE and FIXTURES stand for the file and its folder (ConfigTests' convention).
            let expected = String(first.dropFirst("# expect: ".count))
                .replacingOccurrences(of: "FIXTURES", with: dir.path)
                .replacingOccurrences(of: "FIXTURE", with: path)
            let out = try await MeridianProcess.run(["check", "--config", path])
            #expect(out.status == 1, "\(f): \(out.combined)")
            #expect(out.stderr.contains("\(f):\(expected)"), "\(f): expected \"\(f):\(expected)\" in:\n\(out.stderr)")
        }
    }

    @Test func serveRefusesABadConfig() async throws {
        let path = Fixtures.brokenConfigs.appendingPathComponent("unknown-key.yaml").path
        let out = try await MeridianProcess.run(["serve", "--config", path, "--listen", "127.0.0.1:\(try freePort())"])
        #expect(out.status == 1)
        #expect(out.stderr.contains("unknown-key.yaml:"), "\(out.stderr)")
    }
}
