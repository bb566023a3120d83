import Testing
@testable import DNSWire
import TestSupport

@Test(arguments: [
    ("www.example.com.", "www.example.com.", 3),
    ("a\\.b.example.", "a\\.b.example.", 2),
    ("\\065bc.", "Abc.", 1),
    ("sp\\032ace.", "sp\\032ace.", 1),
    (".", ".", 0),
])
func namePresentationRoundTrip(input: String, printed: String, labels: Int) throws {
    let n = try DNSName(input)
    #expect(n.description == printed)
    #expect(n.labelCount == labels)
    #expect(try DNSName(n.description) == n)
}

@Test func relativeNamesAndOrigin() throws {
    let origin = try DNSName("example.com.")
    #expect(try DNSName("www", origin: origin).description == "www.example.com.")
    #expect(try DNSName("@", origin: origin) == origin)
    #expect(throws: NameTextError.relativeWithoutOrigin) { try DNSName("www") }
}

@Test(arguments: [
    ("a..b.", NameTextError.emptyLabel),
    (String(repeating: "a", count: 64) + ".", NameTextError.labelTooLong),
    (Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: ".") + ".", NameTextError.nameTooLong),
    ("bad\\2.", NameTextError.badEscape),
    ("bad\\999.", NameTextError.badEscape),
])
func badNames(input: String, error: NameTextError) {
    #expect(throws: error) { try DNSName(input) }
}

@Test func namesCompareWithoutCase() throws {
    #expect(try DNSName("WWW.Example.COM.") == DNSName("www.example.com."))
    #expect(try DNSName("www.example.com.").isSubdomain(of: DNSName("EXAMPLE.com.")))
    #expect(try !DNSName("www.example.com.").isSubdomain(of: DNSName("ample.com.")))
    var h1 = Hasher(), h2 = Hasher()
    try DNSName("A.b.").hash(into: &h1); try DNSName("a.B.").hash(into: &h2)
    #expect(h1.finalize() == h2.finalize())
}

@Test(arguments: [
    ("192.0.2.1", "192.0.2.1", true),
    ("2001:db8::1", "2001:db8::1", false),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1", false),
    ("::", "::", false),
    ("::ffff:192.0.2.1", "::ffff:c000:201", false),
    ("fe80::1:0:0:1", "fe80::1:0:0:1", false),
    ("1::", "1::", false),
    ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", false),
    ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8", false),
    ("2001:DB8::A", "2001:db8::a", false),
    ("64:ff9b::192.0.2.33", "64:ff9b::c000:221", false),
])
func addresses(text: String, printed: String, v4: Bool) throws {
    let a = try #require(IPAddress(text))
    #expect(a.description == printed)
    #expect(a.isV4 == v4)
}

@Test(arguments: ["256.1.1.1", "1.2.3", "1:2:3:4:5:6:7:8:9", "1::2::3", "", "01234::", "1.2.3.4/24",
                  ":1", "1:", "1:::2", "::1.2.3", "g::", "1.2:3", "::1.2:3::4", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7"])
func badAddresses(text: String) {
    #expect(IPAddress(text) == nil)
}

@Test func prefixes() throws {
    let p = try #require(IPPrefix("192.0.2.77/24"))
    #expect(p.description == "192.0.2.0/24")
    #expect(p.contains(IPAddress("192.0.2.200")!))
    #expect(!p.contains(IPAddress("192.0.3.1")!))
    #expect(IPPrefix("192.0.2.77/24", strict: true) == nil)
    #expect(IPPrefix("2001:db8::/129") == nil)
    #expect(IPAddress("::ffff:10.1.2.3")!.unmappingV4 == IPAddress("10.1.2.3")!)
}

/// Writes `names` in order into one message and returns the bytes.
private func written(_ names: [String]) throws -> [UInt8] {
    let w = MessageWriter()
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
    defer { buf.deallocate() }
    w.reset(buffer: buf, limit: 512)
    for n in names { try w.writeName(try DNSName(n)) }
    return Array(buf[0..<w.position])
}

@Test func compressionPointsAtEarlierSuffixes() throws {
    let b = try written(["www.example.com.", "mail.EXAMPLE.com.", "example.com."])
    // www.example.com. = 17 bytes; mail + pointer to offset 4; a bare pointer to offset 4.
    #expect(b.count == 17 + 5 + 2 + 2)
    #expect(Array(b[22..<24]) == [0xC0, 4])
    #expect(Array(b[24..<26]) == [0xC0, 4])
    // Decoding follows the pointers back to the full names.
    var out: [UInt8] = []
    _ = try withBytes(b) { p throws(DNSWireError) in try Wire.readName(p, at: 17, into: &out) }
    #expect(DNSName(uncheckedWire: out).description == "mail.example.com.")
}

@Test func writerNeverPassesItsLimit() throws {
    let w = MessageWriter()
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    defer { buf.deallocate() }
    w.reset(buffer: buf, limit: 10)
    #expect(throws: DNSWireError(.bufferFull, at: 0)) { try w.writeName(try DNSName("www.example.com.")) }
    #expect(w.position <= 10)
    let m = w.mark()
    try w.writeU32(1)
    w.rollback(to: m)
    #expect(w.position == m.position)
}

/// Each malformed message is rejected with its error code, never a crash or a hang.
@Test(arguments: [
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1], DNSWireError.Code.badPointer),           // points at itself
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 14, 0, 1, 0, 1], DNSWireError.Code.badPointer),           // forward pointer
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64] + Array(repeating: 97, count: 64) + [0, 0, 1, 0, 1], DNSWireError.Code.badLabelType),
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 97, 98], DNSWireError.Code.truncated),
    ([0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1], DNSWireError.Code.badQuestionCount),
    ([0, 1, 0, 0, 0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0, 1], DNSWireError.Code.truncated),                  // ANCOUNT overruns
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 9], DNSWireError.Code.trailingData),
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0], DNSWireError.Code.badOPT),        // two OPTs
    ([0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0], DNSWireError.Code.badOPT),                                       // OPT in answer
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 3, 0, 0], DNSWireError.Code.badOption),             // ECS family 3
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 9, 0, 8, 0, 5, 0, 1, 33, 0, 1], DNSWireError.Code.badOption),         // ECS /33 for IPv4
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 10, 0, 8, 0, 6, 0, 1, 8, 0, 10, 1], DNSWireError.Code.badOption),     // too many address bytes
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 23, 0, 192, 0, 3], DNSWireError.Code.badOption), // a bit set past /23
    ([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
      0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 6, 0, 8, 0, 2, 0, 1], DNSWireError.Code.badOption),                   // ECS option shorter than 4
] as [([UInt8], DNSWireError.Code)])
func malformed(bytes: [UInt8], code: DNSWireError.Code) {
    #expect(throws: DNSWireError(code, at: 0)) {
        try withBytes(bytes) { p throws(DNSWireError) in _ = try ParsedQuery.parse(p) }
    }
}

@Test func pointerChainsAreBounded() {
    // A name made of 200 pointers each to the one before: legal direction, but longer than
    // any real name can need.
    var b: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 97, 0]
    var prev = 12
    for _ in 0..<200 { let here = b.count; b += [0xC0 | UInt8(prev >> 8), UInt8(prev & 0xFF)]; prev = here }
    let start = prev
    #expect(throws: DNSWireError(.tooManyPointers, at: 0)) {
        try withBytes(b) { p throws(DNSWireError) in _ = try Wire.readName(p, at: start) }
    }
}

@Test func queryWithClientSubnetParses() throws {
    let q = QueryBuilder.query(id: 9, name: try DNSName("a.example."), type: .aaaa, edns: true, udpSize: 4096,
                               clientSubnet: IPPrefix("2001:db8:1234::/48"), nsid: true)
    let p = try withBytes(q) { p throws(DNSWireError) in try ParsedQuery.parse(p) }
    #expect(p.qtype == .aaaa)
    #expect(p.edns?.udpSize == 4096)
    #expect(p.edns?.nsidRequested == true)
    #expect(p.edns?.clientSubnet?.sourcePrefix == 48)
    #expect(p.edns?.clientSubnet?.address == IPAddress("2001:db8:1234::"))
}

/// TestSupport's RawQuery writes its well-formed queries through DNSWire's QueryBuilder (one
/// builder): the same bytes for the same query, and the test-only changes patched on top.
@Test(arguments: [
    (RawQuery(id: 7, name: "www.example.com.", type: .a), QueryBuilder.query(id: 7, name: try! DNSName("www.example.com."), type: .a)),
    ({ var q = RawQuery(id: 8, name: "a.example.", type: .aaaa); q.edns = .init(udpSize: 4096); return q }(),
     QueryBuilder.query(id: 8, name: try! DNSName("a.example."), type: .aaaa, edns: true, udpSize: 4096)),
    ({ var q = RawQuery(id: 9, name: "a.example.", type: .a)
       q.edns = .init(options: [RawQuery.clientSubnet(family: 1, source: 24, address: [192, 0, 2])]); return q }(),
     QueryBuilder.query(id: 9, name: try! DNSName("a.example."), type: .a, edns: true, clientSubnet: IPPrefix("192.0.2.0/24"))),
] as [(RawQuery, [UInt8])])
func rawQueryMatchesTheWireBuilder(_ raw: RawQuery, _ wire: [UInt8]) {
    #expect(raw.bytes() == wire)
}

@Test func rawQueryPatchesMalformedHeaders() {
    var q = RawQuery(id: 1, name: "www.example.com.")
    q.qdcountOverride = 2
    q.flags = 0x8000
    q.trailing = [1, 2, 3]
    let plain = QueryBuilder.query(id: 1, name: try! DNSName("www.example.com."), type: .a)
    let b = q.bytes()
    #expect(Array(b[2..<6]) == [0x80, 0, 0, 2])
    #expect(Array(b[6...].dropLast(3)) == Array(plain[6...]) && Array(b.suffix(3)) == [1, 2, 3])
}

/// The word-at-a-time lowercase copy the query path uses gives `asciiLower` of every byte,
/// for every byte value at every position of a word and every length up to 40.
@Test func asciiLowerCopyMatchesBytewise() {
    var src = [UInt8](repeating: 0, count: 48)
    var dst = [UInt8](repeating: 0xEE, count: 48)
    for value in 0...255 {
        for length in [1, 7, 8, 9, 15, 16, 17, 40] {
            for i in 0..<length { src[i] = UInt8((value + i * 37) & 0xFF) }
            src[length - 1] = UInt8(value)
            for i in dst.indices { dst[i] = 0xEE }
            src.withUnsafeBytes { s in dst.withUnsafeMutableBytes { d in asciiLowerCopy(s.baseAddress!, d.baseAddress!, count: length) } }
            #expect(Array(dst[0..<length]) == src[0..<length].map(asciiLower))
            #expect(dst[length...].allSatisfy { $0 == 0xEE })
        }
    }
}

/// A name registered with `registerName` is still a compression target when it is walked
/// only at the first name written after it, and not after the writer is reset.
@Test func registeredNameIsTargetWhenNeeded() throws {
    let w = MessageWriter()
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
    defer { buf.deallocate() }
    let question: [UInt8] = [3, 0x57, 0x57, 0x57, 7] + Array("example".utf8) + [3] + Array("com".utf8) + [0]
    w.reset(buffer: buf, limit: 512)
    _ = try w.claim(12)
    try w.writeBytes(question)
    w.registerName(at: 12)
    try w.writeName(try DNSName("mail.example.com."))
    // "mail" then a pointer to "example.com" inside the question (offset 12 + 4).
    #expect(Array(buf[(12 + question.count)..<(w.position)]) == [4] + Array("mail".utf8) + [0xC0, 16])
    w.reset(buffer: buf, limit: 512)
    try w.writeName(try DNSName("example.com."))
    #expect(w.position == 13)
}

/// The ECS parse (fixed-width loads, a mask test on the two words) against the byte-by-byte
/// reading and `masked(to:)` check it replaced: for every family and source length, the
/// address bytes all ones, random, and masked to the prefix; the same address or the same
/// FORMERR for each.
@Test func clientSubnetParseMatchesTheByteReading() {
    var x: UInt64 = 0x2545_F491_4F6C_DD1D
    func next() -> UInt64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
    for family: UInt16 in [1, 2] {
        let bits = family == 1 ? 32 : 128
        for source in 0...bits {
            let n = (source + 7) / 8
            for pattern in 0..<4 {
                let bytes: [UInt8] = (0..<n).map { _ in pattern == 0 ? 0xFF : UInt8(truncatingIfNeeded: next()) }
                var hi: UInt64 = 0, lo: UInt64 = 0
                for (i, b) in bytes.enumerated() {
                    if i < 8 { hi |= UInt64(b) << (56 - 8 * UInt64(i)) } else { lo |= UInt64(b) << (56 - 8 * UInt64(i - 8)) }
                }
                var address = IPAddress(family: family == 1 ? .v4 : .v6, hi: hi, lo: lo)
                if pattern == 3 { address = address.masked(to: source) }
                let wire: [UInt8] = (0..<n).map { address.byte($0) }
                let valid = address.masked(to: source) == address
                let option: [UInt8] = [0, 8, 0, UInt8(4 + n), 0, UInt8(family), UInt8(source), 0] + wire
                let msg: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
                                    0, 0, 41, 4, 0, 0, 0, 0, 0, 0, UInt8(option.count)] + option
                let parsed = Result { () throws(DNSWireError) in try withBytes(msg) { p throws(DNSWireError) in try ParsedQuery.parse(p) } }
                switch parsed {
                case .success(let q):
                    #expect(valid, "family \(family) /\(source) \(wire) accepted")
                    #expect(q.edns?.clientSubnet?.address == address)
                    #expect(q.edns?.clientSubnet?.sourcePrefix == UInt8(source))
                case .failure(let e):
                    #expect(!valid, "family \(family) /\(source) \(wire): \(e)")
                    #expect(e.code == .badOption)
                }
            }
        }
    }
}
