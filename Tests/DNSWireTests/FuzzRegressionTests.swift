import Testing
@testable import DNSWire

/// Inputs found by the libFuzzer targets in Tests/Fuzz (see Tests/Fuzz/README.md), kept as
/// named regression tests with the crashing input inline, as miekg/dns keeps `TestCrash*`.
/// Each test states the invariant the fuzzer checked.
@Suite struct FuzzRegressionTests {
    private let origin = DNSName(uncheckedWire: [4] + Array("fuzz".utf8) + [4] + Array("test".utf8) + [0])

    /// FuzzRData's wire invariant: rdata that formats in the typed form parses back to itself,
    /// and other rdata of a typed type is refused in the RFC 3597 form as well.
    private func expectRoundTrip(_ type: RRType, _ wire: [UInt8], typed: Bool) throws {
        let text = RDataText.format(type: type, rdata: wire)
        #expect(!text.hasPrefix("\\#") == typed, "\(text)")
        if typed {
            #expect(try RDataText.parse(type: type, text: text, origin: origin) == wire)
        } else {
            #expect(throws: RDataTextError.self) { try RDataText.parse(type: type, text: text, origin: origin) }
        }
    }

    /// FuzzRData crash-8651b825: a CAA tag of 34 letters formatted as text, but the parser
    /// refused tags over 15 octets. RFC 8659 4.1 only requires a length of at least 1.
    @Test func caaLongTagRoundTrips() throws {
        let wire: [UInt8] = [53, 34] + [UInt8](repeating: 108, count: 58) + [255, 255, 255, 255, 53]
        try expectRoundTrip(.caa, wire, typed: true)
        #expect(try RDataText.parse(type: .caa, text: "0 " + String(repeating: "t", count: 255) + " \"v\"", origin: origin).count == 258)
        #expect(throws: RDataTextError.self) {
            try RDataText.parse(type: .caa, text: "0 " + String(repeating: "t", count: 256) + " \"v\"", origin: origin)
        }
    }

    /// FuzzRData crash-8c7cd8a9: SVCB whose mandatory lists key1027, which is absent. The
    /// formatter printed it and the parser refused its own output (RFC 9460 8).
    @Test func svcbMandatoryKeyMissingIsGeneric() throws {
        let wire: [UInt8] = [0, 1, 0, 0, 0, 0, 4, 0, 1, 4, 3, 0, 1, 0, 6, 2, 104, 50, 2, 104, 51, 0, 3, 0, 2, 1, 187,
                             0, 4, 0, 8, 192, 0, 2, 1, 192, 0, 2, 2, 0, 5, 0, 3, 97, 99, 98, 0, 6, 0, 16, 0, 0, 0, 0,
                             0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 3, 120, 44, 121]
        try expectRoundTrip(.svcb, wire, typed: false)
    }

    /// The same class of mismatch, found by reading the fix above: no-default-alpn without
    /// alpn (RFC 9460 7.1.1) is refused by the parser, so the formatter must not print it.
    @Test func svcbNoDefaultALPNWithoutALPNIsGeneric() throws {
        let wire: [UInt8] = [0, 1, 0, 0, 2, 0, 0]
        try expectRoundTrip(.https, wire, typed: false)
        try expectRoundTrip(.https, [0, 1, 0, 0, 1, 0, 3, 2, 104, 51, 0, 2, 0, 0], typed: true)
    }
}

/// FuzzConfig: an IPv6 text whose dotted tail held a colon ("1.2:3") recursed through the
/// text initializer until the stack overflowed.
@Test func crashIPv6DottedTailWithColon() {
    #expect(IPAddress("1.2:3") == nil)
    #expect(IPAddress("::1.2:3") == nil)
    #expect(IPAddress("::1.2.3.4") != nil)
}
