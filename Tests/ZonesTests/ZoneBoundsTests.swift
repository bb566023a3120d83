import DNSWire
import Foundation
import Testing
@testable import Zones

/// Bounds on zone input: the error cap, parentheses that do not nest, rdata and RRset sizes.
@Suite struct ZoneBoundsTests {
    static let head = "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"

    func parse(_ text: String) -> [String] {
        do {
            let records = try MasterFileParser(origin: try DNSName("b.test."), baseDirectory: "/nonexistent").parse(contents: text, file: "b.zone")
            return ZoneCheck.check(records: records, origin: try DNSName("b.test.")).map(\.description)
        } catch let e as ZoneErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    /// 1 MB of "(" in one entry: before, one error per byte (8 MB took 8 s and 806 MB) and
    /// the cap was only checked between entries.
    @Test(arguments: ["(", ")"])
    func oneRunawayEntryStopsAtTheErrorCap(_ c: String) {
        let errors = parse(Self.head + "x TXT " + String(repeating: c, count: 1 << 20) + "\n")
        #expect(errors.count == MasterFileParser.maxErrors + 1)
        #expect(errors.last == "b.zone:5:1: too many errors: stopped after \(MasterFileParser.maxErrors)")
    }

    @Test func secondOpenParenthesisIsAnError() {
        #expect(parse(Self.head + "x TXT ( ( \"a\" ) )\n") == [
            "b.zone:5:9: nested \"(\": a parenthesis is already open (they do not nest)",
            "b.zone:5:17: unbalanced \")\": no parenthesis is open",
        ])
    }

    /// 257 strings of 255 bytes: 65,792 bytes of rdata. Before, accepted, then answered
    /// with an empty truncated response even over TCP.
    @Test func rdataOver65535BytesIsAnError() {
        let big = Array(repeating: "\"" + String(repeating: "b", count: 255) + "\"", count: 257).joined(separator: " ")
        #expect(parse(Self.head + "x TXT " + big + "\n") == [
            "b.zone:5:7: rdata of this TXT record is 65792 bytes, over the 65535 a record can hold (RFC 1035 3.2.1)",
        ])
        let generic = "x TYPE65280 \\# 65536 " + String(repeating: "00", count: 65536) + "\n"
        #expect(parse(Self.head + generic).count == 1)
    }

    /// 300 TXT records of 251 bytes at one owner: no TCP message can hold the set.
    @Test func rrsetTooBigForOneMessageIsAnError() {
        var text = Self.head
        for i in 0..<300 { text += "big TXT \"\(String(format: "%03d", i))\(String(repeating: "a", count: 247))\"\n" }
        #expect(parse(text) == ["b.zone:5:1: the TXT RRset at big.b.test. takes 81900 bytes, over the \(ZoneCheck.maxRRsetBytes) that fit in one DNS message over TCP"])
        var fits = Self.head
        for i in 0..<230 { fits += "big TXT \"\(String(format: "%03d", i))\(String(repeating: "a", count: 247))\"\n" }
        #expect(parse(fits) == [])
    }
}
