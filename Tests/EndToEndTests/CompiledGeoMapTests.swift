import DNSWire
import Foundation
import Glibc
import Testing
import TestSupport

/// Compiled geo maps through the real binary (issue 13): the ECS scope an answer comes
/// back with holds for every address inside it, and a reload that leaves a map and its
/// database unchanged reuses the compiled map.
@Suite("Compiled geo maps", .serialized)
struct CompiledGeoMapTests {
    /// The GSLB fixture copied to a temporary folder, its database path made absolute.
    func gslbCopy() throws -> TemporaryZoneFolder {
        let folder = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        let yaml = try folder.read("meridian.yaml")
        try folder.write("meridian.yaml", contents: yaml.replacingOccurrences(
            of: "../../../../../shared/geoip/GeoIP2-City-Test.mmdb", with: TestPaths.sharedGeoIP + "/GeoIP2-City-Test.mmdb"))
        return folder
    }

    func scope(_ r: DigResult) -> Int? { r.clientSubnet?.split(separator: "/").last.flatMap { Int($0) } }

    @Test("Every address inside the returned ECS scope gets the same answer (dig +subnet, sampled clients)")
    func scopeHoldsForEveryAddressInIt() async throws {
        try await withGSLB { server in
            // Clients in the test database's networks (GB, SE, US, JP, CN, ...) and around them.
            let seeds = ["81.2.69.142", "81.2.69.160", "89.160.20.112", "89.160.20.128", "216.160.83.56", "2.125.160.216",
                         "175.16.199.0", "202.196.224.0", "67.43.156.0", "203.0.113.9", "1.2.3.4", "128.101.101.101",
                         "2001:218::1", "2001:480::1", "2a02:d300::1", "2001:252::1"]
            var clients = seeds
            var x: UInt64 = 13
            for _ in 0..<24 {
                x = x &* 6364136223846793005 &+ 1442695040888963407
                clients.append("\(x >> 56).\((x >> 48) & 255).\((x >> 40) & 255).\((x >> 32) & 255)")
            }
            let first = try await Dig.batch(clients.map { c in ["geo.gslb.test", "A", "+subnet=\(c)/\(c.contains(":") ? 128 : 32)"] },
                                            port: server.port)
            try #require(first.count == clients.count)
            var inside: [[String]] = []
            var expected: [(client: String, address: String, answer: [String])] = []
            for (c, r) in zip(clients, first) {
                let answer = r.answer.map(\.rdata).sorted()
                let s = try #require(scope(r), "\(c): no ECS scope in \(r.raw)")
                let a = IPAddress(c)!
                #expect(s >= 1 && s <= a.bitLength, "\(c): scope /\(s)")
                // The network's first and last address and three between.
                let host: UInt128 = s == a.bitLength ? 0 : (UInt128(1) << UInt128(a.bitLength - s)) - 1
                let n: UInt128 = a.isV4 ? UInt128(a.v4Value) : UInt128(a.hi) << 64 | UInt128(a.lo)
                let net = n & ~host
                for k in [UInt128(0), host / 3, host / 2, host - host / 5, host] {
                    let v = net | k
                    let text = a.isV4 ? "\(IPAddress(v4: UInt32(truncatingIfNeeded: v)))"
                        : "\(IPAddress(family: .v6, hi: UInt64(truncatingIfNeeded: v >> 64), lo: UInt64(truncatingIfNeeded: v)))"
                    inside.append(["geo.gslb.test", "A", "+subnet=\(text)/\(a.bitLength)"])
                    expected.append((c + "/\(s)", text, answer))
                }
            }
            let results = try await Dig.batch(inside, port: server.port)
            try #require(results.count == inside.count)
            for (e, r) in zip(expected, results) {
                #expect(r.answer.map(\.rdata).sorted() == e.answer, "\(e.address) inside \(e.client): \(r.raw)")
            }
        }
    }

    @Test("Neighbouring database networks with one answer merge into one scope")
    func neighboursMerge() async throws {
        try await withGSLB { server in
            // 2001:218::/32 is JP in the test database: no key matches, the default answers,
            // and so do its neighbours, so the scope is shorter than the database's /32.
            let r = try await Dig.query("geo.gslb.test", "A", port: server.port, options: ["+subnet=2001:218::/32"])
            #expect(r.answer.map(\.rdata) == ["192.0.2.3"], "\(r.raw)")
            #expect((scope(r) ?? 99) < 32, "scope \(r.clientSubnet ?? "none")")
        }
    }

    @Test("A reload that leaves the maps unchanged reuses them; a changed map is compiled again")
    func reloadReusesUnchangedMaps() async throws {
        let folder = try gslbCopy()
        defer { folder.remove() }
        let config = folder.path + "/meridian.yaml"
        try await withGSLB(config: config) { server in
            #expect(server.logText.contains("geo maps: 2 compiled, 0 reused"), "log:\n\(server.logText)")
            server.signal(SIGHUP)
            #expect(await eventually { server.logText.contains("geo maps: 0 compiled, 2 reused") }, "log:\n\(server.logText)")
            let before = try await Dig.query("geo.gslb.test", "A", port: server.port, options: ["+subnet=89.160.20.112/32"])
            #expect(before.answer.map(\.rdata) == ["192.0.2.2"])
            // Sweden moves to iad: that map is compiled again, the other one is reused.
            let yaml = try folder.read("meridian.yaml")
            try folder.write("meridian.yaml", contents: yaml.replacingOccurrences(of: "SE: sto", with: "SE: iad"))
            server.signal(SIGHUP)
            #expect(await eventually { server.logText.contains("geo maps: 1 compiled, 1 reused") }, "log:\n\(server.logText)")
            let after = try await Dig.query("geo.gslb.test", "A", port: server.port, options: ["+subnet=89.160.20.112/32"])
            #expect(after.answer.map(\.rdata) == ["198.51.100.1"], "\(after.raw)")
        }
    }
}
