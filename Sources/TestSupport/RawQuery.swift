import DNSWire

/// Query packets for the raw client, including malformed ones: DNSWire's `QueryBuilder`
/// writes the query, then the header words, OPT records and trailing bytes the test sets
/// are patched in or appended.
///
///     var q = RawQuery(name: "www.example.com.", type: .a)
///     q.edns = .init(udpSize: 1232)
///     q.qdcountOverride = 2              // RFC 9619 case: expect FORMERR
///     let packet = q.bytes()
public struct RawQuery: Sendable {
    /// An OPT pseudo-record (RFC 6891 6.1.2) with raw options.
    public struct EDNS: Sendable {
        public var udpSize: UInt16
        public var version: UInt8
        public var dnssecOK: Bool
        /// Compact Answers OK (CO, RFC 9824 4).
        public var compactOK: Bool
        /// (code, data) pairs written in order.
        public var options: [(UInt16, [UInt8])]
        public init(udpSize: UInt16 = 1232, version: UInt8 = 0, dnssecOK: Bool = false, compactOK: Bool = false,
                    options: [(UInt16, [UInt8])] = []) {
            self.udpSize = udpSize; self.version = version; self.dnssecOK = dnssecOK; self.compactOK = compactOK
            self.options = options
        }

        /// The wire form of the whole OPT record.
        public var record: [UInt8] {
            var rdata: [UInt8] = []
            for (code, data) in options {
                rdata += be16(code) + be16(UInt16(data.count)) + data
            }
            let ttl = UInt32(version) << 16 | (dnssecOK ? 0x8000 : 0) | (compactOK ? 0x4000 : 0)
            return [0] + be16(RRType.opt.rawValue) + be16(udpSize) + be32(ttl) + be16(UInt16(rdata.count)) + rdata
        }
    }

    public var id: UInt16
    /// The second header word (QR, opcode, AA, TC, RD, ...); RD is off, as for an authoritative query.
    public var flags: UInt16 = 0
    /// The question name in wire form; set `rawQuestionName` to send bytes as they are.
    public var name: String
    public var rawQuestionName: [UInt8]? = nil
    public var type: RRType
    public var qclass: UInt16 = 1
    public var edns: EDNS? = nil
    /// Extra OPT records appended after `edns` (a second OPT is a FORMERR case).
    public var extraAdditional: [[UInt8]] = []
    public var qdcountOverride: UInt16? = nil
    /// Bytes appended after everything else, not counted anywhere.
    public var trailing: [UInt8] = []

    public init(id: UInt16 = 0x4D52, name: String, type: RRType = .a) {
        self.id = id
        self.name = name
        self.type = type
    }

    /// The packet. Names that do not parse are sent as the root name, so bad test input
    /// shows up as a wrong answer rather than a crash in the harness.
    public func bytes() -> [UInt8] {
        let qname = rawQuestionName ?? ((try? DNSName(name).wire) ?? [0])
        var additional: [[UInt8]] = []
        if let edns { additional.append(edns.record) }
        additional += extraAdditional
        var out = QueryBuilder.query(id: id, name: DNSName(uncheckedWire: qname), type: type, rrclass: RRClass(rawValue: qclass))
        out.replaceSubrange(2..<6, with: be16(flags) + be16(qdcountOverride ?? 1))
        out.replaceSubrange(10..<12, with: be16(UInt16(additional.count)))
        for a in additional { out += a }
        return out + trailing
    }

    /// An EDNS Client Subnet option (RFC 7871 6) with the address bytes given as they are,
    /// so tests can send invalid combinations.
    public static func clientSubnet(family: UInt16, source: UInt8, scope: UInt8 = 0, address: [UInt8]) -> (UInt16, [UInt8]) {
        (EDNSOption.clientSubnet, be16(family) + [source, scope] + address)
    }
}

/// The header of a reply, decoded enough for the malformed-packet and pipelining tests.
///
///     let r = DNSReply(bytes)
///     r.rcode == RCode.formErr.rawValue
public struct DNSReply: Sendable {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isValid: Bool { bytes.count >= 12 }
    public var id: UInt16 { word(0) }
    public var flags: UInt16 { word(2) }
    public var qr: Bool { flags & HeaderFlags.qr != 0 }
    public var aa: Bool { flags & HeaderFlags.aa != 0 }
    public var tc: Bool { flags & HeaderFlags.tc != 0 }
    public var ra: Bool { flags & HeaderFlags.ra != 0 }
    /// The 4-bit header RCODE (the EDNS extended bits are not included).
    public var rcode: UInt16 { flags & 0xF }
    public var qdcount: UInt16 { word(4) }
    public var ancount: UInt16 { word(6) }
    public var nscount: UInt16 { word(8) }
    public var arcount: UInt16 { word(10) }

    private func word(_ off: Int) -> UInt16 {
        guard off + 2 <= bytes.count else { return 0 }
        return UInt16(bytes[off]) << 8 | UInt16(bytes[off + 1])
    }
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
