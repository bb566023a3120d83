/// A resource record type (RFC 1035 3.2.2 and the IANA registry).
///
///     let t = RRType(mnemonic: "AAAA")   // RRType.aaaa
///     t?.description                     // "AAAA"
///     RRType(rawValue: 65534).description // "TYPE65534" (RFC 3597 5)
public struct RRType: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ v: UInt16) { self.rawValue = v }

    @inlinable public static var a: RRType { RRType(rawValue: 1) }
    @inlinable public static var ns: RRType { RRType(rawValue: 2) }
    @inlinable public static var cname: RRType { RRType(rawValue: 5) }
    @inlinable public static var soa: RRType { RRType(rawValue: 6) }
    @inlinable public static var ptr: RRType { RRType(rawValue: 12) }
    @inlinable public static var hinfo: RRType { RRType(rawValue: 13) }
    @inlinable public static var mx: RRType { RRType(rawValue: 15) }
    @inlinable public static var txt: RRType { RRType(rawValue: 16) }
    @inlinable public static var aaaa: RRType { RRType(rawValue: 28) }
    @inlinable public static var srv: RRType { RRType(rawValue: 33) }
    @inlinable public static var naptr: RRType { RRType(rawValue: 35) }
    @inlinable public static var dname: RRType { RRType(rawValue: 39) }
    @inlinable public static var opt: RRType { RRType(rawValue: 41) }
    @inlinable public static var ds: RRType { RRType(rawValue: 43) }
    @inlinable public static var sshfp: RRType { RRType(rawValue: 44) }
    @inlinable public static var rrsig: RRType { RRType(rawValue: 46) }
    @inlinable public static var nsec: RRType { RRType(rawValue: 47) }
    @inlinable public static var dnskey: RRType { RRType(rawValue: 48) }
    @inlinable public static var tlsa: RRType { RRType(rawValue: 52) }
    @inlinable public static var cds: RRType { RRType(rawValue: 59) }
    @inlinable public static var cdnskey: RRType { RRType(rawValue: 60) }
    @inlinable public static var svcb: RRType { RRType(rawValue: 64) }
    @inlinable public static var https: RRType { RRType(rawValue: 65) }
    @inlinable public static var spf: RRType { RRType(rawValue: 99) }
    /// The pseudo-type of compact denial (RFC 9824): in an NSEC bitmap, the name does not exist.
    @inlinable public static var nxname: RRType { RRType(rawValue: 128) }
    @inlinable public static var ixfr: RRType { RRType(rawValue: 251) }
    @inlinable public static var axfr: RRType { RRType(rawValue: 252) }
    @inlinable public static var any: RRType { RRType(rawValue: 255) }
    @inlinable public static var caa: RRType { RRType(rawValue: 257) }

    static let names: [(RRType, String)] = [
        (.a, "A"), (.ns, "NS"), (.cname, "CNAME"), (.soa, "SOA"), (.ptr, "PTR"), (.hinfo, "HINFO"),
        (.mx, "MX"), (.txt, "TXT"), (.aaaa, "AAAA"), (.srv, "SRV"), (.naptr, "NAPTR"), (.dname, "DNAME"),
        (.opt, "OPT"), (.ds, "DS"), (.sshfp, "SSHFP"), (.rrsig, "RRSIG"), (.nsec, "NSEC"), (.dnskey, "DNSKEY"),
        (.tlsa, "TLSA"), (.cds, "CDS"), (.cdnskey, "CDNSKEY"), (.nxname, "NXNAME"), (.svcb, "SVCB"), (.https, "HTTPS"), (.spf, "SPF"), (.ixfr, "IXFR"), (.axfr, "AXFR"),
        (.any, "ANY"), (.caa, "CAA"),
    ]

    /// Parses a mnemonic (case-insensitive) or the RFC 3597 `TYPEnnn` form.
    public init?(mnemonic: some StringProtocol) {
        let up = mnemonic.uppercased()
        if let hit = RRType.names.first(where: { $0.1 == up }) { self = hit.0; return }
        if up.hasPrefix("TYPE"), let v = UInt16(up.dropFirst(4)) { self.init(v); return }
        return nil
    }

    public var description: String {
        RRType.names.first(where: { $0.0 == self })?.1 ?? "TYPE\(rawValue)"
    }

    /// Meta and question-only types (RFC 6895 3.1) that never appear in a zone.
    public var isMeta: Bool { rawValue == 41 || (rawValue >= 128 && rawValue <= 255) }

    @inlinable public static func < (a: RRType, b: RRType) -> Bool { a.rawValue < b.rawValue }
    @inlinable public static func == (a: RRType, b: RRType) -> Bool { a.rawValue == b.rawValue }
}

/// A resource record class. Only IN is served; CH and ANY are recognised in questions.
public struct RRClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public static var `in`: RRClass { RRClass(rawValue: 1) }
    @inlinable public static var ch: RRClass { RRClass(rawValue: 3) }
    @inlinable public static var none: RRClass { RRClass(rawValue: 254) }
    @inlinable public static var any: RRClass { RRClass(rawValue: 255) }
    /// Written out and inlinable (as `RRType`'s): the synthesized one is a call per
    /// comparison from other modules.
    @inlinable public static func == (a: RRClass, b: RRClass) -> Bool { a.rawValue == b.rawValue }
    public var description: String {
        switch rawValue {
        case 1: return "IN"
        case 3: return "CH"
        case 255: return "ANY"
        default: return "CLASS\(rawValue)"
        }
    }
}

/// Response codes, including the EDNS extended ones (RFC 6891 6.1.3, RFC 7873).
public struct RCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public static var noError: RCode { RCode(rawValue: 0) }
    @inlinable public static var formErr: RCode { RCode(rawValue: 1) }
    @inlinable public static var servFail: RCode { RCode(rawValue: 2) }
    @inlinable public static var nxDomain: RCode { RCode(rawValue: 3) }
    @inlinable public static var notImp: RCode { RCode(rawValue: 4) }
    @inlinable public static var refused: RCode { RCode(rawValue: 5) }
    @inlinable public static var badVers: RCode { RCode(rawValue: 16) }
    @inlinable public static var badCookie: RCode { RCode(rawValue: 23) }
    @inlinable public static func == (a: RCode, b: RCode) -> Bool { a.rawValue == b.rawValue }
    public var description: String {
        switch rawValue {
        case 0: return "NOERROR"
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        case 16: return "BADVERS"
        case 23: return "BADCOOKIE"
        default: return "RCODE\(rawValue)"
        }
    }
}

/// Header flag bits in the second 16-bit word (RFC 1035 4.1.1).
public enum HeaderFlags {
    @inlinable public static var qr: UInt16 { 0x8000 }
    @inlinable public static var aa: UInt16 { 0x0400 }
    @inlinable public static var tc: UInt16 { 0x0200 }
    @inlinable public static var rd: UInt16 { 0x0100 }
    @inlinable public static var ra: UInt16 { 0x0080 }
    @inlinable public static var ad: UInt16 { 0x0020 }
    @inlinable public static var cd: UInt16 { 0x0010 }
    @inlinable public static func opcode(_ flags: UInt16) -> UInt8 { UInt8((flags >> 11) & 0xF) }
}

/// EDNS option codes this server understands (IANA "DNS EDNS0 Option Codes").
public enum EDNSOption {
    @inlinable public static var nsid: UInt16 { 3 }          // RFC 5001
    @inlinable public static var clientSubnet: UInt16 { 8 }  // RFC 7871
    @inlinable public static var cookie: UInt16 { 10 }       // RFC 7873
    @inlinable public static var tcpKeepalive: UInt16 { 11 } // RFC 7828
    @inlinable public static var padding: UInt16 { 12 }      // RFC 7830
}
