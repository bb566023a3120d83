import DNSWire

/// Settings the engine reads per query. Part of the immutable snapshot.
public struct EngineOptions: Sendable {
    /// Largest UDP response offered to EDNS clients (DNS Flag Day 2020: 1232).
    public var maxUDPSize: Int = 1232
    /// Returned in an NSID option to clients that ask for it (RFC 5001); nil answers no NSID.
    public var nsid: [UInt8]? = nil
    /// Most CNAMEs followed inside served zones before the answer stops (loop bound).
    public var maxCNAMEChain: Int = 8
    /// DNS Cookies (RFC 7873, RFC 9018); nil ignores COOKIE options as a server without
    /// cookie support would.
    public var cookies: ServerCookies? = nil
    public init() {}
}

/// What a dynamic (GSLB) name wrote for one question.
public struct DynamicAnswer: Sendable {
    /// Records written into the answer section; 0 means NODATA for this type.
    public var records: Int
    /// ECS scope prefix length of the decision (RFC 7871 7.2); 0 when it did not depend on the client.
    public var scope: UInt8
    /// Offset in the message of a CNAME target written as the answer, or -1.
    public var cnameTargetOffset: Int
    public init(records: Int, scope: UInt8, cnameTargetOffset: Int = -1) {
        self.records = records; self.scope = scope; self.cnameTargetOffset = cnameTargetOffset
    }
}

/// A GSLB name the lookup reached: the caller (the answering pipeline) decides and writes
/// its records into `QueryEngine.writer`, then hands the engine a `DynamicAnswer` through
/// `resume`. The engine knows nothing of policies or health. Who asked is the caller's
/// source address and `QueryEngine.clientSubnet`: kept out of this value, so an
/// `EngineStep` is two words, returned in registers (with the client in it, the step was
/// 72 bytes, copied through memory at every return between the lookup and the caller).
public struct GSLBQuestion: Sendable {
    /// The name's index in the configuration (`ZoneNode.dynamicIndex`).
    public var index: Int32
    /// A type the name's policy owns (`ZoneNode.dynamicTypes`): A or AAAA, or any type at a
    /// name that answers CNAME. ANY asks for A, or for AAAA at a name that answers only
    /// AAAA and holds no static RRset of a lower type.
    public var qtype: RRType
    /// Offset in the message of the owner name to point to (12, the question, unless a
    /// CNAME chain led here).
    public var ownerOffset: Int
}

/// How far the engine got: finished, or stopped at a GSLB name for the caller to answer.
public enum EngineStep: Sendable {
    case done
    case gslb(GSLBQuestion)
}

/// What kind of response the engine produced, for response rate limiting and metrics
/// (which read this instead of parsing the response bytes again).
public enum ResponseKind: UInt8, Sendable {
    /// Records in the answer section.
    case answer
    /// NOERROR with an empty answer section at a name that exists.
    case nodata
    case nxdomain
    /// A delegation: NS records in the authority section, AA clear.
    case referral
    /// Any other RCODE (FORMERR, REFUSED, NOTIMP, BADVERS, SERVFAIL).
    case error
    /// Nothing is sent (a runt, or a response sent to us).
    case none
}

/// What one response holds, as the engine built it.
public struct EngineOutcome: Sendable {
    public var kind: ResponseKind
    public var rcode: RCode
    /// The question's type (meaningful when `qdcount` is 1).
    public var qtype: RRType
    public var qdcount: UInt16
    /// Offset just past the question in the query and the response.
    public var questionEnd: Int
    /// Records in the answer section.
    public var answers: Int
    public var truncated: Bool
    /// The ECS scope prefix length sent (RFC 7871 7.2).
    public var scope: UInt8
    /// The query carried a Client Subnet option (echoed with `scope` when EDNS is answered).
    public var ecs: Bool = false
    /// Where the query's TSIG record starts, or -1 (`QueryEngine.queryTSIGStart`).
    public var tsigStart: Int = -1

    /// The memberwise initializer, for `QueryEngine.outcome` (inlinable).
    @usableFromInline init(kind: ResponseKind, rcode: RCode, qtype: RRType, qdcount: UInt16, questionEnd: Int, answers: Int,
                           truncated: Bool, scope: UInt8, ecs: Bool, tsigStart: Int) {
        self.kind = kind; self.rcode = rcode; self.qtype = qtype; self.qdcount = qdcount; self.questionEnd = questionEnd
        self.answers = answers; self.truncated = truncated; self.scope = scope; self.ecs = ecs; self.tsigStart = tsigStart
    }
}

/// Turns one query into one response: the authoritative algorithm of RFC 1034 4.3.2 with
/// RFC 2308 negative answers, RFC 4592 wildcards, RFC 8482 ANY, RFC 6891 EDNS and
/// RFC 7871 Client Subnet echo.
///
/// One engine per worker thread: it owns scratch buffers and a `MessageWriter` and is not
/// thread-safe. The zones it reads are immutable and shared. Steady state allocates nothing.
///
///     let engine = QueryEngine()
///     let n = engine.respond(query: q, client: addr, tcp: false, zones: zoneSet, options: opts, out: buf)
public final class QueryEngine {
    public let writer = MessageWriter()

    /// Lowercase wire form of the name being resolved (question, then CNAME targets).
    private let name: UnsafeMutableRawBufferPointer
    // Per-query state of a single-threaded engine: no dynamic exclusivity checks (see MessageWriter).
    @exclusivity(unchecked) private var nameLength = 0
    /// Label start offsets of `name` (a name has at most 127 labels).
    private let labelOffsets: UnsafeMutablePointer<Int>
    /// Offsets in the message of names whose addresses go in the additional section.
    private let additionalTargets: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) private var additionalCount = 0
    private static let maxAdditionalTargets = 32

    // Per-query state.
    // What `outcome`, `clientSubnet`, `dnssecOK` and the common case of `resume` read is
    // `@usableFromInline`: the answering pipeline (another module) calls them once per
    // query, where each was a call of its own (`outcome` alone cost 33 instructions).
    @usableFromInline @exclusivity(unchecked) var an = 0
    @exclusivity(unchecked) private var ns = 0
    @exclusivity(unchecked) private var ar = 0
    @usableFromInline @exclusivity(unchecked) var rcode: RCode = .noError
    @exclusivity(unchecked) private var aa = false
    @usableFromInline @exclusivity(unchecked) var tc = false
    @usableFromInline @exclusivity(unchecked) var scope: UInt8 = 0
    @usableFromInline @exclusivity(unchecked) var kind: ResponseKind = .none
    // The query being answered, kept between `begin`, `resume` and `finish`.
    @usableFromInline @exclusivity(unchecked) var pq = ParsedQuery()
    @exclusivity(unchecked) private var limit = 0
    /// Length of a response already complete (header only, or nothing: 0); -1 while open.
    @exclusivity(unchecked) private var finalLength = -1
    // Where the CNAME chain stands: the zone and name being resolved, the owner to point
    // to, the links followed, and a node found without a walk (-1 when none).
    @exclusivity(unchecked) private var zoneIndex = 0
    @exclusivity(unchecked) private var originOffset = 0
    @exclusivity(unchecked) private var owner = 12
    @exclusivity(unchecked) private var chain = 0
    @exclusivity(unchecked) private var known = -1
    /// `known` when the question's name is known not to be a node of its zone.
    private static let absent = -2
    /// Where a GSLB answer starts, to drop it whole if the caller could not fit it.
    @exclusivity(unchecked) private var gslbMark: MessageWriter.Mark

    public init() {
        gslbMark = writer.mark()
        name = .allocate(byteCount: 256, alignment: 8)
        labelOffsets = .allocate(capacity: 130)
        additionalTargets = .allocate(capacity: QueryEngine.maxAdditionalTargets)
    }

    deinit {
        name.deallocate()
        labelOffsets.deallocate()
        additionalTargets.deallocate()
    }

    /// Writes the response to `query` into `out`; returns its length, or 0 to send nothing
    /// (shorter than a header, or a response rather than a query: never answer those, to
    /// avoid loops). GSLB names answer NODATA here: this is the engine alone, for zone
    /// data (tests, load-time answer building, fuzzing); the server answers through the
    /// answering pipeline, which drives `begin`, `resume` and `finish` itself.
    /// `now` (seconds since the epoch) dates server cookies.
    public func respond(query q: UnsafeRawBufferPointer, client: IPAddress, tcp: Bool, zones: ZoneSet,
                        options: EngineOptions, out: UnsafeMutableRawBufferPointer, now: UInt32 = 0) -> Int {
        var step = begin(query: q, tcp: tcp, zones: zones, options: options, out: out)
        while case .gslb = step { step = resume(DynamicAnswer(records: 0, scope: 0), zones: zones, options: options) }
        return finish(query: q, client: client, options: options, now: now)
    }

    /// Where the query's TSIG record starts, or -1 (the server signs such answers; the
    /// engine answers as if it were not there).
    public var queryTSIGStart: Int { pq.tsigStart }

    /// What the last response holds, for rate limiting and metrics. Valid after `finish`.
    @inlinable @inline(__always) public var outcome: EngineOutcome {
        EngineOutcome(kind: kind, rcode: rcode, qtype: pq.qtype, qdcount: pq.qdcount, questionEnd: pq.questionEnd,
                      answers: an, truncated: tc, scope: scope, ecs: pq.edns?.clientSubnet != nil, tsigStart: pq.tsigStart)
    }

    /// The Client Subnet option of the current query (RFC 7871 6), if any. Valid after `begin`.
    @inlinable public var clientSubnet: ClientSubnet? { pq.edns?.clientSubnet }

    /// The size limit of the current response (UDP: the EDNS size offered, within
    /// `maxUDPSize`, or 512; TCP: 65535), for stages that rewrite it (DNSSEC signing).
    public var responseLimit: Int { limit }

    /// Whether the current query set DO (RFC 3225). Valid after `begin`.
    @inlinable public var dnssecOK: Bool { pq.edns?.dnssecOK ?? false }

    /// Whether the current query set CO, Compact Answers OK (RFC 9824 4). Valid after `begin`.
    public var compactOK: Bool { pq.edns?.compactOK ?? false }

    /// Starts a response: reads the query, writes the header space and question, and runs
    /// the authoritative algorithm until it is done or reaches a GSLB name. Who asked
    /// matters only to the caller's GSLB decisions (its source address, `clientSubnet`),
    /// so it is not an argument: an unused one made the compiler add a thunk in front of
    /// this function (15 instructions per query).
    public func begin(query q: UnsafeRawBufferPointer, tcp: Bool, zones: ZoneSet,
                      options: EngineOptions, out: UnsafeMutableRawBufferPointer) -> EngineStep {
        an = 0; ns = 0; ar = 0; rcode = .noError; aa = false; tc = false; scope = 0; additionalCount = 0
        kind = .none; finalLength = -1
        // Parsed in place, into the engine's own `pq` (no copies of the parse result).
        guard pq.readHeader(q), !pq.isResponse else {
            pq = ParsedQuery()
            finalLength = 0
            return .done
        }
        do {
            try pq.parseBody(q)
        } catch {
            // RFC 1035 4.1.1: the opcode decides first. A message with an opcode we do not
            // implement is NOTIMP whatever its question count or records (as ISC's EDNS
            // compliance tester expects), not FORMERR. (`pq` holds the header alone.)
            return headerOnly(pq, rcode: pq.opcode != 0 ? .notImp : .formErr, out: out)
        }
        // The OPT record's fields are read in place (`pq.edns?.field`): binding `pq.edns` to
        // a local copied the whole `EDNSInfo` (about 70 bytes) here and again for `optLength`.
        let hasEDNS = pq.edns != nil
        limit = 512
        if tcp { limit = 65535 } else if let size = pq.edns?.udpSize { limit = max(512, min(Int(size), options.maxUDPSize)) }
        limit = min(limit, out.count)
        writer.reset(buffer: out, limit: limit)
        do {
            // The header's space: `finish` (or `headerOnly`) writes all twelve bytes.
            _ = try writer.claim(12)
            try writer.writeBytes(UnsafeRawBufferPointer(rebasing: q[12..<pq.questionEnd]))
        } catch {
            return headerOnly(pq, rcode: .formErr, out: out)
        }
        writer.registerName(at: 12)
        let optSize = hasEDNS ? optLength(options) : 0
        writer.setLimit(limit - optSize)

        if pq.opcode != 0 {
            rcode = .notImp // Before the question count: see the parse failure above.
        } else if pq.qdcount == 0 {
            // RFC 7873 5.4: a query with only a COOKIE gets a cookie back; otherwise FORMERR (RFC 9619).
            if (pq.edns?.cookieOffset ?? -1) < 0 || options.cookies == nil { rcode = .formErr }
        } else if let version = pq.edns?.version, version > 0 {
            rcode = .badVers // RFC 6891 6.1.3: no answer, OPT with version 0.
        } else if pq.qtype.rawValue == 41 { // OPT (a literal: no call to the cross-module constant per query)
            rcode = .formErr
        } else if pq.qclass != .in && pq.qclass != .any {
            rcode = .refused
        } else if pq.qtype.rawValue >= 128 && pq.qtype.rawValue <= 254 {
            // Meta-types, one range test on the common path. Transfers run on the TCP side
            // (Server/Transfer) and never reach the engine there.
            if pq.qtype == .ixfr && !tcp {
                ixfrOverUDP(q, zones: zones)
            } else if pq.qtype == .axfr || pq.qtype == .ixfr {
                rcode = .refused // AXFR over UDP is not defined (RFC 5936 4.2).
            } else if pq.qtype == .nxname {
                rcode = .formErr // RFC 9824 3.5: NXNAME is only a bit in a compact denial's NSEC.
            } else {
                rcode = .notImp // Other meta-types (MAILA, MAILB, TKEY, TSIG) are not supported.
            }
        } else {
            return start(q, zones: zones, options: options)
        }
        return .done
    }

    /// Goes on after the caller answered the GSLB name `begin` or `resume` stopped at:
    /// `answer` says what it wrote into `writer`. Returns the next stop, or `.done`.
    /// Records that are not a CNAME to follow end the answer: that common case is inlined
    /// into the caller (the call alone cost about 40 instructions per GSLB query).
    @inlinable public func resume(_ answer: DynamicAnswer, zones: ZoneSet, options: EngineOptions) -> EngineStep {
        if answer.records > 0 && answer.cnameTargetOffset < 0 {
            scope = max(scope, answer.scope)
            an += answer.records
            return .done
        }
        return resumeChain(answer, zones: zones, options: options)
    }

    /// `resume` for no records (a negative answer) or a CNAME the policy answered.
    @usableFromInline func resumeChain(_ answer: DynamicAnswer, zones: ZoneSet, options: EngineOptions) -> EngineStep {
        scope = max(scope, answer.scope)
        do {
            if answer.records == 0 {
                // Borrowed, as in `run` (a typed result: the closure's rethrows would box the error).
                let r: Result<Void, DNSWireError> = zones.zoneRefs[zoneIndex]._withUnsafeGuaranteedRef { zone in
                    Result { () throws(DNSWireError) in try negative(zone) }
                }
                try r.get()
                return .done
            }
            an += answer.records
            // RFC 7871 7.2.1: a tailored CNAME is answered alone.
            guard answer.cnameTargetOffset >= 0, answer.scope == 0, pq.qtype != .cname else { return .done }
            guard followCNAME(at: answer.cnameTargetOffset, zones: zones, options: options) else { return .done }
            owner = answer.cnameTargetOffset
        } catch {
            tc = true
            return .done
        }
        return run(zones: zones, options: options)
    }

    /// The caller could not fit its GSLB answer: drop whatever it wrote and set TC.
    public func resumeTruncated() -> EngineStep {
        writer.rollback(to: gslbMark)
        tc = true
        return .done
    }

    /// Ends the response: the OPT record and the header. Returns its length (0: send nothing).
    public func finish(query q: UnsafeRawBufferPointer, client: IPAddress, options: EngineOptions, now: UInt32 = 0) -> Int {
        if finalLength >= 0 { return finalLength }
        writer.setLimit(limit)
        let hasEDNS = pq.edns != nil
        if hasEDNS {
            do { try writeOPT(options, query: q, client: client, now: now) } catch { tc = true }
        }
        var flags: UInt16 = HeaderFlags.qr | (pq.flags & (0x7800 | HeaderFlags.rd | HeaderFlags.cd))
        if aa { flags |= HeaderFlags.aa }
        if tc { flags |= HeaderFlags.tc }
        flags |= rcode.rawValue & 0xF
        // One load of the buffer's address for the six fields: `put16` loads it through the
        // writer each time, as a store into the buffer might have changed the writer.
        let header = writer.buffer.baseAddress!
        header.storeBytes(of: pq.id.bigEndian, toByteOffset: 0, as: UInt16.self)
        header.storeBytes(of: flags.bigEndian, toByteOffset: 2, as: UInt16.self)
        header.storeBytes(of: pq.qdcount.bigEndian, toByteOffset: 4, as: UInt16.self)
        header.storeBytes(of: UInt16(an).bigEndian, toByteOffset: 6, as: UInt16.self)
        header.storeBytes(of: UInt16(ns).bigEndian, toByteOffset: 8, as: UInt16.self)
        header.storeBytes(of: UInt16(ar + (hasEDNS ? 1 : 0)).bigEndian, toByteOffset: 10, as: UInt16.self)
        switch rcode.rawValue { // literals: no calls to the cross-module constants per query
        case 0: kind = an > 0 ? .answer : (aa ? .nodata : .referral) // NOERROR
        case 3: kind = .nxdomain // NXDOMAIN
        default: kind = .error
        }
        return writer.position
    }

    /// Stores a 16-bit value, big-endian, at `off` in the response (header fields, OPT
    /// fields, lengths): inlined here, where `MessageWriter.setU16` is a call into another
    /// module (about 16 instructions each, up to a dozen per query).
    @inline(__always) private func put16(_ v: UInt16, at off: Int) {
        writer.buffer.baseAddress!.storeBytes(of: v.bigEndian, toByteOffset: off, as: UInt16.self)
    }

    /// A response with only a header: for messages too broken to echo the question.
    private func headerOnly(_ h: ParsedQuery, rcode: RCode, out: UnsafeMutableRawBufferPointer) -> EngineStep {
        self.rcode = rcode
        kind = .error
        guard out.count >= 12 else {
            finalLength = 0
            return .done
        }
        writer.reset(buffer: out, limit: 12)
        let flags: UInt16 = HeaderFlags.qr | (h.flags & (0x7800 | HeaderFlags.rd | HeaderFlags.cd)) | rcode.rawValue
        put16(h.id, at: 0)
        put16(flags, at: 2)
        for off in stride(from: 4, to: 12, by: 2) { put16(0, at: off) }
        finalLength = 12
        return .done
    }

    // MARK: - EDNS

    /// The size of the OPT record `writeOPT` writes for the current query (which has one).
    @inline(__always) private func optLength(_ o: EngineOptions) -> Int {
        var n = 11
        if let source = pq.edns?.clientSubnet?.sourcePrefix { n += 8 + (Int(source) + 7) / 8 }
        if pq.edns?.nsidRequested == true, let id = o.nsid { n += 4 + id.count }
        if (pq.edns?.cookieOffset ?? -1) >= 0, o.cookies != nil { n += 4 + 24 }
        return n
    }

    /// The OPT record answering the current query's (which has one), read in place in `pq`.
    private func writeOPT(_ o: EngineOptions, query: UnsafeRawBufferPointer, client: IPAddress, now: UInt32) throws(DNSWireError) {
        // The query's OPT fields, read before the first store into the buffer: after one,
        // each `pq.edns?` read is made again (the store might have changed `pq`).
        let dnssecOK = pq.edns?.dnssecOK == true
        let subnet = pq.edns?.clientSubnet
        let nsidRequested = pq.edns?.nsidRequested == true
        let cookie = pq.edns?.cookieOffset ?? -1
        // Root owner, TYPE OPT, CLASS = our UDP size, TTL = extended RCODE (upper 8 bits of
        // 12), version 0 and DO copied (RFC 3225 3), RDLENGTH patched at the end.
        let at = try writer.claim(11)
        let b = writer.buffer
        b[at] = 0
        put16(RRType.opt.rawValue, at: at + 1)
        put16(UInt16(max(512, o.maxUDPSize)), at: at + 3)
        b[at + 5] = UInt8(truncatingIfNeeded: rcode.rawValue >> 4)
        b[at + 6] = 0
        b[at + 7] = dnssecOK ? 0x80 : 0
        b[at + 8] = 0
        let lenAt = at + 9
        let start = writer.position
        if let s = subnet {
            // RFC 7871 7.2.1: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as received; our SCOPE.
            let bytes = (Int(s.sourcePrefix) + 7) / 8
            let o = try writer.claim(8 + bytes)
            // OPTION-CODE, OPTION-LENGTH, FAMILY, SOURCE and SCOPE PREFIX-LENGTH: one
            // big-endian word (the claim above covers its 8 bytes).
            let head = UInt64(EDNSOption.clientSubnet) << 48 | UInt64(4 + bytes) << 32 | UInt64(s.family) << 16
                | UInt64(s.sourcePrefix) << 8 | UInt64(scope)
            b.baseAddress!.storeBytes(of: head.bigEndian, toByteOffset: o, as: UInt64.self)
            // The address's bytes in order: the big-endian images of its two words, stored
            // whole when the buffer has room past the option (what lies beyond its `bytes`
            // is written over by what follows, or never sent), else copied byte-exact.
            if o + 24 <= b.count {
                let at = b.baseAddress! + o + 8
                at.storeBytes(of: s.address.hi.bigEndian, as: UInt64.self)
                (at + 8).storeBytes(of: s.address.lo.bigEndian, as: UInt64.self)
            } else {
                var words = (s.address.hi.bigEndian, s.address.lo.bigEndian)
                withUnsafeBytes(of: &words) { w in
                    UnsafeMutableRawBufferPointer(rebasing: b[(o + 8)..<(o + 8 + bytes)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: w[0..<bytes]))
                }
            }
        }
        if nsidRequested, let id = o.nsid {
            try writer.writeU16(EDNSOption.nsid)
            try writer.writeU16(UInt16(id.count))
            try writer.writeBytes(id)
        }
        if cookie >= 0, let jar = o.cookies {
            // RFC 7873 5.2: echo the client cookie with a fresh server cookie, whether or
            // not the one received was valid (this server does not enforce cookies, so it
            // never answers BADCOOKIE: RFC 7873 5.2.3 leaves that to servers that do).
            try writer.writeU16(EDNSOption.cookie)
            try writer.writeU16(24)
            let at = writer.position
            try writer.writeBytes(UnsafeRawBufferPointer(rebasing: query[cookie..<(cookie + 8)]))
            for _ in 0..<4 { try writer.writeU32(0) } // the server cookie, filled in below
            jar.make(clientCookie: UnsafeRawBufferPointer(rebasing: query[cookie..<(cookie + 8)]), client: client,
                     now: now, into: UnsafeMutableRawBufferPointer(rebasing: writer.buffer[(at + 8)..<(at + 24)]))
        }
        put16(UInt16(writer.position - start), at: lenAt)
    }

    // MARK: - The authoritative algorithm

    private enum Walk {
        case found(Int)
        case delegation(Int)
        /// No such name; its closest encloser's node.
        case notFound(closestEncloser: Int)
    }

    /// Copies a name from `src` (possibly compressed) into `name`, lowercased.
    private func loadName(_ src: UnsafeRawBufferPointer, at off: Int) -> Bool {
        var len = 0
        var o = off
        var jumps = 0
        while true {
            guard o < src.count else { return false }
            let l = src[o]
            if l & 0xC0 == 0xC0 {
                guard o + 1 < src.count, jumps < Wire.maxPointers else { return false }
                o = Int(UInt16(l & 0x3F) << 8 | UInt16(src[o + 1]))
                jumps += 1
                continue
            }
            guard l & 0xC0 == 0, len + Int(l) + 1 <= 255, o + Int(l) < src.count else { return false }
            name[len] = l
            if l == 0 { nameLength = len + 1; return true }
            for k in 1...Int(l) { name[len + k] = asciiLower(src[o + k]) }
            len += Int(l) + 1
            o += Int(l) + 1
        }
    }

    /// Walks from the zone apex down to `name` (RFC 1034 4.3.2 step 3), stopping at a cut.
    /// `absent`: the whole name is known not to be a node of `zone` (no probe for it).
    private func walk(_ zone: Zone, originOffset: Int, qtype: RRType, absent: Bool = false) -> Walk {
        var count = 0
        var off = 0
        while off < originOffset {
            labelOffsets[count] = off
            count += 1
            off += Int(name[off]) + 1
        }
        var enclosing = zone.apexIndex
        var i = count - 1
        while i >= 0 {
            let o = labelOffsets[i]
            let idx = i == 0 && absent ? -1 : zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: name[o..<nameLength]))
            if idx < 0 { return .notFound(closestEncloser: enclosing) }
            if zone.nodes[idx].isDelegation {
                // DS lives on the parent side of the cut (RFC 4035 3.1.4.1).
                if i == 0 && qtype == .ds { return .found(idx) }
                return .delegation(idx)
            }
            enclosing = idx
            i -= 1
        }
        return .found(enclosing)
    }

    /// The question's name, then the prebuilt fast path, then the algorithm.
    /// RFC 1995 2: an IXFR over UDP whose answer would not fit one datagram (every one here:
    /// differences go over TCP) gets the zone's current SOA alone, which tells the client
    /// to ask again over TCP or that it is up to date. A name that is not a served zone's
    /// apex is REFUSED, as over TCP.
    private func ixfrOverUDP(_ q: UnsafeRawBufferPointer, zones: ZoneSet) {
        nameLength = pq.qnameLength
        for i in 0..<nameLength { name[i] = asciiLower(q[12 + i]) }
        guard let (z, origin) = zones.findZone(lowercaseWire: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(name)[0..<nameLength])),
              origin == 0 else {
            rcode = .refused
            return
        }
        let zone = zones.zones[z]
        aa = true
        _ = try? writeSet(zone.soa, owner: 12, section: .answer)
    }

    private func start(_ q: UnsafeRawBufferPointer, zones: ZoneSet, options: EngineOptions) -> EngineStep {
        // The question name was checked by `ParsedQuery.parse` and is never compressed, so
        // its lowercase copy is a straight byte copy (label lengths are below "A"): the
        // query's name is walked once.
        nameLength = pq.qnameLength
        asciiLowerCopy(q.baseAddress! + 12, name.baseAddress!, count: nameLength)
        owner = 12
        chain = 0
        known = -1
        // Most queries ask for an RRset that exists at a static name: copy its answer,
        // encoded at load time, when it fits (else the algorithm below truncates properly).
        // Otherwise a name found exactly starts the algorithm at its node, without the walk.
        // The answers are borrowed from `zones` (no retain and release per query).
        if let preRef = zones.prebuiltRef {
            guard let node = locate(zones, indexed: true) else {
                rcode = .refused
                return .done
            }
            if node >= 0, preRef._withUnsafeGuaranteedRef({ pre in prebuiltAnswer(pre, node) }) { return .done }
            // No prebuilt answer at a node found exactly: a GSLB name, for a type its policy
            // answers, stops here as `run` would at once (saving its loop and call, about
            // 30 instructions per GSLB query).
            if known >= 0, let stop = zones.zoneRefs[zoneIndex]._withUnsafeGuaranteedRef({ zone in gslbStop(zone, known) }) {
                known = -1
                aa = true
                return stop
            }
        } else if locate(zones, indexed: false) == nil {
            rcode = .refused
            return .done
        }
        aa = true
        return run(zones: zones, options: options)
    }

    /// Finds the zone of the name in `name` (`zoneIndex`, `originOffset`). `indexed` (a set
    /// with prebuilt answers, whose index a query's name is looked up in): with one hash of
    /// the name, its node there too, returned; when it is no node of that zone, `known` says
    /// it is absent and -1 is returned. Otherwise -1. Nil when no zone served contains it.
    @inline(__always)
    private func locate(_ zones: ZoneSet, indexed: Bool) -> Int? {
        let full = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(name)[0..<nameLength])
        if indexed, let hit = zones.findNode(lowercaseWire: full) {
            zoneIndex = hit.zone
            originOffset = hit.originOffset
            if hit.originOffset == 0 && pq.qtype == .ds && parentSide(zones, full) { return -1 }
            return hit.node
        }
        guard let (z, origin) = zones.findZone(lowercaseWire: full) else { return nil }
        zoneIndex = z
        originOffset = origin
        if origin == 0 && pq.qtype == .ds && parentSide(zones, full) { return -1 }
        // Not a name of the zone: the walk need not probe for it again.
        if indexed { known = QueryEngine.absent }
        return -1
    }

    /// DS lives on the parent side of a cut: a DS query for a zone's apex is answered from
    /// the parent zone when that is served too (RFC 4035 3.1.4.1), where the apex is the
    /// delegation point. Moves `zoneIndex` and `originOffset` to the zone that holds the
    /// apex's parent name when it delegates the apex; false (nothing moved) when no served
    /// zone does (no parent served, a parent without the cut, or the root).
    @inline(never)
    private func parentSide(_ zones: ZoneSet, _ full: UnsafeRawBufferPointer) -> Bool {
        let first = Int(full[0])
        guard first > 0, first + 1 < full.count else { return false }
        let parent = UnsafeRawBufferPointer(rebasing: full[(first + 1)...])
        guard let (z, origin) = zones.findZone(lowercaseWire: parent) else { return false }
        let cut = zones.zoneRefs[z]._withUnsafeGuaranteedRef { zone -> Bool in
            let idx = zone.nodeIndex(lowercaseWire: full)
            return idx >= 0 && zone.nodes[idx].isDelegation
        }
        guard cut else { return false }
        zoneIndex = z
        originOffset = first + 1 + origin
        return true
    }

    /// The prebuilt answer for the question's name and type at node `idx` of zone
    /// `zoneIndex` (`start`), written when it fits: true when the response is complete.
    /// Otherwise notes in `known` a node the algorithm may start at.
    @inline(__always)
    private func prebuiltAnswer(_ pre: PrebuiltAnswers, _ idx: Int) -> Bool {
        guard pre.holds(zone: zoneIndex, node: idx) else { return false }
        if let e = pre.entry(zone: zoneIndex, node: idx, type: pq.qtype.rawValue),
           writer.position + Int(e.length) <= writer.limit {
            try? writer.writeBytes(pre.block(e))
            an = Int(e.an); ns = Int(e.ns); ar = Int(e.ar)
            aa = true
            return true
        }
        known = idx
        return false
    }

    /// RFC 1034 4.3.2 from the name in `name` (zone `zoneIndex`), following CNAMEs, until the
    /// answer is complete or a GSLB name needs the caller.
    private func run(zones: ZoneSet, options: EngineOptions) -> EngineStep {
        while true {
            // Borrowed: `zones` holds every zone for the whole query (no retain per step).
            let next = zones.zoneRefs[zoneIndex]._withUnsafeGuaranteedRef { zone in step(zone, zones: zones, options: options) }
            if let next { return next }
        }
    }

    /// One name of `run` in `zone`: the finished answer, a GSLB stop, or nil when a CNAME
    /// led to the next name (now in `name`, `zoneIndex`, `originOffset`).
    @inline(__always)
    private func step(_ zone: Zone, zones: ZoneSet, options: EngineOptions) -> EngineStep? {
        let qtype = pq.qtype
        do {
            var nodeIndex: Int
            let walked: Walk
            if known >= 0 {
                walked = .found(known)
            } else {
                walked = walk(zone, originOffset: originOffset, qtype: qtype, absent: known == QueryEngine.absent)
            }
            known = -1
            switch walked {
            case .delegation(let d):
                if chain == 0 { aa = false }
                try referral(zone, d)
                return .done
            case .found(let n):
                nodeIndex = n
            case .notFound(let encloser):
                // RFC 4592 3.3.1: the source of synthesis is `*.<closest encloser>`, which the
                // encloser's node points to.
                let w = Int(zone.nodes[encloser].wildcard)
                if w < 0 {
                    rcode = .nxDomain
                    try negative(zone)
                    return .done
                }
                nodeIndex = w
            }
            // A GSLB name needs only its index and types: read them in place rather than
            // copying the node out of the array (which retains its name and RRsets). The
            // policy answers the types it owns; the node's RRsets answer the others.
            if let stop = gslbStop(zone, nodeIndex) { return stop }
            // The node's RRsets are read in place too (no copy of its name).
            // ANY matches the CNAME itself, so it is not followed (RFC 1034 4.3.2 step 3a).
            if qtype != .cname, qtype != .any, let cname = zone.nodes[nodeIndex].rrset(.cname) {
                guard try writeSet(cname, owner: owner, section: .answer) else { return .done }
                // The target name is the rdata of the record just written.
                let target = writer.lastRDataStart
                guard followCNAME(at: target, zones: zones, options: options) else { return .done }
                owner = target
                return nil
            }
            if qtype == .any {
                // RFC 8482 4.1: answer one RRset rather than the whole node.
                if let first = zone.nodes[nodeIndex].rrsets.min(by: { $0.type < $1.type }) {
                    // Minimal, as RFC 8482 intends: no additional-section processing.
                    _ = try writeSet(first, owner: owner, section: .answer)
                } else {
                    try negative(zone)
                }
                return .done
            }
            if let set = zone.nodes[nodeIndex].rrset(qtype) {
                if try writeSet(set, owner: owner, section: .answer) { try additional(zones, answeringZone: zoneIndex) }
            } else {
                try negative(zone)
            }
        } catch {
            tc = true
        }
        return .done
    }

    /// The stop for the caller when node `i` is a GSLB name whose policy answers the
    /// question's type; nil when the node's RRsets answer it.
    @inline(__always)
    private func gslbStop(_ zone: Zone, _ i: Int) -> EngineStep? {
        let dynamicIndex = zone.nodes[i].dynamicIndex
        guard dynamicIndex >= 0, let asked = dynamicQuestionType(zone, i, pq.qtype) else { return nil }
        gslbMark = writer.mark()
        return .gslb(GSLBQuestion(index: dynamicIndex, qtype: asked, ownerOffset: owner))
    }

    /// The type to ask the GSLB policy of node `i` for, or nil when the node's RRsets
    /// answer `qtype`. ANY (RFC 8482 4.1: one RRset) answers the RRset of the lowest type
    /// the name holds, the policy's A (1) and AAAA (28) counted among the node's types, as
    /// at a static name; so a name that answers A from its policy answers ANY with it.
    @inline(__always)
    private func dynamicQuestionType(_ zone: Zone, _ i: Int, _ qtype: RRType) -> RRType? {
        let types = zone.nodes[i].dynamicTypes
        guard qtype == .any else { return types.owns(qtype) ? qtype : nil }
        if types.contains(.all) || types.contains(.a) { return .a }
        guard types.contains(.aaaa) else { return nil }
        for set in zone.nodes[i].rrsets where set.type < .aaaa { return nil }
        return .aaaa
    }

    /// One step of a CNAME chain: loads the target written at `target` in the message into
    /// `name` and finds its zone (`zoneIndex`, `originOffset`) and, with prebuilt answers,
    /// its node when the algorithm may start there (`known`, as in `start`). False ends the
    /// chain: too long (the loop bound), or the target is in no zone served here (the answer
    /// stops with the CNAMEs written so far).
    private func followCNAME(at target: Int, zones: ZoneSet, options: EngineOptions) -> Bool {
        chain += 1
        guard chain <= options.maxCNAMEChain,
              loadName(UnsafeRawBufferPointer(rebasing: writer.buffer[0..<writer.position]), at: target)
        else { return false }
        guard let preRef = zones.prebuiltRef else { return locate(zones, indexed: false) != nil }
        guard let node = locate(zones, indexed: true) else { return false }
        if node >= 0 && preRef._withUnsafeGuaranteedRef({ $0.holds(zone: zoneIndex, node: node) }) { known = node }
        return true
    }

    private enum Section { case answer, authority, additional }

    /// Writes a whole RRset or nothing (RFC 2181 9). Returns false, with TC set for the
    /// answer and authority sections, when it does not fit.
    private func writeSet(_ set: RRSet, owner: Int, section: Section, ownerName: DNSName? = nil) throws(DNSWireError) -> Bool {
        let mark = writer.mark()
        let addCount = additionalCount
        do {
            for rdata in set.rdatas {
                // The owner by name (what `writeRecord(owner:)` writes) or by pointer; both
                // through DNSWire's non-generic writers, so nothing here is left unspecialized.
                if let ownerName { try writer.writeName(ownerName) } else { try writer.writeU16(0xC000 | UInt16(owner)) }
                try rdata.withBytes { (r) throws(DNSWireError) in
                    try writer.writeRecordBody(type: set.type, ttl: set.ttl, rdata: r)
                }
                if section != .additional { noteAdditional(set.type) }
            }
        } catch {
            writer.rollback(to: mark)
            additionalCount = addCount
            if section != .additional { tc = true }
            return false
        }
        switch section {
        case .answer: an += set.rdatas.count
        case .authority: ns += set.rdatas.count
        case .additional: ar += set.rdatas.count
        }
        return true
    }

    /// Remembers the name in the record just written that deserves addresses in the
    /// additional section (RFC 1035 3.3.9 MX, 3.3.11 NS; RFC 2782 SRV).
    private func noteAdditional(_ type: RRType) {
        let at: Int
        switch type {
        case .ns: at = writer.lastRDataStart
        case .mx: at = writer.lastRDataStart + 2
        case .srv: at = writer.lastRDataStart + 6
        default: return
        }
        guard additionalCount < QueryEngine.maxAdditionalTargets else { return }
        additionalTargets[additionalCount] = at
        additionalCount += 1
    }

    private func negative(_ zone: Zone) throws(DNSWireError) {
        // RFC 2308 3: the SOA goes in the authority section with TTL min(SOA TTL, MINIMUM).
        let soa = RRSet(zone.soa, ttl: zone.negativeTTL)
        if chain == 0 && writer.position == pq.questionEnd {
            // Nothing follows the question yet, and the question ends in the zone's origin
            // at `originOffset`: the record encoded at load against a question that is the
            // origin is valid here once its pointers move to this question and this place.
            // (The compressor could find a longer suffix of MNAME or RNAME in a question
            // below them; a few bytes more then, nothing a client sees.)
            if !zone.negativeRecord.isEmpty {
                writeNegativeRecord(zone)
                return
            }
            _ = try writeSet(soa, owner: 12 + originOffset, section: .authority)
        } else {
            _ = try writeSet(soa, owner: 0, section: .authority, ownerName: zone.nodes[zone.apexIndex].name)
        }
    }

    /// `zone.negativeRecord` at the writer's position, its pointers into the question moved
    /// by `originOffset` and those into itself to where it is written; TC when it does not fit.
    private func writeNegativeRecord(_ zone: Zone) {
        let start = writer.position
        let fits = zone.negativeRecord.withUnsafeBytes { (try? writer.writeBytes($0)) != nil }
        guard fits else {
            tc = true
            return
        }
        let b = writer.buffer
        let questionEnd = zone.negativeQuestionEnd
        for at in zone.negativePointers {
            let p = Int(b[start + at] & 0x3F) << 8 | Int(b[start + at + 1])
            let moved = p < questionEnd ? p + originOffset : p + start - (questionEnd + 4)
            put16(UInt16(0xC000 | moved), at: start + at)
        }
        ns += 1
    }

    /// A referral (RFC 1034 4.3.2 step 3b): the cut's NS RRset in the authority section and
    /// the zone's addresses for those servers in the additional section. Glue for servers
    /// below the cut is required to reach them: if it does not fit, TC is set (RFC 9471).
    private func referral(_ zone: Zone, _ d: Int) throws(DNSWireError) {
        let cut = zone.nodes[d]
        guard let nsSet = cut.rrset(.ns) else { return }
        guard try writeSet(nsSet, owner: 0, section: .authority, ownerName: cut.name) else { return }
        let cutName = cut.name.lowercased().wire
        for i in 0..<additionalCount {
            let msg = UnsafeRawBufferPointer(rebasing: writer.buffer[0..<writer.position])
            guard loadName(msg, at: additionalTargets[i]) else { continue }
            let idx = zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: name[0..<nameLength]))
            guard idx >= 0 else { continue }
            let inDomain = isBelow(cutName)
            if try !addresses(zone.nodes[idx], owner: additionalTargets[i]), inDomain {
                tc = true
                return
            }
        }
    }

    /// The node's A and AAAA RRsets into the additional section; false if one did not fit.
    private func addresses(_ node: ZoneNode, owner: Int) throws(DNSWireError) -> Bool {
        if let set = node.rrset(.a), try !writeSet(set, owner: owner, section: .additional) { return false }
        if let set = node.rrset(.aaaa), try !writeSet(set, owner: owner, section: .additional) { return false }
        return true
    }

    /// Whether `name` is at or below the lowercase wire name `cut`.
    private func isBelow(_ cut: [UInt8]) -> Bool {
        guard nameLength >= cut.count else { return false }
        var off = 0
        while nameLength - off > cut.count { off += Int(name[off]) + 1 }
        guard nameLength - off == cut.count else { return false }
        for k in 0..<cut.count where name[off + k] != cut[k] { return false }
        return true
    }

    /// Addresses for NS, MX and SRV targets in the answer, from the answering zone's
    /// authoritative data only (never from below a cut, never from another zone, as NSD
    /// does), as room allows; they are optional, so no TC.
    private func additional(_ zones: ZoneSet, answeringZone: Int) throws(DNSWireError) {
        for i in 0..<additionalCount {
            let msg = UnsafeRawBufferPointer(rebasing: writer.buffer[0..<writer.position])
            guard loadName(msg, at: additionalTargets[i]),
                  let (z, origin) = zones.findZone(lowercaseWire: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(name)[0..<nameLength])),
                  z == answeringZone
            else { continue }
            let zone = zones.zones[z]
            guard case .found(let idx) = walk(zone, originOffset: origin, qtype: .a) else { continue }
            guard try addresses(zone.nodes[idx], owner: additionalTargets[i]) else { return }
        }
    }
}
