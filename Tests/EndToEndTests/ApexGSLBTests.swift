import Foundation
import Testing
import TestSupport

/// Issue 12, item 1: a GSLB name at the zone apex, and beside static records of other
/// types. The policy answers the types it owns (A and AAAA as `types:` lists them); the
/// master file answers every other type at the same owner. The real binary, queried by dig.
@Suite("GSLB names beside static records", .serialized)
struct ApexGSLBTests {
    /// gslb.test with SOA, NS, MX, TXT and CAA at the apex; `www` holds MX and TXT, `v4only`
    /// a static AAAA and TXT; both MX targets of the apex are GSLB names or static.
    static let zone = """
        $ORIGIN gslb.test.
        $TTL 3600
        @       IN SOA ns1 hostmaster 1 7200 3600 1209600 300
                IN NS  ns1
                IN MX  10 mail
                IN MX  20 www
                IN TXT "v=spf1 mx -all"
                IN CAA 0 issue "ca.example"
        ns1     IN A   192.0.2.53
        mail    IN A   192.0.2.25
        www     IN MX  10 mail
        www     IN TXT "beside www"
        v4only  IN AAAA 2001:db8::99
        v4only  IN TXT "static AAAA"

        """

    /// The apex and `www` fail over from `primary` (watched through the state file `p`) to
    /// `backup`; `v4only` answers A only from the same policy.
    static let config = """
        defaults: { ttl: 1 }
        zones:
          gslb.test:
            file: gslb.test.zone
            names:
              "@": { policy: { failover: [primary, backup] } }
              www: { policy: { failover: [primary, backup] } }
              v4only: { types: [A], policy: { failover: [primary, backup] } }
        checks:
          defaults: { interval: 200ms, rise: 1, fall: 1 }
          p: { type: file, file: p }
        endpoints:
          primary: { v4: 192.0.2.1, v6: "2001:db8::1", check: p }
          backup: { v4: 192.0.2.2, v6: "2001:db8::2" }

        """

    static func folder() throws -> TemporaryZoneFolder {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        try dir.write("gslb.test.zone", contents: zone)
        try dir.write("p", contents: "up\n")
        try dir.write("meridian.yaml", contents: config)
        return dir
    }

    @Test func apexAddressesFollowHealthAndTheZoneKeepsTheRest() async throws {
        let dir = try Self.folder()
        defer { dir.remove() }
        let check = try await MeridianProcess.run(["check", "--config", dir.path + "/meridian.yaml"])
        #expect(check.status == 0, "\(check.combined)")
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            func dig(_ name: String, _ type: String) async throws -> DigResult {
                let r = try await Dig.query(name, type, port: server.port)
                print("dig \(name) \(type): \(r.status ?? "-") answer \(r.answer.map(\.description)) authority \(r.authority.map(\.description)) additional \(r.additional.map(\.description))")
                return r
            }
            func rdata(_ name: String, _ type: String) async throws -> [String] {
                try await dig(name, type).answer.map(\.rdata).sorted()
            }
            // The policy: A and AAAA at the apex, with the GSLB TTL.
            let a = try await dig("gslb.test", "A")
            #expect(a.status == "NOERROR" && a.aa && a.answer.map(\.description) == ["gslb.test. 1 IN A 192.0.2.1"], "\(a.raw)")
            #expect(try await rdata("gslb.test", "AAAA") == ["2001:db8::1"])
            // The zone: every other type at the same owner, with the zone's TTL.
            let mx = try await dig("gslb.test", "MX")
            #expect(mx.answer.map(\.description).sorted() == ["gslb.test. 3600 IN MX 10 mail.gslb.test.", "gslb.test. 3600 IN MX 20 www.gslb.test."], "\(mx.raw)")
            // Additional section: static addresses of mail, none for www (a GSLB name: its
            // addresses depend on health and the client, so the resolver asks for them).
            #expect(mx.additional.map(\.description) == ["mail.gslb.test. 3600 IN A 192.0.2.25"], "\(mx.raw)")
            #expect(try await rdata("gslb.test", "TXT") == ["\"v=spf1 mx -all\""])
            #expect(try await rdata("gslb.test", "SOA") == ["ns1.gslb.test. hostmaster.gslb.test. 1 7200 3600 1209600 300"])
            #expect(try await rdata("gslb.test", "NS") == ["ns1.gslb.test."])
            #expect(try await rdata("gslb.test", "CAA") == ["0 issue \"ca.example\""])
            // ANY (RFC 8482): one RRset, the lowest type the name holds: A, from the policy.
            let any = try await dig("gslb.test", "ANY")
            #expect(any.answer.map(\.description) == ["gslb.test. 1 IN A 192.0.2.1"], "\(any.raw)")
            // A type nobody has: NODATA with the SOA.
            let https = try await dig("gslb.test", "HTTPS")
            #expect(https.status == "NOERROR" && https.aa && https.answer.isEmpty && https.authority.map(\.type) == ["SOA"], "\(https.raw)")
            // Beside MX and TXT.
            #expect(try await rdata("www.gslb.test", "A") == ["192.0.2.1"])
            #expect(try await rdata("www.gslb.test", "MX") == ["10 mail.gslb.test."])
            #expect(try await rdata("www.gslb.test", "TXT") == ["\"beside www\""])
            // `types: [A]`: AAAA is the zone's; the policy still answers A.
            #expect(try await rdata("v4only.gslb.test", "A") == ["192.0.2.1"])
            #expect(try await rdata("v4only.gslb.test", "AAAA") == ["2001:db8::99"])
            // A type `types:` leaves out and the zone lacks is NODATA.
            let wwwNodata = try await dig("www.gslb.test", "CAA")
            #expect(wwwNodata.status == "NOERROR" && wwwNodata.answer.isEmpty && wwwNodata.authority.map(\.type) == ["SOA"])

            // Health moves the apex's addresses (and ANY), and nothing else.
            try dir.write("p", contents: "down\n")
            var moved = false
            for _ in 0..<50 where !moved {
                moved = try await Dig.short("gslb.test", "A", port: server.port) == ["gslb.test. 1 IN A 192.0.2.2"]
                if !moved { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(moved, "the apex's A left primary; log:\n\(server.logText)")
            #expect(try await rdata("gslb.test", "AAAA") == ["2001:db8::2"])
            #expect(try await rdata("gslb.test", "ANY") == ["192.0.2.2"])
            #expect(try await rdata("gslb.test", "MX") == ["10 mail.gslb.test.", "20 www.gslb.test."])
            #expect(try await rdata("gslb.test", "SOA") == ["ns1.gslb.test. hostmaster.gslb.test. 1 7200 3600 1209600 300"])
            #expect(try await rdata("www.gslb.test", "A") == ["192.0.2.2"])
            #expect(try await rdata("v4only.gslb.test", "AAAA") == ["2001:db8::99"])
            // Over TCP too (no prebuilt A anywhere).
            #expect(try await Dig.query("gslb.test", "A", port: server.port, options: ["+tcp"]).answer.map(\.rdata) == ["192.0.2.2"])
        }
    }

    /// ANY at a name that answers only AAAA from its policy: the lowest type the name holds
    /// is a static TXT (16 < 28); with nothing below AAAA it is the policy's AAAA.
    @Test func anyAnswersTheLowestTypeTheNameHolds() async throws {
        let dir = try Self.folder()
        defer { dir.remove() }
        try dir.write("gslb.test.zone", contents: Self.zone + "v6txt IN TXT \"low\"\nv6caa IN CAA 0 issue \"ca.example\"\n")
        let yaml = Self.config.replacingOccurrences(of: "\n      v4only:", with: """

                  v6txt: { types: [AAAA], policy: backup }
                  v6caa: { types: [AAAA], policy: backup }
                  v4only:
            """)
        #expect(yaml.contains("v6caa: { types: [AAAA]"))
        try dir.write("meridian.yaml", contents: yaml)
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            let txt = try await Dig.short("v6txt.gslb.test", "ANY", port: server.port)
            let caa = try await Dig.short("v6caa.gslb.test", "ANY", port: server.port)
            let a = try await Dig.query("v6txt.gslb.test", "A", port: server.port)
            #expect(txt == ["v6txt.gslb.test. 3600 IN TXT \"low\""])
            #expect(caa == ["v6caa.gslb.test. 1 IN AAAA 2001:db8::2"])
            #expect(a.status == "NOERROR" && a.answer.isEmpty, "A is left out of types and the zone has none: NODATA")
        }
    }

    struct Conflict: Sendable, CustomStringConvertible {
        var why: String
        /// Lines added to the zone file.
        var zoneLines: [String]
        /// Lines under `names:` of gslb.test.
        var names: [String]
        /// Where the error is: the first line of "gslb.test.zone" or "meridian.yaml" holding
        /// `marker` (column 1 in the zone file, the marker's column in the YAML).
        var file: String
        var marker: String
        var message: String
        var description: String { why }
    }

    static let conflicts: [Conflict] = [
        Conflict(why: "static A at the apex, whose policy answers A", zoneLines: ["@ IN A 192.0.2.80"],
                 names: ["\"@\": { policy: primary }"], file: "gslb.test.zone", marker: "192.0.2.80",
                 message: "static A record at gslb.test. conflicts with the GSLB name at"),
        Conflict(why: "static AAAA beside a name that answers AAAA", zoneLines: ["www IN AAAA 2001:db8::80"],
                 names: ["www: { types: [A, AAAA], policy: primary }"], file: "gslb.test.zone", marker: "2001:db8::80",
                 message: "static AAAA record at www.gslb.test. conflicts with the GSLB name at"),
        Conflict(why: "static MX beside a name that answers CNAME", zoneLines: ["cdn IN MX 10 mail"],
                 names: ["cdn: { policy: edge }"], file: "gslb.test.zone", marker: "cdn IN MX",
                 message: "static MX record at cdn.gslb.test. conflicts with the GSLB name at"),
        Conflict(why: "static TXT beside a name whose fallback is a CNAME", zoneLines: ["fb IN TXT \"x\""],
                 names: ["fb: { policy: primary, when_all_down: fallback, fallback: [edge.example.net] }"],
                 file: "gslb.test.zone", marker: "fb IN TXT", message: "static TXT record at fb.gslb.test. conflicts with the GSLB name at"),
        Conflict(why: "static CNAME beside an address name", zoneLines: ["alias IN CNAME mail"],
                 names: ["alias: { policy: primary }"], file: "gslb.test.zone", marker: "alias IN CNAME",
                 message: "static CNAME record at alias.gslb.test. conflicts with the GSLB name at"),
        Conflict(why: "a CNAME-answering name at the apex", zoneLines: [],
                 names: ["\"@\": { policy: edge }"], file: "meridian.yaml", marker: "\"@\"",
                 message: "GSLB name gslb.test. (the zone apex) answers CNAME (CNAME endpoint \"edge\"), but the apex must keep its SOA and NS records"),
        Conflict(why: "a name at a zone cut", zoneLines: ["sub IN NS ns.other.example."],
                 names: ["sub: { policy: primary }"], file: "meridian.yaml", marker: "sub:",
                 message: "GSLB name sub.gslb.test. is at the zone cut (NS at"),
        Conflict(why: "a name below a zone cut", zoneLines: ["sub IN NS ns.other.example."],
                 names: ["www.sub: { policy: primary }"], file: "meridian.yaml", marker: "www.sub:",
                 message: "GSLB name www.sub.gslb.test. is below the zone cut sub.gslb.test. (NS at"),
    ]

    /// Each conflict is refused by `meridian check` and by `serve`, at the same file:line:column.
    @Test(arguments: conflicts)
    func conflictsAreRefusedByCheckAndServe(_ c: Conflict) async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        let zone = Self.zone + c.zoneLines.joined(separator: "\n") + "\n"
        let yaml = """
            zones:
              gslb.test:
                file: gslb.test.zone
                names:
            \(c.names.map { "      " + $0 }.joined(separator: "\n"))
            endpoints:
              primary: { v4: 192.0.2.1 }
              edge: { cname: edge.cdn.example.net }

            """
        try dir.write("gslb.test.zone", contents: zone)
        try dir.write("meridian.yaml", contents: yaml)
        let text = c.file == "meridian.yaml" ? yaml : zone
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let index = try #require(lines.firstIndex { $0.contains(c.marker) })
        let column = c.file == "meridian.yaml" ? lines[index].range(of: c.marker)!.lowerBound.utf16Offset(in: lines[index]) + 1 : 1
        let location = "\(dir.path)/\(c.file):\(index + 1):\(column): \(c.message)"
        try await CheckAgreesWithServeTests.expectBothRefuse(path: dir.path + "/meridian.yaml", location: location, why: c.why)
    }
}
