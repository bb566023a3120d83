import Diagnostics
import DNSWire
import Foundation
import Testing
@testable import Zones

/// The fixtures folder plays the zones folder: `$INCLUDE` paths are relative to it.
private let fixtures: String = Bundle.module.resourcePath! + "/Fixtures"

/// Where the golden files live in the source tree, for MERIDIAN_UPDATE_GOLDEN=1.
private let sourceFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

private func name(_ s: String) -> DNSName {
    do { return try DNSName(s) } catch { preconditionFailure("bad test name \(s)") }
}

private func parse(_ file: String, origin: String = "err.test.", maxDepth: Int = 8) -> Result<[ResourceRecord], ZoneErrors> {
    let p = MasterFileParser(origin: name(origin), baseDirectory: fixtures, maxIncludeDepth: maxDepth)
    return Result { () throws(ZoneErrors) in try p.parseFile(path: fixtures + "/" + file, displayPath: "zones/" + file) }
}

/// One line per record, canonical order, duplicates merged: what `.golden` files hold.
private func canonicalText(_ records: [ResourceRecord]) -> String {
    ResourceRecord.canonicallySorted(ZoneCheck.normalized(records)).map(\.presentation).joined(separator: "\n") + "\n"
}

// MARK: Golden files

@Test(arguments: [
    ("basic.zone", "example.com."),
    ("ttl.zone", "ttl.test."),
    ("include.zone", "inc.test."),
    ("merge.zone", "merge.test."),
])
func golden(_ file: String, _ origin: String) throws {
    let records = try parse(file, origin: origin).get()
    #expect(ZoneCheck.check(records: records, origin: name(origin)).map(\.description) == [])
    let text = canonicalText(records)
    let goldenName = String(file.dropLast(".zone".count)) + ".golden"
    if ProcessInfo.processInfo.environment["MERIDIAN_UPDATE_GOLDEN"] == "1" {
        try text.write(toFile: sourceFixtures + "/" + goldenName, atomically: true, encoding: .utf8)
        return
    }
    let golden = try String(contentsOfFile: fixtures + "/" + goldenName, encoding: .utf8)
    #expect(text == golden, "\(file) differs from \(goldenName); rerun with MERIDIAN_UPDATE_GOLDEN=1 if the change is intended")

    // What we print parses back to the same records.
    let reparsed = try MasterFileParser(origin: name(origin), baseDirectory: fixtures)
        .parse(contents: "$ORIGIN .\n" + text, file: "golden")
    #expect(canonicalText(reparsed) == text)
}

@Test func recordDetails() throws {
    let records = try parse("basic.zone", origin: "example.com.").get()
    let soa = try #require(records.first { $0.type == .soa })
    #expect(soa.location == SourceLocation(file: "zones/basic.zone", line: 4, column: 1))
    #expect(soa.ttl == 3600)
    let web = records.filter { $0.name == name("web.example.com.") }
    #expect(web.count == 2)
    #expect(web.allSatisfy { $0.name.description == "Web.example.com." }, "owner case is kept")
    #expect(web[1].location == SourceLocation(file: "zones/basic.zone", line: 20, column: 5))
    let www = try #require(records.first { $0.type == .cname })
    #expect(www.ttl == 5400)
    #expect(RDataText.format(type: .cname, rdata: www.rdata) == "Web.example.com.")
    let txt = records.filter { $0.type == .txt && $0.name == name("txt.example.com.") }
    #expect(txt.map { RDataText.format(type: .txt, rdata: $0.rdata) } == [
        "\"say \\\"hi\\\"\" \"back\\\\slash\" \"\\226\\156\\147;not a comment\" \"unquoted\"",
        "\"multi\" \"line\"",
    ])
}

@Test func includeKeepsOriginAndTTLLocal() throws {
    let records = try parse("include.zone", origin: "inc.test.").get()
    let byName = Dictionary(grouping: records, by: { $0.name.description })
    #expect(byName["ns1.other.inc.test."]?.first?.location?.file == "zones/inc/hosts.inc")
    #expect(byName["y.deeper.inc.test."]?.first?.ttl == 60)
    #expect(byName["after.inc.test."]?.first?.ttl == 300, "$TTL of the include does not flow back")
}

@Test func lineEndingsAndBOM() throws {
    let text = "\u{FEFF}$TTL 300\r\n@ SOA ns1 hostmaster 1 2 3 4 5\r\n  NS ns1\r\nns1 A 192.0.2.1\r\n"
    let records = try MasterFileParser(origin: name("crlf.test."), baseDirectory: fixtures).parse(contents: text, file: "crlf")
    #expect(records.count == 3)
    #expect(records[2].location == SourceLocation(file: "crlf", line: 4, column: 1))
}

// MARK: Errors: one fixture per kind, exact message and position

@Test(arguments: [
    ("err-ttl.zone", ["zones/err-ttl.zone:3:5: bad TTL \"1x\": expected seconds or a duration like 1h30m, at most 2147483647"]),
    ("err-type.zone", ["zones/err-type.zone:2:5: unknown record type \"FOO\": expected a type like A, MX or TYPE65534"]),
    ("err-class.zone", ["zones/err-class.zone:2:5: unsupported class \"CH\": only IN is served"]),
    ("err-rdata.zone", ["zones/err-rdata.zone:2:10: bad address \"192.0.2\": expected an IPv4 address"]),
    ("err-owner.zone", ["zones/err-owner.zone:2:1: bad owner name \"a..b\": empty label"]),
    ("err-blank-owner.zone", ["zones/err-blank-owner.zone:2:3: no owner name: the first record of a file must start in column 1"]),
    ("err-paren-open.zone", ["zones/err-paren-open.zone:2:22: unclosed \"(\": expected \")\" before the end of the file"]),
    ("err-paren-close.zone", ["zones/err-paren-close.zone:2:17: unbalanced \")\": no parenthesis is open"]),
    ("err-quote.zone", ["zones/err-quote.zone:2:9: unterminated quoted string: expected a closing \" on the same line"]),
    ("err-directive.zone", ["zones/err-directive.zone:2:1: unknown directive \"$GENERATE\": expected $ORIGIN, $TTL or $INCLUDE"]),
    ("err-directive-args.zone", [
        "zones/err-directive-args.zone:2:1: missing TTL after $TTL: expected seconds or a duration like 1h30m",
        "zones/err-directive-args.zone:3:9: bad $ORIGIN name \"a..b\": empty label",
        "zones/err-directive-args.zone:4:6: bad TTL \"1x\": expected seconds or a duration like 1h30m, at most 2147483647",
    ]),
    ("err-include-escape.zone", [
        "zones/err-include-escape.zone:2:10: $INCLUDE file \"../outside.zone\" is outside the zones folder",
        "zones/err-include-escape.zone:3:10: $INCLUDE file \"/etc/hosts\" is outside the zones folder",
        "zones/err-include-escape.zone:4:10: $INCLUDE file \"inc/../../outside.zone\" is outside the zones folder",
    ]),
    ("err-include-missing.zone", ["zones/err-include-missing.zone:2:10: cannot read $INCLUDE file \"inc/missing.inc\": not found"]),
    ("err-include-loop.zone", ["zones/inc/loop.inc:2:10: $INCLUDE loop: \"inc/loop.inc\" is already being read"]),
    ("err-no-ttl.zone", ["zones/err-no-ttl.zone:1:1: no TTL for this record: give one, or set $TTL before it"]),
    ("err-txt-long.zone", ["zones/err-txt-long.zone:2:9: text string is 256 octets long: a character-string holds at most 255"]),
    ("err-meta-type.zone", ["zones/err-meta-type.zone:2:5: type AXFR cannot appear in a zone"]),
    ("err-multiple.zone", [
        "zones/err-multiple.zone:2:17: unexpected \"extra\" after the A rdata",
        "zones/err-multiple.zone:3:7: missing exchange name in MX rdata: expected a domain name",
        "zones/err-multiple.zone:4:1: bad owner name \"bad..name\": empty label",
        "zones/err-multiple.zone:6:6: bad address \"999.0.0.1\": expected an IPv4 address",
    ]),
])
func parseErrors(_ file: String, _ expected: [String]) {
    switch parse(file) {
    case .success(let records):
        Issue.record("\(file) parsed to \(records.count) records")
    case .failure(let errors):
        #expect(errors.errors.map(\.description) == expected)
    }
}

@Test func includeDepthBound() {
    switch parse("nest.zone", maxDepth: 1) {
    case .success:
        Issue.record("nesting past the bound was accepted")
    case .failure(let errors):
        #expect(errors.errors.map(\.description) == ["zones/inc/nest1.inc:1:10: $INCLUDE nested deeper than 1 files"])
    }
    #expect((try? parse("nest.zone", maxDepth: 2).get())?.count == 1)
}

/// A symbolic link inside the zones folder that points outside it is refused.
@Test func includeThroughSymlinkEscapeRejected() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-zonefile-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/zones", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "a A 192.0.2.1\n".write(toFile: dir + "/secret.inc", atomically: true, encoding: .utf8)
    try FileManager.default.createSymbolicLink(atPath: dir + "/zones/link.inc", withDestinationPath: dir + "/secret.inc")
    let p = MasterFileParser(origin: name("sym.test."), baseDirectory: dir + "/zones")
    #expect(throws: ZoneErrors.self) { try p.parse(contents: "$TTL 1\n$INCLUDE link.inc\n", file: "zones/sym.zone") }
    do {
        _ = try p.parse(contents: "$TTL 1\n$INCLUDE link.inc\n", file: "zones/sym.zone")
    } catch {
        #expect(error.description == "zones/sym.zone:2:10: $INCLUDE file \"link.inc\" is outside the zones folder (through a symbolic link)")
    }
}

@Test func errorCountIsBounded() {
    let text = "$TTL 1\n" + String(repeating: "x A 999.1.1.1\n", count: MasterFileParser.maxErrors + 50)
    do {
        _ = try MasterFileParser(origin: name("many.test."), baseDirectory: fixtures).parse(contents: text, file: "many")
        Issue.record("accepted")
    } catch {
        #expect(error.errors.count == MasterFileParser.maxErrors + 1)
        #expect(error.errors.last?.description == "many:1002:1: too many errors: stopped after 1000")
    }
}

/// Bounded random byte soup: the parser reports errors and never traps.
@Test func garbageNeverCrashes() {
    var seed: UInt64 = 0xDEAD_BEEF_CAFE_F00D
    func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
    let alphabet = Array("abc019 \t\n();\"\\.@$*-=:,ABINTXSOA".utf8)
    let p = MasterFileParser(origin: name("fuzz.test."), baseDirectory: fixtures)
    for _ in 0..<500 {
        let bytes = (0..<Int(next() % 200)).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] }
        _ = try? p.parse(contents: String(decoding: bytes, as: UTF8.self), file: "fuzz")
    }
}

// MARK: Zone content checks

@Test(arguments: [
    ("check-empty.zone", [
        "zones/check-empty.zone:1:1: no SOA record at the zone apex check.test.: expected exactly one",
        "zones/check-empty.zone:1:1: no NS records at the zone apex check.test.: expected at least one",
    ]),
    ("check-cname.zone", [
        "zones/check-cname.zone:5:3: CNAME at the zone apex check.test.: the apex needs SOA and NS records",
        "zones/check-cname.zone:7:1: CNAME and other data at www.check.test.: a CNAME owner has no other records (RFC 2181 10.1)",
        "zones/check-cname.zone:10:5: second CNAME at two.check.test.: a name has at most one CNAME (RFC 2181 10.1)",
    ]),
    ("check-outside.zone", [
        "zones/check-outside.zone:6:1: www.other.test. A is outside the zone check.test.",
        "zones/check-outside.zone:7:1: test. A is outside the zone check.test.",
    ]),
    ("check-delegation.zone", [
        "zones/check-delegation.zone:10:5: MX record at the delegation sub.check.test.: only NS, DS and glue addresses belong at a zone cut",
        "zones/check-delegation.zone:13:1: txt.sub.check.test. TXT is below the delegation sub.check.test.: only A and AAAA glue may be there",
        "zones/check-delegation.zone:14:1: deep.sub.check.test. NS is below the delegation sub.check.test.: only A and AAAA glue may be there",
        "zones/check-delegation.zone:15:1: DS record at nods.check.test., which is not a delegation: DS belongs at a zone cut",
    ]),
    ("check-dname.zone", [
        "zones/check-dname.zone:7:4: second DNAME at dn.check.test.: a name has at most one DNAME (RFC 6672 2.4)",
        "zones/check-dname.zone:8:1: x.dn.check.test. A is below the DNAME at dn.check.test.: names below a DNAME are not served (RFC 6672 2.4)",
        "zones/check-dname.zone:9:1: CNAME and other data at cd.check.test.: a CNAME owner has no other records (RFC 2181 10.1)",
    ]),
    ("check-soa.zone", [
        "zones/check-soa.zone:4:3: second SOA record at the apex check.test.: expected exactly one",
        "zones/check-soa.zone:7:1: SOA record at www.check.test.: expected it only at the zone apex check.test.",
    ]),
])
func contentChecks(_ file: String, _ expected: [String]) throws {
    let records = try parse(file, origin: "check.test.").get()
    #expect(ZoneCheck.check(records: records, origin: name("check.test.")).map(\.description) == expected)
}

@Test func mergeKeepsFirstTTLAndDropsDuplicates() throws {
    let records = ZoneCheck.normalized(try parse("merge.zone", origin: "merge.test.").get())
    let www = records.filter { $0.name == name("www.merge.test.") }
    #expect(www.count == 2)
    #expect(www.map(\.ttl) == [100, 100])
}

/// Owners written without escapes go into the batch through `ParseRun.plainName`, not
/// `DNSName`: for every text either both give the same wire bytes, or the fast path
/// declines and `DNSName` decides (so errors are the same as before).
@Test func plainOwnerNamesMatchDNSNameParsing() throws {
    let origin = name("Example.COM.")
    let l63 = String(repeating: "a", count: 63), l64 = String(repeating: "b", count: 64)
    // Relative names up to and past 255 bytes of wire form with this origin (13 bytes).
    let long = (0..<5).map { _ in l63 }.joined(separator: ".")
    var texts = ["www", "WwW", "a.b", "a.b.", "x", "@", ".", "", "a..b", ".a", "a.", "a\\.b", "\\065",
                 "*", "*.w", "_sip._tcp", "h0000001", "xn--bcher-kva", l63, l64, l63 + "." + l64, long, long + ".",
                 String(repeating: "a.", count: 120), String(repeating: "a.", count: 121), String(repeating: "a.", count: 127),
                 String(repeating: "a.", count: 128), String(repeating: "a.", count: 120) + "b"]
    // Lengths around the 255-byte limit, relative and absolute.
    for n in 230...256 { texts.append(String(repeating: "c", count: 1) + String(repeating: ".d", count: (n - 1) / 2)) }
    for n in 240...256 { let t = (0..<(n / 64)).map { _ in l63 }.joined(separator: "."); texts.append(t); texts.append(t + ".") }
    for text in texts {
        let bytes = Array(text.utf8)
        let expected = try? DNSName(presentation: bytes, origin: origin).wire
        let fast: [UInt8]? = origin.wire.withUnsafeBytes { o in
            bytes.withUnsafeBufferPointer { t in
                withUnsafeTemporaryAllocation(byteCount: 256, alignment: 1) { out in
                    ParseRun.plainName(t, origin: o, into: out).map { Array(out[0..<$0]) }
                }
            }
        }
        if let fast { #expect(fast == expected, "\(text)") }
        // Plain valid names always take the fast path.
        if let expected, !text.contains("\\"), text != "@", text != "." {
            #expect(fast == expected, "\(text) should take the fast path")
        }
    }
    // Through the parser: owners written both ways give the same records and errors.
    let zone = "$TTL 60\nwww A 192.0.2.1\nWWW.sub A 192.0.2.2\nabs.example.com. A 192.0.2.3\n\\119ww A 192.0.2.4\n"
        + "a..b A 192.0.2.5\n\(l64) A 192.0.2.6\n"
    let p = MasterFileParser(origin: origin, baseDirectory: "/")
    let errors = Result { () throws(ZoneErrors) in try p.parse(contents: zone, file: "t") }
    guard case .failure(let e) = errors else { Issue.record("expected errors"); return }
    #expect(e.errors.map(\.description) == [
        "t:6:1: bad owner name \"a..b\": \(NameTextError.emptyLabel)",
        "t:7:1: bad owner name \"\(l64)\": \(NameTextError.labelTooLong)",
    ])
    let good = try p.parse(contents: zone.split(separator: "\n").prefix(5).joined(separator: "\n") + "\n", file: "t")
    #expect(good.map(\.name.description) == ["www.Example.COM.", "WWW.sub.Example.COM.", "abs.example.com.", "www.Example.COM."])
}

/// An owner written again on the next line, or left blank, shares the previous record's
/// name entry in the batch (the zone build then finds the owner without hashing it again).
@Test func repeatedAndBlankOwnersShareOneNameEntry() throws {
    let text = "$TTL 60\nwww A 192.0.2.1\nwww AAAA 2001:db8::1\n    TXT \"x\"\nmail A 192.0.2.2\nwww A 192.0.2.3\n"
    let batch = try MasterFileParser(origin: name("example.com."), baseDirectory: "/").parseBatch(contents: text, file: "t")
    #expect(batch.count == 5)
    #expect(batch.indices.map { batch.nameIndex($0) } == [0, 0, 0, 1, 2])
    #expect(batch.indices.map { batch.name($0).description } == ["www.example.com.", "www.example.com.", "www.example.com.",
                                                                 "mail.example.com.", "www.example.com."])
}

/// The token loop skips bytes with one bit test: exactly the bytes it handles stop it.
@Test func tokenLoopStopsAtExactlyTheBytesItHandles() {
    let handled: Set<UInt8> = [10, 13, 9, 32, UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: ";"), UInt8(ascii: "("), UInt8(ascii: ")")]
    for c in 0...255 { #expect(ZoneLexer.mayEndToken(UInt8(c)) == handled.contains(UInt8(c)), "byte \(c)") }
}
