/// A resource record type (RFC 1035 3.2.2 and the IANA registry).
///
///     let t = RRType(mnemonic: "AAAA")   // RRType.aaaa
///     t?.description                     // "AAAA"
///     RRType(rawValue: 65534).description // "TYPE65534" (RFC 3597 5)
public struct RRType: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ v: UInt16) { self.rawValue = v }

    public static let a = RRType(1)
    public static let ns = RRType(2)
    public static let cname = RRType(5)
    public static let soa = RRType(6)
    public static let ptr = RRType(12)
    public static let hinfo = RRType(13)
    public static let mx = RRType(15)
    public static let txt = RRType(16)
    public static let aaaa = RRType(28)
    public static let srv = RRType(33)
    public static let naptr = RRType(35)
    public static let dname = RRType(39)
    public static let opt = RRType(41)
    public static let ds = RRType(43)
    public static let sshfp = RRType(44)
    public static let rrsig = RRType(46)
    public static let nsec = RRType(47)
    public static let dnskey = RRType(48)
    public static let tlsa = RRType(52)
    public static let cds = RRType(59)
    public static let cdnskey = RRType(60)
    public static let svcb = RRType(64)
    public static let https = RRType(65)
    public static let spf = RRType(99)
    /// The pseudo-type of compact denial (RFC 9824): in an NSEC bitmap, the name does not exist.
    public static let nxname = RRType(128)
    public static let ixfr = RRType(251)
    public static let axfr = RRType(252)
    public static let any = RRType(255)
    public static let caa = RRType(257)

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

    public static func < (a: RRType, b: RRType) -> Bool { a.rawValue < b.rawValue }
}

/// A resource record class. Only IN is served; CH and ANY are recognised in questions.
public struct RRClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let `in` = RRClass(rawValue: 1)
    public static let ch = RRClass(rawValue: 3)
    public static let none = RRClass(rawValue: 254)
    public static let any = RRClass(rawValue: 255)
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
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let noError = RCode(rawValue: 0)
    public static let formErr = RCode(rawValue: 1)
    public static let servFail = RCode(rawValue: 2)
    public static let nxDomain = RCode(rawValue: 3)
    public static let notImp = RCode(rawValue: 4)
    public static let refused = RCode(rawValue: 5)
    public static let badVers = RCode(rawValue: 16)
    public static let badCookie = RCode(rawValue: 23)
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
    public static let qr: UInt16 = 0x8000
    public static let aa: UInt16 = 0x0400
    public static let tc: UInt16 = 0x0200
    public static let rd: UInt16 = 0x0100
    public static let ra: UInt16 = 0x0080
    public static let ad: UInt16 = 0x0020
    public static let cd: UInt16 = 0x0010
    public static func opcode(_ flags: UInt16) -> UInt8 { UInt8((flags >> 11) & 0xF) }
}

/// EDNS option codes this server understands (IANA "DNS EDNS0 Option Codes").
public enum EDNSOption {
    public static let nsid: UInt16 = 3          // RFC 5001
    public static let clientSubnet: UInt16 = 8  // RFC 7871
    public static let cookie: UInt16 = 10       // RFC 7873
    public static let tcpKeepalive: UInt16 = 11 // RFC 7828
    public static let padding: UInt16 = 12      // RFC 7830
}
