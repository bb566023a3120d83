/// EDNS Client Subnet option as received (RFC 7871 6).
public struct ClientSubnet: Hashable, Sendable {
    public var family: UInt16
    public var sourcePrefix: UInt8
    public var scopePrefix: UInt8
    /// The address with every bit past `sourcePrefix` zero (validated on parse).
    public var address: IPAddress

    public init(family: UInt16, sourcePrefix: UInt8, scopePrefix: UInt8, address: IPAddress) {
        self.family = family; self.sourcePrefix = sourcePrefix; self.scopePrefix = scopePrefix; self.address = address
    }
}

/// What the OPT record of a query asked for (RFC 6891 6.1.2).
public struct EDNSInfo: Sendable {
    public var udpSize: UInt16 = 512
    public var version: UInt8 = 0
    public var dnssecOK: Bool = false
    /// Compact Answers OK (CO, RFC 9824 4): the client accepts NXDOMAIN with a compact
    /// (NXNAME) denial proof.
    public var compactOK: Bool = false
    public var clientSubnet: ClientSubnet? = nil
    public var nsidRequested: Bool = false
    /// Offset and length of the COOKIE option data in the query (RFC 7873 4), -1 if absent.
    public var cookieOffset: Int = -1
    public var cookieLength: Int = 0
    public var keepaliveRequested: Bool = false
    public init() {}
}

/// A parsed query header and question. Holds offsets into the caller's packet rather
/// than copies, so parsing allocates nothing; the packet must outlive it.
///
///     let q = try packet.withUnsafeBytes { try ParsedQuery.parse($0) }
///     q.qtype == .a
public struct ParsedQuery: Sendable {
    public var id: UInt16 = 0
    public var flags: UInt16 = 0
    public var qdcount: UInt16 = 0
    public var ancount: UInt16 = 0
    public var nscount: UInt16 = 0
    public var arcount: UInt16 = 0
    /// The question name sits at offset 12 uncompressed (nothing precedes it to point to).
    public var qnameLength: Int = 0
    public var qtype: RRType = .a
    public var qclass: RRClass = .in
    /// Offset just past the question section.
    public var questionEnd: Int = 12
    public var edns: EDNSInfo? = nil
    /// Where a TSIG record (type 250, RFC 8945) starts in the query, or -1 without one.
    public var tsigStart: Int = -1

    @inlinable public init() {}

    @inlinable public var opcode: UInt8 { HeaderFlags.opcode(flags) }
    @inlinable public var isResponse: Bool { flags & HeaderFlags.qr != 0 }
    @inlinable public var recursionDesired: Bool { flags & HeaderFlags.rd != 0 }

    /// Reads only the fixed header (12 bytes). Used to decide between dropping a packet
    /// and answering FORMERR before anything else is trusted.
    public static func header(_ msg: UnsafeRawBufferPointer) -> ParsedQuery? {
        guard msg.count >= 12 else { return nil }
        var q = ParsedQuery()
        q.id = UInt16(msg[0]) << 8 | UInt16(msg[1])
        q.flags = UInt16(msg[2]) << 8 | UInt16(msg[3])
        q.qdcount = UInt16(msg[4]) << 8 | UInt16(msg[5])
        q.ancount = UInt16(msg[6]) << 8 | UInt16(msg[7])
        q.nscount = UInt16(msg[8]) << 8 | UInt16(msg[9])
        q.arcount = UInt16(msg[10]) << 8 | UInt16(msg[11])
        return q
    }

    /// `header(_:)` in place, for a caller that keeps one `ParsedQuery` per worker: every
    /// field as `init()` leaves it, then the header's. False (and `self` reset) for a
    /// message shorter than a header.
    /// Inlinable: the engine (another module) calls it once per query.
    @inlinable @inline(__always) public mutating func readHeader(_ msg: UnsafeRawBufferPointer) -> Bool {
        self = ParsedQuery()
        guard msg.count >= 12, let p = msg.baseAddress else { return false }
        id = Self.u16(p, 0)
        flags = Self.u16(p, 2)
        qdcount = Self.u16(p, 4)
        ancount = Self.u16(p, 6)
        nscount = Self.u16(p, 8)
        arcount = Self.u16(p, 10)
        return true
    }

    /// `parse(_:header:)` in place, `self` holding the header `readHeader` read: the same
    /// result, the same errors, and on an error `self` still holds the header alone.
    public mutating func parseBody(_ msg: UnsafeRawBufferPointer) throws(DNSWireError) {
        if readCommon(msg) { return }
        self = try Self.parseGeneral(msg, header: self)
    }

    /// Parses a whole query: header, the single question, and any OPT record.
    ///
    /// Throws for every malformed case the server answers with FORMERR: QDCOUNT above 1
    /// (RFC 9619), a bad or compressed question name, records that overrun the message, an
    /// OPT record that is not in the additional section, has a non-root owner or appears
    /// twice (RFC 6891 6.1.1), a malformed Client Subnet option (RFC 7871 6), and bytes left
    /// after the last record.
    public static func parse(_ msg: UnsafeRawBufferPointer) throws(DNSWireError) -> ParsedQuery {
        guard let h = header(msg) else { throw .truncated(msg.count) }
        return try parse(msg, header: h)
    }

    /// The same, for a caller that already read the header with `header(_:)`.
    public static func parse(_ msg: UnsafeRawBufferPointer, header h: ParsedQuery) throws(DNSWireError) -> ParsedQuery {
        var q = h
        if q.readCommon(msg) { return q }
        return try parseGeneral(msg, header: h)
    }

    /// Every message `parseCommon` leaves: any record layout, and every error.
    static func parseGeneral(_ msg: UnsafeRawBufferPointer, header h: ParsedQuery) throws(DNSWireError) -> ParsedQuery {
        var q = h
        // QDCOUNT 0 is allowed only to fetch a server cookie (RFC 7873 5.4); the engine
        // answers FORMERR when no COOKIE option came with it.
        guard q.qdcount <= 1 else { throw .badQuestionCount(4) }
        if q.qdcount == 1 {
            // RFC 1035 4.1.4: a pointer names a prior occurrence, and nothing before the
            // question is a name, so a pointer here can only reach into the header. The
            // question is echoed verbatim into the response, so it must be uncompressed.
            let nameEnd = try Wire.readName(msg, at: 12, compressed: false)
            q.qnameLength = nameEnd - 12
            q.qtype = RRType(try Wire.getU16(msg, nameEnd))
            q.qclass = RRClass(rawValue: try Wire.getU16(msg, nameEnd + 2))
            q.questionEnd = nameEnd + 4
        }
        var off = q.questionEnd
        let total = Int(q.ancount) + Int(q.nscount) + Int(q.arcount)
        for i in 0..<total {
            let start = off
            off = try Wire.readName(msg, at: off)
            let type = try Wire.getU16(msg, off)
            let rdlen = Int(try Wire.getU16(msg, off + 8))
            let rdata = off + 10
            guard rdata + rdlen <= msg.count else { throw .truncated(rdata) }
            if type == RRType.opt.rawValue {
                guard i >= Int(q.ancount) + Int(q.nscount), q.edns == nil, msg[start] == 0 else { throw .badOPT(start) }
                var e = EDNSInfo()
                e.udpSize = try Wire.getU16(msg, off + 2)
                let ttl = try Wire.getU32(msg, off + 4)
                e.version = UInt8((ttl >> 16) & 0xFF)
                e.dnssecOK = ttl & 0x8000 != 0
                e.compactOK = ttl & 0x4000 != 0
                try parseOptions(msg, from: rdata, to: rdata + rdlen, into: &e)
                q.edns = e
            } else if type == 250 {
                q.tsigStart = start
            }
            off = rdata + rdlen
        }
        guard off == msg.count else { throw .trailingData(off) }
        return q
    }

    /// The shape of nearly every query, read with one pass and no error paths: one
    /// uncompressed question, no answer or authority records, and at most one additional
    /// record that is an OPT with a root owner, ending the message. Fills `self` (holding
    /// the header) and returns true; false for anything else (or anything wrong), with
    /// `self` untouched, which the general parse then reads, or rejects, as before. What
    /// this reads is exactly what the general parse reads from the same message.
    @inline(__always)
    mutating func readCommon(_ msg: UnsafeRawBufferPointer) -> Bool {
        guard qdcount == 1, ancount == 0, nscount == 0, arcount <= 1, let p = msg.baseAddress else { return false }
        let n = msg.count
        // The question name: label lengths below 64, at most 255 bytes, inside the message.
        var off = 12
        while true {
            guard off < n else { return false }
            let len = Int(p.load(fromByteOffset: off, as: UInt8.self))
            if len == 0 { break }
            guard len < 0x40 else { return false }
            off &+= len &+ 1
        }
        let nameEnd = off &+ 1
        guard nameEnd &- 12 <= 255, nameEnd &+ 4 <= n else { return false }
        let end = nameEnd &+ 4
        if arcount == 1 {
            // Root owner (1 byte), TYPE, CLASS, TTL, RDLENGTH: 11 bytes, then the rdata.
            guard end &+ 11 <= n, p.load(fromByteOffset: end, as: UInt8.self) == 0,
                  Self.u16(p, end &+ 1) == 41 else { return false } // OPT
            let rdata = end &+ 11
            guard rdata &+ Int(Self.u16(p, end &+ 9)) == n else { return false }
            var e = EDNSInfo()
            e.udpSize = Self.u16(p, end &+ 3)
            e.version = p.load(fromByteOffset: end &+ 6, as: UInt8.self)
            let flags = Self.u16(p, end &+ 7)
            e.dnssecOK = flags & 0x8000 != 0
            e.compactOK = flags & 0x4000 != 0
            if n > rdata {
                if n &- rdata >= 4 && Self.u16(p, rdata) == EDNSOption.clientSubnet && rdata &+ 4 &+ Int(Self.u16(p, rdata &+ 2)) == n {
                    // The usual option list, one Client Subnet option: what `parseOptions`
                    // does for it, without its loop.
                    guard let subnet = try? Self.parseClientSubnet(msg, at: rdata &+ 4, length: n &- rdata &- 4) else { return false }
                    e.clientSubnet = subnet
                } else {
                    // Parsed into a copy: were `e` itself passed inout to the call, it would
                    // live in memory on every path and be copied into `edns` field by field
                    // (about 30 instructions per query with EDNS).
                    var parsed = e
                    guard (try? Self.parseOptions(msg, from: rdata, to: n, into: &parsed)) != nil else { return false }
                    e = parsed
                }
            }
            edns = e
        } else {
            guard end == n else { return false }
        }
        qnameLength = nameEnd &- 12
        qtype = RRType(Self.u16(p, nameEnd))
        qclass = RRClass(rawValue: Self.u16(p, nameEnd &+ 2))
        questionEnd = end
        return true
    }

    @inlinable @inline(__always) static func u16(_ p: UnsafeRawPointer, _ at: Int) -> UInt16 {
        UInt16(p.load(fromByteOffset: at, as: UInt8.self)) << 8 | UInt16(p.load(fromByteOffset: at &+ 1, as: UInt8.self))
    }

    static func parseOptions(_ msg: UnsafeRawBufferPointer, from: Int, to end: Int, into e: inout EDNSInfo) throws(DNSWireError) {
        var off = from
        // Each option takes at least 4 bytes, so this loop runs at most rdlen/4 (< 16384) times.
        // Option headers inside the message are read without bounds checks; one that runs
        // past it takes the checked reads, which throw as before.
        let inMessage = end <= msg.count && msg.baseAddress != nil
        while off < end {
            let direct = inMessage && off &+ 4 <= end
            let code = try direct ? u16(msg.baseAddress!, off) : Wire.getU16(msg, off)
            let len = Int(try direct ? u16(msg.baseAddress!, off &+ 2) : Wire.getU16(msg, off + 2))
            let data = off + 4
            guard data + len <= end else { throw .badOption(off) }
            switch code {
            case EDNSOption.clientSubnet:
                e.clientSubnet = try parseClientSubnet(msg, at: data, length: len)
            case EDNSOption.nsid:
                e.nsidRequested = true
            case EDNSOption.cookie:
                // RFC 7873 5.2.2: a client cookie alone is 8 bytes; with a server cookie 16 to 40.
                guard len == 8 || (len >= 16 && len <= 40) else { throw .badOption(off) }
                e.cookieOffset = data
                e.cookieLength = len
            case EDNSOption.tcpKeepalive:
                e.keepaliveRequested = true
            default:
                break // RFC 6891 6.1.2: unknown options are ignored.
            }
            off = data + len
        }
    }

    /// The first `n` bytes (0 to 8) at `p` as the high bytes of a big-endian word, the rest
    /// zero, reading no byte past `p + n`: two overlapping 4-byte loads for 4 to 8 bytes,
    /// three single bytes for 1 to 3.
    @inline(__always) static func leadingBytes(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        if n >= 4 {
            let head = UInt64(UInt32(bigEndian: p.loadUnaligned(as: UInt32.self)))
            let tail = UInt64(UInt32(bigEndian: (p + (n &- 4)).loadUnaligned(as: UInt32.self)))
            return head &<< 32 | tail &<< UInt64(64 &- 8 &* n)
        }
        guard n > 0 else { return 0 }
        let first = UInt64(p.load(as: UInt8.self))
        let mid = UInt64(p.load(fromByteOffset: n &>> 1, as: UInt8.self))
        let last = UInt64(p.load(fromByteOffset: n &- 1, as: UInt8.self))
        return first &<< 56 | mid &<< UInt64(56 &- 8 &* (n &>> 1)) | last &<< UInt64(56 &- 8 &* (n &- 1))
    }

    /// RFC 7871 6: FAMILY 1 or 2; SOURCE PREFIX-LENGTH within the family; ADDRESS exactly
    /// ceil(source/8) bytes with no bits set past the prefix. Anything else is FORMERR.
    @inline(__always) static func parseClientSubnet(_ msg: UnsafeRawBufferPointer, at off: Int, length: Int) throws(DNSWireError) -> ClientSubnet {
        guard length >= 4 else { throw .badOption(off) }
        // Callers pass an option inside the message (`parseOptions` checked it): its bytes
        // are read without bounds checks.
        guard off >= 0, off + length <= msg.count, let base = msg.baseAddress else { throw .badOption(off) }
        let p = base + off
        let family = u16(p, 0)
        let source = Int(p.load(fromByteOffset: 2, as: UInt8.self))
        let scope = p.load(fromByteOffset: 3, as: UInt8.self)
        let maxBits: Int
        switch family {
        case 1: maxBits = 32
        case 2: maxBits = 128
        default: throw .badOption(off)
        }
        guard source <= maxBits, Int(scope) <= maxBits else { throw .badOption(off) }
        let addrLen = (source + 7) / 8
        guard length - 4 == addrLen else { throw .badOption(off) }
        // The address bytes as two big-endian words, with fixed-width loads that stay inside
        // the option's `addrLen` bytes (no byte loop).
        let a = p + 4
        let hi: UInt64, lo: UInt64
        if addrLen <= 8 {
            hi = leadingBytes(a, addrLen); lo = 0
        } else {
            hi = UInt64(bigEndian: a.loadUnaligned(as: UInt64.self)); lo = leadingBytes(a + 8, addrLen &- 8)
        }
        // No bits set past the source prefix (`source <= maxBits`, so this is
        // `masked(to: source) == address` on the two words).
        let hiHost: UInt64 = source >= 64 ? 0 : ~UInt64(0) &>> UInt64(source)
        let loHost: UInt64 = source <= 64 ? ~UInt64(0) : (source >= 128 ? 0 : ~UInt64(0) &>> UInt64(source &- 64))
        guard hi & hiHost == 0, lo & loHost == 0 else { throw .badOption(off) }
        let addr = IPAddress(family: family == 1 ? .v4 : .v6, hi: hi, lo: lo)
        return ClientSubnet(family: family, sourcePrefix: UInt8(source), scopePrefix: scope, address: addr)
    }
}
