import Testing
@testable import DNSWire

private let origin = DNSName(uncheckedWire: [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0])

/// (type, text as an operator might write it, canonical form as dig prints it)
private let roundTrips: [(RRType, String, String)] = [
    (.a, "192.0.2.1", "192.0.2.1"),
    (.aaaa, "2001:DB8:0:0::1", "2001:db8::1"),
    (.aaaa, "::ffff:192.0.2.1", "::ffff:c000:201"),
    (.ns, "ns1", "ns1.example.com."),
    (.ns, "NS1.Other.NET.", "NS1.Other.NET."),
    (.cname, "@", "example.com."),
    (.ptr, "host\\.with\\.dots.example.", "host\\.with\\.dots.example."),
    (.dname, "target.example.net.", "target.example.net."),
    (.soa, "ns1 hostmaster 2024010101 1h 15m 1w 300",
     "ns1.example.com. hostmaster.example.com. 2024010101 3600 900 604800 300"),
    (.mx, "10 mail", "10 mail.example.com."),
    (.mx, "0 .", "0 ."),
    (.txt, "\"v=spf1 -all\"", "\"v=spf1 -all\""),
    (.txt, "unquoted \"two words\" \"\"", "\"unquoted\" \"two words\" \"\""),
    (.txt, "\"say \\\"hi\\\" \\\\ \\007\\255\"", "\"say \\\"hi\\\" \\\\ \\007\\255\""),
    (.txt, "\"caf\\195\\169\"", "\"caf\\195\\169\""),
    (.spf, "\"v=spf1 mx -all\"", "\"v=spf1 mx -all\""),
    (.srv, "10 60 5060 sip", "10 60 5060 sip.example.com."),
    (.caa, "0 issue \"letsencrypt.org\"", "0 issue \"letsencrypt.org\""),
    (.caa, "128 iodef mailto:sec@example.com", "128 iodef \"mailto:sec@example.com\""),
    (.caa, "0 issue \"\"", "0 issue \"\""),
    (.hinfo, "\"INTEL\" Linux", "\"INTEL\" \"Linux\""),
    (.naptr, "100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .",
     "100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" ."),
    (.ds, "19718 13 2 8acbb0cd28f41250a80a491389424d341522d946b0da0c0291f2d3d7 71d7805a",
     "19718 13 2 8ACBB0CD28F41250A80A491389424D341522D946B0DA0C0291F2D3D7 71D7805A"),
    (.sshfp, "1 1 dd465c09cfa51fb45020cc83316fff21b9ec74ac", "1 1 DD465C09CFA51FB45020CC83316FFF21B9EC74AC"),
    (.tlsa, "3 1 1 0B9FA5A59EED715C26C1020C711B4F6EC42D58B0015E14337A39DAD301C5AFC3",
     "3 1 1 0B9FA5A59EED715C26C1020C711B4F6EC42D58B0015E14337A39DAD3 01C5AFC3"),
    (.https, "1 . alpn=h3,h2 ipv4hint=104.16.132.229,104.16.133.229 ipv6hint=2606:4700::6810:84e5",
     "1 . alpn=\"h3,h2\" ipv4hint=104.16.132.229,104.16.133.229 ipv6hint=2606:4700::6810:84e5"),
    (.https, "0 pool.example.net.", "0 pool.example.net."),
    (.svcb, "16 svc port=8443 key65000=\"x y\" alpn=\"h2\" no-default-alpn mandatory=port,alpn",
     "16 svc.example.com. mandatory=alpn,port alpn=\"h2\" no-default-alpn port=8443 key65000=\"x y\""),
    (.svcb, "1 . alpn=\"part\\\\,with\\\\,commas,h2\" ech=AEX+DQBB key7 key9=\"\"",
     "1 . alpn=\"part\\\\,with\\\\,commas,h2\" ech=AEX+DQBB key7 key9"),
    (.svcb, "1 . key1=h2 key3=53", "1 . alpn=\"h2\" port=53"),
    (RRType(65534), "\\# 3 0A0B0C", "\\# 3 0A0B0C"),
    (RRType(65534), "\\# 0", "\\# 0"),
    (.nsec, "\\# 4 00000000", "\\# 4 00000000"),
]

@Test(arguments: roundTrips.indices)
func roundTrip(_ i: Int) throws {
    let (type, input, canonical) = roundTrips[i]
    let wire = try RDataText.parse(type: type, text: input, origin: origin)
    let text = RDataText.format(type: type, rdata: wire)
    #expect(text == canonical, "\(type) \(input)")
    let again = try RDataText.parse(type: type, text: text, origin: origin)
    #expect(again == wire, "\(type) \(text)")
    // RFC 3597 generic form for a known type gives the same wire bytes.
    let generic = RDataText.formatGeneric(wire)
    #expect(try RDataText.parse(type: type, text: generic, origin: origin) == wire, "\(type) \(generic)")
}

@Test func wireBytes() throws {
    #expect(try RDataText.parse(type: .a, text: "10.0.0.1", origin: origin) == [10, 0, 0, 1])
    #expect(try RDataText.parse(type: .mx, text: "10 A.b.", origin: origin) == [0, 10, 1, 65, 1, 98, 0])
    #expect(try RDataText.parse(type: .txt, text: "a \"\"", origin: origin) == [1, 97, 0])
    #expect(try RDataText.parse(type: .caa, text: "0 issue \"ca.net\"", origin: origin)
            == [0, 5] + Array("issue".utf8) + Array("ca.net".utf8))
    // Keys sorted on the wire (RFC 9460 2.2), whatever the text order.
    #expect(try RDataText.parse(type: .https, text: "1 . port=443 alpn=h2", origin: origin)
            == [0, 1, 0, 0, 1, 0, 3, 2, 104, 50, 0, 3, 0, 2, 1, 187])
    #expect(try RDataText.parse(type: .a, text: "\\# 4 0A000001", origin: origin) == [10, 0, 0, 1])
    #expect(try RDataText.parse(type: .a, text: "\\# 4 0A00 0001", origin: origin) == [10, 0, 0, 1])
}

/// (type, bad text, index of the field blamed, start of the message)
private let badInputs: [(RRType, String, Int, String)] = [
    (.a, "", 0, "missing address in A rdata"),
    (.a, "192.0.2", 0, "bad address \"192.0.2\": expected an IPv4 address"),
    (.a, "2001:db8::1", 0, "bad address"),
    (.a, "192.0.2.1 192.0.2.2", 1, "unexpected \"192.0.2.2\" after the A rdata"),
    (.aaaa, "192.0.2.1", 0, "bad address"),
    (.aaaa, "2001:db8:::1", 0, "bad address"),
    (.ns, "a..b", 0, "bad target name"),
    (.ns, String(repeating: "a", count: 64), 0, "bad target name"),
    (.cname, "", 0, "missing target name"),
    (.soa, "ns1 hostmaster 1 2 3 4", 6, "missing minimum"),
    (.soa, "ns1 hostmaster x 2 3 4 5", 2, "bad serial \"x\""),
    (.soa, "ns1 hostmaster 4294967296 2 3 4 5", 2, "bad serial"),
    (.soa, "ns1 hostmaster 1 1x 3 4 5", 3, "bad refresh \"1x\""),
    (.mx, "mail", 0, "bad preference \"mail\": expected a number 0-65535"),
    (.mx, "65536 mail", 0, "bad preference"),
    (.mx, "10", 1, "missing exchange name"),
    (.txt, "", 0, "missing text"),
    (.txt, "\"" + String(repeating: "x", count: 256) + "\"", 0, "text string is 256 octets long"),
    (.txt, "\"bad \\25\"", 0, "bad text"),
    (.txt, "\"bad \\256\"", 0, "bad text"),
    (.txt, "\"open", 0, "unterminated quoted string"),
    (.spf, "\"" + String(repeating: "y", count: 300) + "\"", 0, "text string is 300 octets long"),
    (.ptr, "host..example.", 0, "bad target name"),
    (.dname, "a b", 1, "unexpected \"b\" after the DNAME rdata"),
    (.srv, "1 2 port target", 2, "bad port"),
    (.srv, "1 2 3", 3, "missing target name"),
    (.naptr, "x 2 \"a\" \"b\" \"c\" .", 0, "bad order"),
    (.naptr, "1 2 \"a\" \"b\" \"c\" . extra", 6, "unexpected \"extra\""),
    (.hinfo, "\"a\" \"b\" \"c\"", 2, "unexpected"),
    (.caa, "0 is-sue \"x\"", 1, "bad tag"),
    (.caa, "256 issue \"x\"", 0, "bad flags"),
    (.caa, "0 issue", 2, "missing value"),
    (.hinfo, "\"one\"", 1, "missing OS"),
    (.naptr, "1 2 \"a\" \"b\" \"c\"", 5, "missing replacement name"),
    (.ds, "1 2 3 XYZ", 3, "bad digest"),
    (.ds, "1 2 3 ABC", 3, "bad digest: odd number"),
    (.ds, "1 2 3", 3, "missing digest"),
    (.sshfp, "1 1 \"AB\"", 2, "bad fingerprint"),
    (.tlsa, "3 1 256 AB", 2, "bad matching type"),
    (.https, "1 . bogus=1", 2, "bad SvcParam key"),
    (.https, "1 . alpn", 2, "SvcParam alpn needs a value"),
    (.https, "1 . port=70000", 2, "bad port"),
    (.https, "1 . port=1 port=2", 3, "SvcParam port given twice"),
    (.https, "1 . ipv4hint=::1", 2, "bad ipv4hint"),
    (.https, "1 . ipv6hint=1.2.3.4", 2, "bad ipv6hint"),
    (.https, "1 . ech=!!", 2, "bad ech"),
    (.https, "1 . no-default-alpn", 2, "no-default-alpn requires alpn"),
    (.https, "1 . mandatory=port", 2, "mandatory lists port, which is not present"),
    (.https, "1 . mandatory=mandatory alpn=h2", 2, "bad mandatory"),
    (.https, "1 . key65535=x", 2, "bad SvcParam key"),
    (.https, "1 . alpn=h2,,h3", 2, "bad alpn"),
    (RRType(65534), "0A0B", 0, "type TYPE65534 has no known presentation format"),
    (RRType(65534), "\\# 2 0A0B0C", 1, "RFC 3597 rdata length 2 does not match the 3 octets"),
    (RRType(65534), "\\# x", 1, "bad RFC 3597 rdata length"),
    (.a, "\\# 3 0A0B0C", 2, "RFC 3597 rdata is not valid A rdata"),
    (.mx, "\\# 3 000A05", 2, "RFC 3597 rdata is not valid MX rdata"),
]

@Test(arguments: badInputs.indices)
func rejectsBadInput(_ i: Int) {
    let (type, input, field, message) = badInputs[i]
    do {
        let wire = try RDataText.parse(type: type, text: input, origin: origin)
        Issue.record("\(type) \(input) parsed to \(wire)")
    } catch {
        #expect(error.field == field, "\(type) \(input): \(error)")
        #expect(error.message.hasPrefix(message), "\(type) \(input): \(error)")
    }
}

/// Malformed wire rdata for a known type falls back to the RFC 3597 form, which parses back.
@Test(arguments: [
    (RRType.a, [UInt8]([1, 2, 3])),
    (.mx, [0, 10, 5, 97]),
    (.txt, [5, 97]),
    (.txt, []),
    (.soa, [0, 0, 1, 2]),
    (.https, [0, 1, 0, 0, 3, 0, 1, 80]),
    (.https, [0, 1, 0, 0, 3, 0, 2, 0, 80, 0, 1, 0, 3, 2, 104, 50]),
])
func malformedWireFallsBack(_ type: RRType, _ rdata: [UInt8]) throws {
    let text = RDataText.format(type: type, rdata: rdata)
    #expect(text.hasPrefix("\\# \(rdata.count)"))
    #expect(throws: RDataTextError.self) { try RDataText.parse(type: type, text: text, origin: origin) }
}

@Test func ttlUnits() {
    #expect(RDataText.parseTTL(Array("3600".utf8)) == 3600)
    #expect(RDataText.parseTTL(Array("1h30m".utf8)) == 5400)
    #expect(RDataText.parseTTL(Array("1W2D".utf8)) == 777_600)
    #expect(RDataText.parseTTL(Array("2147483647".utf8)) == 2_147_483_647)
    #expect(RDataText.parseTTL(Array("2147483648".utf8)) == nil)
    #expect(RDataText.parseTTL(Array("1x".utf8)) == nil)
    #expect(RDataText.parseTTL(Array("h".utf8)) == nil)
    #expect(RDataText.parseTTL(Array("".utf8)) == nil)
    #expect(RDataText.parseTTL(Array("99999999999999999999".utf8)) == nil)
}

@Test func base64RoundTrip() {
    for n in 0..<10 {
        let b = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
        #expect(TextBytes.unbase64(Array(TextBytes.base64(b).utf8)) == b)
    }
}

/// Bounded pseudo-random rdata through every typed formatter: format never traps, what it
/// prints parses back to the same bytes, and rdata malformed for a known type (printed in the
/// RFC 3597 form) is refused rather than loaded.
@Test func randomWireRoundTrips() throws {
    var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
    let types: [RRType] = [.a, .aaaa, .ns, .soa, .mx, .txt, .srv, .caa, .hinfo, .naptr, .ds, .sshfp, .tlsa, .https, RRType(999)]
    for _ in 0..<3000 {
        let type = types[Int(next() % UInt64(types.count))]
        let len = Int(next() % 24)
        let rdata = (0..<len).map { _ in UInt8(truncatingIfNeeded: next() % 8 == 0 ? 0 : next()) }
        let text = RDataText.format(type: type, rdata: rdata)
        if text.hasPrefix("\\#") && RDataText.hasTypedFormat(type) {
            #expect(throws: RDataTextError.self) { try RDataText.parse(type: type, text: text, origin: origin) }
        } else {
            let back = try RDataText.parse(type: type, text: text, origin: origin)
            #expect(back == rdata, "\(type) \(text)")
        }
    }
}
