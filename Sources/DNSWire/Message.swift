/// A whole message decoded into values, for tools and tests (health checks, `drill`,
/// the test suite). The query path does not use it: it works on offsets instead.
///
///     let m = try Message(decoding: bytes)
///     m.rcode == .nxDomain
///     m.answers.first?.type == .a
public struct Message: Sendable {
    public struct Record: Hashable, Sendable {
        public var name: DNSName
        public var type: RRType
        public var rrclass: RRClass
        public var ttl: UInt32
        /// Uncompressed rdata: names inside NS, CNAME, PTR, DNAME, MX, SOA, SRV are expanded.
        public var rdata: [UInt8]
        public init(name: DNSName, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: [UInt8]) {
            self.name = name; self.type = type; self.rrclass = rrclass; self.ttl = ttl; self.rdata = rdata
        }
    }

    public var id: UInt16 = 0
    public var flags: UInt16 = 0
    public var questionName: DNSName = .root
    public var questionType: RRType = .a
    public var questionClass: RRClass = .in
    public var hasQuestion = false
    public var answers: [Record] = []
    public var authority: [Record] = []
    /// Additional records other than OPT.
    public var additional: [Record] = []
    /// The OPT record, if any (its class is the UDP size, its TTL the extended flags).
    public var opt: Record? = nil

    public init() {}

    /// The full RCODE, with the upper bits from OPT (RFC 6891 6.1.3).
    public var rcode: RCode {
        let high = opt.map { UInt16($0.ttl >> 24) << 4 } ?? 0
        return RCode(rawValue: high | (flags & 0xF))
    }

    public func has(_ flag: UInt16) -> Bool { flags & flag != 0 }

    /// EDNS options from the OPT record as (code, data) pairs.
    public var ednsOptions: [(code: UInt16, data: [UInt8])] {
        guard let o = opt else { return [] }
        var out: [(UInt16, [UInt8])] = []
        var i = 0
        let d = o.rdata
        while i + 4 <= d.count {
            let code = UInt16(d[i]) << 8 | UInt16(d[i + 1])
            let len = Int(UInt16(d[i + 2]) << 8 | UInt16(d[i + 3]))
            guard i + 4 + len <= d.count else { break }
            out.append((code, Array(d[(i + 4)..<(i + 4 + len)])))
            i += 4 + len
        }
        return out
    }

    public init(decoding bytes: [UInt8]) throws(DNSWireError) {
        let r: Result<Message, DNSWireError> = bytes.withUnsafeBytes { p in
            Result { () throws(DNSWireError) in try Message.decode(p) }
        }
        self = try r.get()
    }

    static func decode(_ msg: UnsafeRawBufferPointer) throws(DNSWireError) -> Message {
        guard let h = ParsedQuery.header(msg) else { throw .truncated(msg.count) }
        var m = Message()
        m.id = h.id
        m.flags = h.flags
        var off = 12
        for _ in 0..<Int(h.qdcount) {
            var n: [UInt8] = []
            off = try Wire.readName(msg, at: off, into: &n)
            m.questionName = DNSName(uncheckedWire: n)
            m.questionType = RRType(try Wire.getU16(msg, off))
            m.questionClass = RRClass(rawValue: try Wire.getU16(msg, off + 2))
            m.hasQuestion = true
            off += 4
        }
        func record() throws(DNSWireError) -> Record {
            var n: [UInt8] = []
            off = try Wire.readName(msg, at: off, into: &n)
            let type = RRType(try Wire.getU16(msg, off))
            let cls = RRClass(rawValue: try Wire.getU16(msg, off + 2))
            let ttl = try Wire.getU32(msg, off + 4)
            let len = Int(try Wire.getU16(msg, off + 8))
            let start = off + 10
            guard start + len <= msg.count else { throw .truncated(start) }
            let rdata = try expandRData(msg, type: type, start: start, length: len)
            off = start + len
            return Record(name: DNSName(uncheckedWire: n), type: type, rrclass: cls, ttl: ttl, rdata: rdata)
        }
        for _ in 0..<Int(h.ancount) { m.answers.append(try record()) }
        for _ in 0..<Int(h.nscount) { m.authority.append(try record()) }
        for _ in 0..<Int(h.arcount) {
            let r = try record()
            if r.type == .opt { m.opt = r } else { m.additional.append(r) }
        }
        return m
    }

    /// Copies rdata, expanding compressed names in the types RFC 3597 4 allows to compress.
    static func expandRData(_ msg: UnsafeRawBufferPointer, type: RRType, start: Int, length: Int) throws(DNSWireError) -> [UInt8] {
        let end = start + length
        var out: [UInt8] = []
        func name(_ at: Int) throws(DNSWireError) -> Int {
            let next = try Wire.readName(msg, at: at, into: &out)
            guard next <= end else { throw .badRData(at) }
            return next
        }
        func raw(_ from: Int, _ to: Int) throws(DNSWireError) {
            guard from <= to, to <= end else { throw .badRData(from) }
            out.append(contentsOf: msg[from..<to])
        }
        switch type {
        case .ns, .cname, .ptr, .dname:
            let n = try name(start)
            guard n == end else { throw .badRData(n) }
        case .mx:
            try raw(start, start + 2)
            let n = try name(start + 2)
            guard n == end else { throw .badRData(n) }
        case .srv:
            try raw(start, start + 6)
            let n = try name(start + 6)
            guard n == end else { throw .badRData(n) }
        case .soa:
            let a = try name(start)
            let b = try name(a)
            guard end - b == 20 else { throw .badRData(b) }
            try raw(b, end)
        default:
            try raw(start, end)
        }
        return out
    }
}

/// Builds query packets, for clients of the server (health checks, drills, tests).
///
///     let q = QueryBuilder.query(id: 7, name: try DNSName("example.com."), type: .a, edns: true)
public enum QueryBuilder {
    public static func query(id: UInt16, name: DNSName, type: RRType, rrclass: RRClass = .in, recursionDesired: Bool = false,
                             edns: Bool = false, udpSize: UInt16 = 1232, ednsVersion: UInt8 = 0,
                             clientSubnet: IPPrefix? = nil, nsid: Bool = false) -> [UInt8] {
        var b: [UInt8] = []
        func u16(_ v: UInt16) { b.append(UInt8(v >> 8)); b.append(UInt8(v & 0xFF)) }
        u16(id)
        u16(recursionDesired ? HeaderFlags.rd : 0)
        u16(1); u16(0); u16(0); u16(edns ? 1 : 0)
        b.append(contentsOf: name.wire)
        u16(type.rawValue)
        u16(rrclass.rawValue)
        if edns {
            var opts: [UInt8] = []
            if let s = clientSubnet {
                let bytes = (s.length + 7) / 8
                opts += [0, UInt8(EDNSOption.clientSubnet), 0, UInt8(4 + bytes)]
                opts += [0, s.address.isV4 ? 1 : 2, UInt8(s.length), 0]
                for i in 0..<bytes { opts.append(s.address.byte(i)) }
            }
            if nsid { opts += [0, UInt8(EDNSOption.nsid), 0, 0] }
            b.append(0)
            u16(RRType.opt.rawValue)
            u16(udpSize)
            b += [0, ednsVersion, 0, 0]
            u16(UInt16(opts.count))
            b += opts
        }
        return b
    }
}
