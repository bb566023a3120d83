import DNSWire
import Testing
@testable import Zones

/// Inputs found by FuzzQuery and FuzzZoneFile (Tests/Fuzz/README.md), kept as named
/// regression tests with the crashing input inline. FuzzQuery's invariants: every response
/// decodes with `Message(decoding:)`, has the query's ID and QR, fits the size limit, and
/// passes `ParsedQuery.parse` when it echoes a question.
@Suite struct FuzzRegressionTests {
    private static let zones: ZoneSet = {
        let origin = try! DNSName("example.com.")
        let soa = try! RDataText.parse(type: .soa, text: "ns1 hostmaster 1 2h 1h 2w 5m", origin: origin)
        let records = [
            ResourceRecord(name: origin, type: .soa, ttl: 3600, rdata: soa),
            ResourceRecord(name: origin, type: .ns, ttl: 3600, rdata: try! DNSName("ns1.example.com.").wire),
            ResourceRecord(name: try! DNSName("ns1.example.com."), type: .a, ttl: 3600, rdata: [192, 0, 2, 1]),
        ]
        return ZoneSet(zones: [try! Zone(origin: origin, records: records)])
    }()

    private func respond(_ query: [UInt8], tcp: Bool = false) -> [UInt8] {
        let engine = QueryEngine()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
        defer { out.deallocate() }
        let n = query.withUnsafeBytes {
            engine.respond(query: $0, client: IPAddress("192.0.2.99")!, tcp: tcp, zones: Self.zones, options: EngineOptions(), out: out)
        }
        return Array(out[0..<n])
    }

    /// FuzzQuery crash-c76fa145: the question name `\x02mx` + pointer to offset 0 read the
    /// header bytes as labels. The question was echoed verbatim, so the response's pointer
    /// met the response header (flags 0x80..) and did not decode. Pointers into the header
    /// are now malformed (FORMERR): nothing before the question is a name.
    @Test func questionPointerIntoHeaderIsFormErr() throws {
        let query: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
                              0x00, 0x02, 0x6d, 0x78, 0xc0, 0x00, 0x00, 0x01, 0x00, 0x01]
        let response = respond(Array(query.dropFirst()))
        let m = try Message(decoding: response)
        #expect(m.id == 0x0100)
        #expect(m.has(HeaderFlags.qr))
        #expect(m.rcode == .formErr)
        #expect(response.count == 12)
        let parsed: Result<ParsedQuery, DNSWireError> = Array(query.dropFirst()).withUnsafeBytes { b in
            Result { () throws(DNSWireError) in try ParsedQuery.parse(b) }
        }
        #expect(throws: DNSWireError(.badPointer, at: 0)) { try parsed.get() }
    }

    /// Found while sizing the FuzzZoneFile inputs rather than by the fuzzer (its inputs are at
    /// most 4 KiB): one RRset of 20,000 records took minutes to load, quadratic in both
    /// `ZoneCheck.check` and `Zone.init`. This checks the result, not the time.
    @Test func largeRRsetLoadsWithDuplicatesDropped() throws {
        let origin = try DNSName("example.com.")
        let soa = try RDataText.parse(type: .soa, text: "ns1 hostmaster 1 2h 1h 2w 5m", origin: origin)
        var records = [
            ResourceRecord(name: origin, type: .soa, ttl: 3600, rdata: soa),
            ResourceRecord(name: origin, type: .ns, ttl: 3600, rdata: try DNSName("ns1.example.com.").wire),
        ]
        let big = try DNSName("big.example.com.")
        for i in 0..<20_000 {
            records.append(ResourceRecord(name: big, type: .a, ttl: 60, rdata: [10, UInt8(i >> 16), UInt8((i >> 8) & 255), UInt8(i & 255)]))
        }
        // A duplicate with a differently cased owner is the same record (RFC 4343).
        records.append(ResourceRecord(name: try DNSName("BIG.example.com."), type: .a, ttl: 60, rdata: [10, 0, 0, 7]))
        // Such a set cannot be answered over TCP, so `check` (hence `meridian check`) refuses
        // it, once; building the zone must still be linear.
        #expect(ZoneCheck.check(records: records, origin: origin).map(\.message)
                == ["the A RRset at big.example.com. takes 620000 bytes, over the \(ZoneCheck.maxRRsetBytes) that fit in one DNS message over TCP"])
        let zone = try Zone(origin: origin, records: records)
        #expect(zone.recordCount == 20_002)
        let set = try #require(zone.node(named: big)?.rrset(.a))
        #expect(set.rdatas.count == 20_000)
        #expect(set.rdatas.first?.bytes == [10, 0, 0, 0])
        #expect(set.rdatas.map(\.bytes).last == [10, 0, 0x4E, 0x1F])
    }

    /// The packed storage counts a set's records in 16 bits: a zone built without the checks
    /// (which refuse far smaller sets) with more is refused with an error, not cut short.
    @Test func rrsetWithMoreThan65535RecordsIsAnErrorNotACrash() throws {
        let origin = try DNSName("example.com.")
        let soa = try RDataText.parse(type: .soa, text: "ns1 hostmaster 1 2h 1h 2w 5m", origin: origin)
        var records = [ResourceRecord(name: origin, type: .soa, ttl: 3600, rdata: soa)]
        let big = try DNSName("big.example.com.")
        for i in 0..<70_000 {
            records.append(ResourceRecord(name: big, type: .a, ttl: 60, rdata: [10, UInt8(i >> 16), UInt8((i >> 8) & 255), UInt8(i & 255)]))
        }
        #expect(throws: ZoneError.self) { try Zone(origin: origin, records: records) }
        let zone = try Zone(origin: origin, records: Array(records[0..<65_536]))
        #expect(zone.node(named: big)?.rrset(.a)?.rdatas.count == 65_535)
    }
}
