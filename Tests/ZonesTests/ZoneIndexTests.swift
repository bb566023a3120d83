import Foundation
import Diagnostics
import DNSWire
import Testing
@testable import Zones

/// The grouping shared by `ZoneCheck` and `Zone` takes shortcuts (an owner's RRsets found on
/// a short list until it has many types, duplicates hashed only in sets of two or more, a
/// name reused when written the same way): these tests hold it to the plain definitions.
@Suite struct ZoneIndexTests {
    static func n(_ s: String) -> DNSName {
        do { return try DNSName(s) } catch { preconditionFailure("bad test name \(s)") }
    }

    /// `normalized` by its definition: first of each (lowercase owner, type, rdata), TTL of
    /// the first record of each (lowercase owner, type).
    static func reference(_ records: [ResourceRecord]) -> [ResourceRecord] {
        struct Key: Hashable { var name: [UInt8]; var type: RRType; var rdata: [UInt8] }
        struct SetKey: Hashable { var name: [UInt8]; var type: RRType }
        var seen = Set<Key>()
        var ttl: [SetKey: UInt32] = [:]
        var out: [ResourceRecord] = []
        for var r in records {
            let lower = r.name.wire.map(asciiLower)
            guard seen.insert(Key(name: lower, type: r.type, rdata: r.rdata)).inserted else { continue }
            let k = SetKey(name: lower, type: r.type)
            if let t = ttl[k] { r.ttl = t } else { ttl[k] = r.ttl }
            out.append(r)
        }
        return out
    }

    /// Records that exercise every path: many types at one owner (past the short list),
    /// duplicates far apart and in differing case, sets of one, two and many members.
    static func mixedRecords() -> [ResourceRecord] {
        var out: [ResourceRecord] = []
        let owners = ["a.example.", "B.example.", "b.EXAMPLE.", "c.a.example.", "many.example."].map(n)
        var state: UInt64 = 12345
        func next(_ bound: UInt64) -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (state >> 33) % bound
        }
        for i in 0..<3000 {
            let owner = owners[Int(next(UInt64(owners.count)))]
            // The last owner gets up to 40 types, the others 3.
            let types: UInt64 = owner == owners[4] ? 40 : 3
            let type = RRType(UInt16(1000 + next(types)))
            let rdata = [UInt8(next(6)), UInt8(next(2))]
            out.append(ResourceRecord(name: owner, type: type, ttl: UInt32(i), rdata: rdata))
        }
        return out
    }

    @Test func normalizedMatchesTheDefinition() {
        let records = Self.mixedRecords()
        let got = ZoneCheck.normalized(records)
        let want = Self.reference(records)
        #expect(got.count == want.count)
        #expect(got == want)
    }

    @Test func zoneRRsetsMatchTheDefinition() throws {
        let origin = Self.n("example.")
        let soa = try RDataText.parse(type: .soa, text: "ns1 hostmaster 1 2h 1h 2w 5m", origin: origin)
        let records = [ResourceRecord(name: origin, type: .soa, ttl: 60, rdata: soa)] + Self.mixedRecords()
        let zone = try Zone(origin: origin, records: records)
        let want = Self.reference(records)
        #expect(zone.recordCount == want.count)
        for r in want {
            let set = try #require(zone.node(named: r.name)?.rrset(r.type))
            #expect(set.ttl == r.ttl)
            let expected = want.filter { $0.name == r.name && $0.type == r.type }.map(\.rdata)
            #expect(set.rdatas.map(\.bytes) == expected)
        }
        // Types at a name in the order they first appear; an empty non-terminal exists.
        let many = try #require(zone.node(named: Self.n("many.example.")))
        let firstSeen = want.filter { $0.name == Self.n("many.example.") }.map(\.type)
        var order: [RRType] = []
        for t in firstSeen where !order.contains(t) { order.append(t) }
        #expect(many.rrsets.map(\.type) == order)
    }

    @Test func recordsOutsideTheZoneAreReportedOnceEach() {
        let origin = Self.n("example.")
        let out1 = ResourceRecord(name: Self.n("x.other."), type: .a, ttl: 60, rdata: [1, 2, 3, 4],
                                  location: SourceLocation(file: "z", line: 3, column: 1))
        var out2 = out1
        out2.name = Self.n("X.OTHER.")
        out2.location = SourceLocation(file: "z", line: 4, column: 1)
        var out3 = out1
        out3.rdata = [1, 2, 3, 5]
        out3.location = SourceLocation(file: "z", line: 5, column: 1)
        let errors = ZoneCheck.check(records: [out1, out2, out3], origin: origin).map(\.description)
        #expect(errors.filter { $0.contains("outside the zone") } == [
            "z:3:1: x.other. A is outside the zone example.",
            "z:5:1: x.other. A is outside the zone example.",
        ])
    }

    /// The parser reuses the previous owner when its text repeats; `$ORIGIN` must end that.
    @Test func sameOwnerTextUnderANewOriginIsANewName() throws {
        let text = "$TTL 60\n$ORIGIN a.test.\nwww A 192.0.2.1\n$ORIGIN b.test.\nwww A 192.0.2.2\nwww AAAA 2001:db8::1\n"
        let records = try MasterFileParser(origin: Self.n("test."), baseDirectory: "/").parse(contents: text, file: "t")
        #expect(records.map(\.name.description) == ["www.a.test.", "www.b.test.", "www.b.test."])
        #expect(records.map(\.rdata) == [[192, 0, 2, 1], [192, 0, 2, 2], [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]])
    }

    /// The loader groups the parser's batch without copying records out: content errors
    /// still name the file, line and column of the record, in an included file and back in
    /// the including one, and a zone that loads serves what the file says.
    @Test func loaderErrorsNameTheFileOfEachRecord() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zindex-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir + "/inc", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "alias CNAME www\nalias  TXT \"x\"\n".write(toFile: dir + "/inc/bad.inc", atomically: true, encoding: .utf8)
        try """
        $TTL 60
        @ SOA ns1 hostmaster 1 2 3 4 5
          NS ns1
        www A 192.0.2.1
        $INCLUDE inc/bad.inc
          IN  SOA ns1 hostmaster 1 2 3 4 5

        """.write(toFile: dir + "/t.test.zone", atomically: true, encoding: .utf8)
        let bad = ZoneLoader.load([ZoneLoader.Source(origin: Self.n("t.test."), path: dir + "/t.test.zone")])
        #expect(bad.zones.isEmpty)
        #expect(bad.errors.map(\.description) == [
            "\(dir)/inc/bad.inc:1:1: CNAME and other data at alias.t.test.: a CNAME owner has no other records (RFC 2181 10.1)",
            "\(dir)/t.test.zone:6:3: SOA record at www.t.test.: expected it only at the zone apex t.test.",
        ])
        try "$TTL 60\n@ SOA ns1 hostmaster 7 2 3 4 5\n  NS ns1\nwww A 192.0.2.1\n  AAAA 2001:db8::1\n$INCLUDE inc/ok.inc\n"
            .write(toFile: dir + "/t.test.zone", atomically: true, encoding: .utf8)
        try "Mail MX 10 www\nwww A 192.0.2.2\n".write(toFile: dir + "/inc/ok.inc", atomically: true, encoding: .utf8)
        let good = ZoneLoader.load([ZoneLoader.Source(origin: Self.n("t.test."), path: dir + "/t.test.zone")])
        #expect(good.errors.isEmpty, "\(good.errors)")
        let zone = try #require(good.zones.first)
        #expect(zone.serial == 7 && zone.recordCount == 6)
        let www = try #require(zone.node(named: Self.n("WWW.t.test.")))
        #expect(www.rrsets.map(\.type) == [.a, .aaaa])
        #expect(www.rrset(.a)?.rdatas.map(\.bytes) == [[192, 0, 2, 1], [192, 0, 2, 2]])
        #expect(zone.node(named: Self.n("mail.t.test."))?.name.description == "Mail.t.test.")
    }
}
