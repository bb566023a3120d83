import COpenSSL
import DNSWire
import Glibc
import Zones

/// Signs a finished response for a client that set DO (RFC 3225), one worker's instance.
///
/// The engine and the router build the unsigned answer as for any client; this stage
/// reads it back and writes it again with an RRSIG after every authoritative RRset of a
/// signed zone, and with the proofs DNSSEC needs. So a GSLB answer is signed after routing,
/// exactly as tailored (ECS included), and every path (prebuilt, CNAME chains, referrals,
/// negative answers) is covered by one piece of code.
///
/// Denial of existence is compact (RFC 9824): NODATA, empty non-terminals and names that
/// do not exist all answer NOERROR with one NSEC at the name, listing its types (only
/// RRSIG, NSEC and NXNAME for a name that does not exist), next name `\000.<name>`. One
/// record, signed once per name, that reveals no other name of the zone; validators without
/// RFC 9824 see an ordinary NODATA proof. A wildcard answer is signed with the wildcard's
/// label count and proved by a minimally covering NSEC (RFC 4470) around the name, whose
/// owner and next name share only the closest encloser with it (so the validator derives
/// the right source of synthesis). A delegation carries the signed DS RRset, or an NSEC at
/// the cut without DS.
///
/// Signatures come from the shared `SignatureCache`; a miss signs (OpenSSL) and stores.
/// All scratch space is allocated once; a response whose signatures are all cached
/// allocates nothing. Not thread-safe: one per worker.
///
///     let signer = Signer()
///     if let r = signer.sign(buffer, length: n, limit: engine.responseLimit, zones: zones, signing: set, now: now) { n = r.length }
public final class Signer {
    public struct Result {
        public var length: Int
        public var rcode: RCode
        public var truncated: Bool
    }

    struct Rec {
        var owner: Int
        var type: UInt16
        var cls: UInt16
        var ttl: UInt32
        var rdata: Int
        var rdlen: Int
        var section: Int
    }

    /// The most records a message can hold: each takes at least 12 bytes (a compressed
    /// owner, type, class, TTL, an empty rdata) of a 65,535-byte message. So every RRset and
    /// every answer is signed, however many records it has; the buffers are made once per
    /// signer, and only when a zone is signed.
    static let maxRecords = 65535 / 12
    static let maxSetSize = maxRecords
    private let writer = MessageWriter()
    private let out: UnsafeMutableRawBufferPointer
    /// The signing input: RRSIG rdata prefix at `[prefixRoom - n, prefixRoom)`, then the RRs.
    private let canon: UnsafeMutableRawBufferPointer
    private static let prefixRoom = 320
    /// The current RRset's rdatas, uncompressed (and lowercased for signing).
    private let rd: UnsafeMutableRawBufferPointer
    private let rdStart: UnsafeMutablePointer<Int>
    private let rdLen: UnsafeMutablePointer<Int>
    private let order: UnsafeMutablePointer<Int>
    private let recs: UnsafeMutablePointer<Rec>
    // Names: the RRset owner as written and lowercased, the last name of a CNAME chain,
    // and two for NSEC owner and next names.
    private let owner: UnsafeMutableRawBufferPointer
    private let ownerLow: UnsafeMutableRawBufferPointer
    private let final: UnsafeMutableRawBufferPointer
    /// The question's name, lowercased: an owner equal to it is written as a pointer to it
    /// (offset 12), keeping the client's case as the engine does, without a search.
    private let qname: UnsafeMutableRawBufferPointer
    private var qnameLen = 0
    private var ownerIsQuestion = false
    private let nameX: UnsafeMutableRawBufferPointer
    private let nameY: UnsafeMutableRawBufferPointer
    private let small: UnsafeMutableRawBufferPointer
    private let types: UnsafeMutablePointer<UInt16>
    private static let maxTypes = 64
    /// Wildcard answers' owners (lowercase) and closest encloser offsets, for their proofs.
    private let wildcards: UnsafeMutableRawBufferPointer
    private var wildcardCount = 0
    private let wildcardCE: UnsafeMutablePointer<Int>
    private static let maxWildcards = 4
    private var jitterState: UInt64 = 0x5EED
    /// This worker's ECDSA signing contexts by key identity, made on a key's first miss and
    /// dropped with the keys (`forgetKeys`).
    private var contexts: [UInt64: OpaquePointer] = [:]

    public init() {
        out = .allocate(byteCount: 65536, alignment: 8)
        canon = .allocate(byteCount: 65536 + Signer.prefixRoom + 1024, alignment: 8)
        rd = .allocate(byteCount: 65536 + 1024, alignment: 8)
        rdStart = .allocate(capacity: Signer.maxSetSize)
        rdLen = .allocate(capacity: Signer.maxSetSize)
        order = .allocate(capacity: Signer.maxSetSize)
        recs = .allocate(capacity: Signer.maxRecords)
        owner = .allocate(byteCount: 256, alignment: 8)
        ownerLow = .allocate(byteCount: 256, alignment: 8)
        final = .allocate(byteCount: 256, alignment: 8)
        qname = .allocate(byteCount: 256, alignment: 8)
        wildcardCE = .allocate(capacity: Signer.maxWildcards)
        nameX = .allocate(byteCount: 256, alignment: 8)
        nameY = .allocate(byteCount: 256, alignment: 8)
        small = .allocate(byteCount: 1024, alignment: 8)
        types = .allocate(capacity: Signer.maxTypes)
        wildcards = .allocate(byteCount: 4 * 256, alignment: 8)
        jitterState = UInt64(UInt(bitPattern: ObjectIdentifier(self).hashValue))
    }

    /// Frees the signing contexts; called when a new snapshot's keys replace the old ones.
    public func forgetKeys() {
        for (_, c) in contexts { EVP_PKEY_CTX_free(c) }
        contexts.removeAll()
    }

    deinit {
        forgetKeys()
        out.deallocate(); canon.deallocate(); rd.deallocate()
        rdStart.deallocate(); rdLen.deallocate(); order.deallocate(); recs.deallocate()
        owner.deallocate(); ownerLow.deallocate(); final.deallocate(); qname.deallocate(); wildcardCE.deallocate(); nameX.deallocate(); nameY.deallocate()
        small.deallocate(); types.deallocate(); wildcards.deallocate()
        transferMessage?.deallocate()
    }

    // Per response.
    private var m = UnsafeRawBufferPointer(start: nil, count: 0)
    private var zones: ZoneSet?
    private var signing: SigningSet?
    private var now: UInt32 = 0
    private var ownerLen = 0
    private var ownerLowLen = 0
    private var finalLen = 0

    /// Rewrites the response in `msg[0..<length]` signed, in place. Nil leaves it as it was
    /// (not a single-question NOERROR/NXDOMAIN answer, already truncated, or unparsable).
    ///
    /// `compactOK` is the query's CO flag (RFC 9824 4): a name that does not exist then keeps
    /// its NXDOMAIN rcode beside the same NXNAME proof, and the response's OPT carries CO;
    /// without it the answer is NOERROR, which validators without RFC 9824 accept.
    public func sign(_ msg: UnsafeMutableRawBufferPointer, length: Int, limit: Int, zones zs: ZoneSet,
                     signing s: SigningSet, now t: UInt32, compactOK: Bool = false) -> Result? {
        guard length >= 12, length <= msg.count else { return nil }
        m = UnsafeRawBufferPointer(rebasing: msg[0..<length])
        zones = zs; signing = s; now = t
        defer { zones = nil; signing = nil }
        let flags = u16(2)
        var rcode = RCode(rawValue: flags & 0xF)
        guard flags & HeaderFlags.tc == 0, rcode == .noError || rcode == .nxDomain, u16(4) == 1 else { return nil }
        let total = Int(u16(6)) + Int(u16(8)) + Int(u16(10))
        guard let qEnd = skipName(12).map({ $0 + 4 }), qEnd <= length else { return nil }
        let qtype = u16(qEnd - 4)
        var off = qEnd
        var count = 0
        var optStart = -1, optEnd = -1
        for i in 0..<total {
            guard let e = skipName(off), e + 10 <= length else { return nil }
            let type = u16(e), rdlen = Int(u16(e + 8))
            guard e + 10 + rdlen <= length else { return nil }
            let section = i < Int(u16(6)) ? 0 : (i < Int(u16(6)) + Int(u16(8)) ? 1 : 2)
            if type == RRType.opt.rawValue {
                optStart = off; optEnd = e + 10 + rdlen
            } else {
                guard count < Signer.maxRecords else { return nil }
                recs[count] = Rec(owner: off, type: type, cls: u16(e + 2), ttl: u32(e + 4), rdata: e + 10, rdlen: rdlen, section: section)
                count += 1
            }
            off = e + 10 + rdlen
        }
        let limit = min(limit, out.count)
        let optLength = optStart >= 0 ? optEnd - optStart : 0
        writer.reset(buffer: out, limit: limit)
        var counts = (0, 0, 0)
        var truncated = false
        do {
            try writer.writeBytes(UnsafeRawBufferPointer(rebasing: m[0..<qEnd]))
            writer.registerName(at: 12)
            writer.setLimit(limit - optLength)
            finalLen = expand(12, into: final, lower: true)?.length ?? 0
            qnameLen = finalLen
            qname.baseAddress!.copyMemory(from: final.baseAddress!, byteCount: qnameLen)
            wildcardCount = 0
            var i = 0
            // Answer: every RRset signed; the chain's last name is where a negative
            // answer's proof goes.
            while i < count && recs[i].section == 0 {
                let j = setEnd(i, count)
                counts.0 += try emit(i, j, sign: true)
                if recs[i].type == RRType.cname.rawValue, equalNames(ownerLow, ownerLowLen, final, finalLen),
                   let e = expand(recs[j - 1].rdata, into: final, lower: true) {
                    finalLen = e.length
                }
                i = j
            }
            // Authority: SOA signed; a referral's NS unsigned (the child's data), with its DS proof.
            var negative = false
            while i < count && recs[i].section == 1 {
                let j = setEnd(i, count)
                let isNS = recs[i].type == RRType.ns.rawValue
                if recs[i].type == RRType.soa.rawValue { negative = true }
                counts.1 += try emit(i, j, sign: !isNS)
                if isNS { counts.1 += try delegationProof() }
                i = j
            }
            if negative || wildcardCount > 0 {
                counts.1 += try proofs(negative: negative, rcode: &rcode, qtype: qtype, compactOK: compactOK)
            }
            // Additional: addresses and glue, unsigned (optional data, RFC 4035 3.1.1).
            while i < count {
                let j = setEnd(i, count)
                counts.2 += try emit(i, j, sign: false)
                i = j
            }
            writer.setLimit(limit)
            if optStart >= 0 {
                try copyOPT(optStart, optEnd, compactOK: compactOK)
                counts.2 += 1
            }
        } catch {
            // RFC 2181 9 / RFC 4035 3.1.1: when the signed answer does not fit, TC with the
            // question alone; the resolver asks again over TCP.
            truncated = true
            writer.reset(buffer: out, limit: limit)
            try? writer.writeBytes(UnsafeRawBufferPointer(rebasing: m[0..<qEnd]))
            counts = (0, 0, 0)
            if optStart >= 0, (try? copyOPT(optStart, optEnd, compactOK: compactOK)) != nil {
                counts.2 = 1
            }
        }
        var newFlags = (flags & ~UInt16(0xF)) | rcode.rawValue
        if truncated { newFlags |= HeaderFlags.tc }
        writer.setU16(newFlags, at: 2)
        writer.setU16(UInt16(counts.0), at: 6)
        writer.setU16(UInt16(counts.1), at: 8)
        writer.setU16(UInt16(counts.2), at: 10)
        let n = writer.position
        msg.baseAddress!.copyMemory(from: out.baseAddress!, byteCount: n)
        return Result(length: n, rcode: rcode, truncated: truncated)
    }

    // MARK: - One RRset, for a zone transfer

    /// Scratch for `rrsigs`: a one-question response carrying the RRset, signed in place.
    private var transferMessage: UnsafeMutableRawBufferPointer?

    /// The RRSIG rdatas over one RRset of a signed zone, made exactly as `sign` makes them
    /// for an answer (canonical form, every active key of the role, the shared cache), for
    /// a zone transfer that carries the signatures with the records. The RRset is written
    /// as the answer of a one-question response and signed through `sign`, so there is one
    /// signer and one canonical order. Nil when the owner's zone is not signed or the
    /// RRset does not fit one 64 KiB message. Not on the query path (it allocates).
    ///
    ///     let sigs = signer.rrsigs(owner: node.name, type: .a, ttl: 300, rdatas: set.rdatas, zones: zs, signing: s, now: now)
    public func rrsigs(owner name: DNSName, type: RRType, ttl: UInt32, rdatas: [[UInt8]], zones zs: ZoneSet,
                       signing s: SigningSet, now t: UInt32) -> [[UInt8]]? {
        let buf = transferMessage ?? .allocate(byteCount: 65536, alignment: 8)
        transferMessage = buf
        let w = MessageWriter()
        w.reset(buffer: buf, limit: 65535)
        do {
            try w.writeU16(0); try w.writeU16(HeaderFlags.qr | HeaderFlags.aa); try w.writeU16(1)
            try w.writeU16(UInt16(truncatingIfNeeded: rdatas.count)); try w.writeU16(0); try w.writeU16(0)
            try w.writeName(name)
            try w.writeU16(type.rawValue); try w.writeU16(RRClass.in.rawValue)
            for r in rdatas {
                try w.writeU16(0xC00C)
                try withBytes(r) { (b) throws(DNSWireError) in try w.writeRecordBody(type: type, ttl: ttl, rdata: b) }
            }
        } catch { return nil }
        guard rdatas.count <= Signer.maxSetSize,
              let r = sign(buf, length: w.position, limit: 65535, zones: zs, signing: s, now: t), !r.truncated else { return nil }
        // Read the RRSIGs back: owners are pointers or plain names, rdata is uncompressed.
        let msg = UnsafeRawBufferPointer(rebasing: buf[0..<r.length])
        var off = 12 + name.wire.count + 4
        var out: [[UInt8]] = []
        let count = Int(msg[6]) << 8 | Int(msg[7])
        for _ in 0..<count {
            var labels = 0
            while off < msg.count, labels < 128 {
                let l = msg[off]
                if l & 0xC0 == 0xC0 { off += 2; break }
                off += Int(l) + 1
                labels += 1
                if l == 0 { break }
            }
            guard off + 10 <= msg.count else { return nil }
            let rtype = UInt16(msg[off]) << 8 | UInt16(msg[off + 1])
            let rdlen = Int(msg[off + 8]) << 8 | Int(msg[off + 9])
            guard off + 10 + rdlen <= msg.count else { return nil }
            if rtype == RRType.rrsig.rawValue { out.append(Array(msg[(off + 10)..<(off + 10 + rdlen)])) }
            off += 10 + rdlen
        }
        return out.isEmpty ? nil : out
    }

    /// The query's OPT record as the engine wrote it, with CO set when the query set it
    /// (RFC 9824 4; OPT: root, type, class, extended rcode, version, then the flags).
    private func copyOPT(_ start: Int, _ end: Int, compactOK: Bool) throws(DNSWireError) {
        let at = writer.position
        try writer.writeBytes(UnsafeRawBufferPointer(rebasing: m[start..<end]))
        if compactOK, end - start >= 11 { writer.buffer[at + 7] |= 0x40 }
    }

    // MARK: - Reading the unsigned response

    @inline(__always) private func u16(_ o: Int) -> UInt16 { UInt16(m[o]) << 8 | UInt16(m[o + 1]) }
    @inline(__always) private func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) << 16 | UInt32(u16(o + 2)) }

    /// The offset just past the name at `o` (a pointer ends it), or nil.
    private func skipName(_ start: Int) -> Int? {
        var o = start
        while o < m.count {
            let l = m[o]
            if l & 0xC0 == 0xC0 { return o + 2 <= m.count ? o + 2 : nil }
            guard l & 0xC0 == 0 else { return nil }
            if l == 0 { return o + 1 }
            o += Int(l) + 1
        }
        return nil
    }

    /// Copies the (possibly compressed) name at `start` into `dst` at `at`; returns where it
    /// ends in the message and its length. Bounded by `Wire.maxPointers` jumps and 255 bytes.
    private func expand(_ start: Int, into dst: UnsafeMutableRawBufferPointer, at: Int = 0, lower: Bool) -> (end: Int, length: Int)? {
        var o = start, n = 0, jumps = 0, end = -1
        while true {
            guard o < m.count else { return nil }
            let l = m[o]
            if l & 0xC0 == 0xC0 {
                guard o + 1 < m.count, jumps < Wire.maxPointers else { return nil }
                if end < 0 { end = o + 2 }
                o = Int(UInt16(l & 0x3F) << 8 | UInt16(m[o + 1]))
                jumps += 1
                continue
            }
            guard l & 0xC0 == 0, n + Int(l) + 1 <= 255, at + n + Int(l) < dst.count, o + Int(l) < m.count else { return nil }
            dst[at + n] = l
            if l == 0 { return (end < 0 ? o + 1 : end, n + 1) }
            for k in 1...Int(l) { dst[at + n + k] = lower ? asciiLower(m[o + k]) : m[o + k] }
            n += Int(l) + 1
            o += Int(l) + 1
        }
    }

    /// The end of the RRset starting at record `i`: same section, type, class and owner.
    private func setEnd(_ i: Int, _ count: Int) -> Int {
        let r = recs[i]
        guard let a = expand(r.owner, into: nameX, lower: true) else { return i + 1 }
        var j = i + 1
        while j < count, j - i < Signer.maxSetSize {
            let s = recs[j]
            guard s.section == r.section, s.type == r.type, s.cls == r.cls,
                  let b = expand(s.owner, into: nameY, lower: true), equalNames(nameX, a.length, nameY, b.length) else { break }
            j += 1
        }
        return j
    }

    private func equalNames(_ a: UnsafeMutableRawBufferPointer, _ al: Int, _ b: UnsafeMutableRawBufferPointer, _ bl: Int) -> Bool {
        guard al == bl else { return false }
        return memcmp(a.baseAddress!, b.baseAddress!, al) == 0
    }

    /// The rdata of record `r`, uncompressed, at `rd[at...]`; lowercases the names in it
    /// that RFC 4034 6.2 (as RFC 6840 5.1 amends it) puts in canonical form when `lower`.
    private func expandRData(_ r: Rec, at: Int, lower: Bool) -> Int? {
        let t = RRType(r.type)
        func name(_ src: Int, _ dst: Int) -> (end: Int, length: Int)? { expand(src, into: rd, at: dst, lower: lower) }
        func copy(_ src: Int, _ n: Int, _ dst: Int) -> Bool {
            guard src + n <= r.rdata + r.rdlen, dst + n <= rd.count else { return false }
            if n > 0 { UnsafeMutableRawBufferPointer(rebasing: rd[dst..<(dst + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: m[src..<(src + n)])) }
            return true
        }
        switch t {
        case .ns, .cname, .ptr, .dname:
            return name(r.rdata, at)?.length
        case .mx, .srv:
            let fixed = t == .mx ? 2 : 6
            guard copy(r.rdata, fixed, at), let n = name(r.rdata + fixed, at + fixed) else { return nil }
            return fixed + n.length
        case .soa:
            guard let a = name(r.rdata, at), let b = name(a.end, at + a.length),
                  copy(b.end, 20, at + a.length + b.length) else { return nil }
            return a.length + b.length + 20
        case .naptr:
            // order, preference, then three character-strings, then the replacement name.
            var o = r.rdata + 4
            for _ in 0..<3 {
                guard o < r.rdata + r.rdlen else { return nil }
                o += Int(m[o]) + 1
            }
            let fixed = o - r.rdata
            guard copy(r.rdata, fixed, at), let n = name(o, at + fixed) else { return nil }
            return fixed + n.length
        default:
            return copy(r.rdata, r.rdlen, at) ? r.rdlen : nil
        }
    }

    // MARK: - Writing

    /// Writes records `i..<j` (one RRset) and, when `sign` and the owner's zone is signed,
    /// its signatures. Returns the records written.
    private func emit(_ i: Int, _ j: Int, sign: Bool) throws(DNSWireError) -> Int {
        let r = recs[i]
        guard let a = expand(r.owner, into: owner, lower: false), let b = expand(r.owner, into: ownerLow, lower: true) else {
            throw .badPointer(r.owner)
        }
        ownerLen = a.length; ownerLowLen = b.length
        ownerIsQuestion = equalNames(ownerLow, ownerLowLen, qname, qnameLen)
        var at = 0
        for k in i..<j {
            guard let n = expandRData(recs[k], at: at, lower: false) else { throw .badRData(recs[k].rdata) }
            try writeOwner()
            try writer.writeRecordBody(type: RRType(recs[k].type), rrclass: RRClass(rawValue: recs[k].cls), ttl: recs[k].ttl,
                                       rdata: UnsafeRawBufferPointer(rebasing: rd[at..<(at + n)]))
            rdStart[k - i] = at; rdLen[k - i] = n
            at += n
        }
        guard sign, let zones, let signing,
              let (zi, _) = zones.findZone(lowercaseWire: UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen])),
              let zs = signing.zones[zi] else { return j - i }
        // Canonical rdata: the same bytes with their names lowercased.
        at = 0
        for k in i..<j {
            guard let n = expandRData(recs[k], at: at, lower: true) else { throw .badRData(recs[k].rdata) }
            at += n
        }
        let wildcard = wildcardEncloser(zones.zones[zi], type: r.type)
        if wildcard >= 0 && wildcardCount < Signer.maxWildcards {
            let slot = UnsafeMutableRawBufferPointer(rebasing: wildcards[(wildcardCount * 256)..<((wildcardCount + 1) * 256)])
            slot.copyMemory(from: UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen]))
            wildcardCE[wildcardCount] = wildcard
            wildcardCount += 1
        }
        return j - i + (try signatures(type: r.type, cls: r.cls, ttl: r.ttl, records: j - i, zone: zs, wildcard: wildcard))
    }

    /// For an owner that is not a node of `zone`, the offset of its closest encloser in
    /// `ownerLow` (the answer came from `*.<encloser>`, RFC 4592); -1 for a node.
    private func wildcardEncloser(_ zone: Zone, type: UInt16) -> Int {
        let full = UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen])
        guard zone.nodeIndex(lowercaseWire: full) < 0 else { return -1 }
        var o = Int(ownerLow[0]) + 1
        while o < ownerLowLen - 1 {
            if zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: ownerLow[o..<ownerLowLen])) >= 0 { return o }
            o += Int(ownerLow[o]) + 1
        }
        return -1
    }

    /// RRSIGs over the RRset whose canonical rdatas are in `rd` (`records` of them) and
    /// whose owner is in `owner`/`ownerLow`. `wildcard` >= 0 signs it as expanded from
    /// `*.` + the name at that offset of `ownerLow` (RFC 4034 3.1.3 labels, 3.1.8.1 owner).
    private func signatures(type: UInt16, cls: UInt16, ttl: UInt32, records: Int, zone zs: ZoneSigning, wildcard: Int) throws(DNSWireError) -> Int {
        // RFC 4034 6.3: the RRs sorted by canonical rdata, duplicates removed.
        for k in 0..<records { order[k] = k }
        if records > 1 {
            for a in 1..<records {
                var b = a
                while b > 0 && compareRData(order[b], order[b - 1]) < 0 { (order[b], order[b - 1]) = (order[b - 1], order[b]); b -= 1 }
            }
        }
        // The owner in canonical form: lowercase, or `*.<encloser>` for a wildcard.
        let base = Signer.prefixRoom
        var p = base
        var labels = 0
        let ownerStart = wildcard >= 0 ? wildcard : 0
        var o = ownerStart
        while o < ownerLowLen - 1 { labels += 1; o += Int(ownerLow[o]) + 1 }
        // RFC 4034 3.1.3: the wildcard label of an owner `*.<encloser>` is not counted.
        if wildcard < 0 && ownerLowLen > 2 && ownerLow[0] == 1 && ownerLow[1] == 0x2A { labels -= 1 }
        var ownerBytes = 0
        if wildcard >= 0 { canon[p] = 1; canon[p + 1] = UInt8(ascii: "*"); ownerBytes = 2 }
        let rest = ownerLowLen - ownerStart
        UnsafeMutableRawBufferPointer(rebasing: canon[(p + ownerBytes)..<(p + ownerBytes + rest)])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: ownerLow[ownerStart..<ownerLowLen]))
        ownerBytes += rest
        var prev = -1
        for k in 0..<records {
            let idx = order[k]
            if prev >= 0 && compareRData(idx, prev) == 0 { continue }
            prev = idx
            let n = rdLen[idx]
            guard p + ownerBytes + 10 + n <= canon.count else { throw .bufferFull(p) }
            if p != base {
                UnsafeMutableRawBufferPointer(rebasing: canon[p..<(p + ownerBytes)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: canon[base..<(base + ownerBytes)]))
            }
            p += ownerBytes
            put16(type, p); put16(cls, p + 2); put32(ttl, p + 4); put16(UInt16(n), p + 8)
            p += 10
            UnsafeMutableRawBufferPointer(rebasing: canon[p..<(p + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: rd[rdStart[idx]..<(rdStart[idx] + n)]))
            p += n
        }
        let rrs = UnsafeRawBufferPointer(rebasing: canon[base..<p])
        let t = RRType(type)
        let keys = t == .dnskey || t == .cds || t == .cdnskey ? zs.dnskeySigners : zs.zoneSigners
        let cache = signing!.cache
        var written = 0
        for key in keys {
            let (h1, h2) = hash128(rrs, seed: key.identity)
            var entry = SignatureCache.Entry()
            if !cache.lookup(h1, h2, key: key.identity, now: now, into: &entry) {
                // Inception backdated; expiry jittered by up to a tenth of the refresh time so
                // signatures made together are not all made again together.
                jitterState = mix64(jitterState &+ splitmix64Gamma)
                let jitter = zs.refresh > 10 ? UInt32(truncatingIfNeeded: jitterState % UInt64(zs.refresh / 10)) : 0
                entry.inception = now &- zs.inceptionOffset
                entry.expiration = now &+ zs.validity &- jitter
                entry.refreshAt = entry.expiration &- zs.refresh
                let prefixLength = 18 + zs.signerName.count
                writePrefix(at: base - prefixLength, type: type, key: key, labels: labels, ttl: ttl, entry: entry, signer: zs.signerName)
                let input = UnsafeRawBufferPointer(rebasing: canon[(base - prefixLength)..<p])
                var context = contexts[key.identity]
                if context == nil, let c = key.makeContext() {
                    contexts[key.identity] = c
                    context = c
                }
                let ok = withUnsafeMutableBytes(of: &entry.signature) { key.sign(input, into: $0.baseAddress!, context: context) }
                guard ok else { continue }
                cache.store(h1, h2, key: key.identity, entry)
            }
            // The RRSIG record: same owner, class and TTL as the RRset (RFC 4034 3).
            let prefixLength = 18 + zs.signerName.count
            writePrefix(at: 0, type: type, key: key, labels: labels, ttl: ttl, entry: entry, signer: zs.signerName, into: small)
            withUnsafeBytes(of: entry.signature) { s in
                UnsafeMutableRawBufferPointer(rebasing: small[prefixLength..<(prefixLength + 64)]).copyMemory(from: s)
            }
            try writeOwner()
            try writer.writeRecordBody(type: .rrsig, rrclass: RRClass(rawValue: cls), ttl: ttl,
                                       rdata: UnsafeRawBufferPointer(rebasing: small[0..<(prefixLength + 64)]))
            written += 1
        }
        return written
    }

    /// RRSIG rdata up to the signature (RFC 4034 3.1).
    private func writePrefix(at o: Int, type: UInt16, key: DNSSECKey, labels: Int, ttl: UInt32, entry: SignatureCache.Entry,
                             signer: [UInt8], into dst: UnsafeMutableRawBufferPointer? = nil) {
        let d = dst ?? canon
        func p16(_ v: UInt16, _ at: Int) { d[at] = UInt8(v >> 8); d[at + 1] = UInt8(truncatingIfNeeded: v) }
        func p32(_ v: UInt32, _ at: Int) { p16(UInt16(v >> 16), at); p16(UInt16(truncatingIfNeeded: v), at + 2) }
        p16(type, o)
        d[o + 2] = key.algorithm.rawValue
        d[o + 3] = UInt8(truncatingIfNeeded: labels)
        p32(ttl, o + 4)
        p32(entry.expiration, o + 8)
        p32(entry.inception, o + 12)
        p16(key.keyTag, o + 16)
        for (k, b) in signer.enumerated() { d[o + 18 + k] = b }
    }

    /// The current owner: a pointer to the question when it is the question's name.
    @inline(__always) private func writeOwner() throws(DNSWireError) {
        if ownerIsQuestion {
            try writer.writeU16(0xC00C)
        } else {
            try writer.writeName(UnsafeRawBufferPointer(rebasing: owner[0..<ownerLen]))
        }
    }

    @inline(__always) private func put16(_ v: UInt16, _ at: Int) { canon[at] = UInt8(v >> 8); canon[at + 1] = UInt8(truncatingIfNeeded: v) }
    @inline(__always) private func put32(_ v: UInt32, _ at: Int) { put16(UInt16(v >> 16), at); put16(UInt16(truncatingIfNeeded: v), at + 2) }

    private func compareRData(_ a: Int, _ b: Int) -> Int {
        let la = rdLen[a], lb = rdLen[b]
        let n = min(la, lb)
        if n > 0 {
            let c = memcmp(rd.baseAddress! + rdStart[a], rd.baseAddress! + rdStart[b], n)
            if c != 0 { return Int(c) }
        }
        return la - lb
    }

    // MARK: - Proofs

    /// After a referral's NS RRset (in `ownerLow`): the signed DS RRset of the cut, or an
    /// NSEC at the cut whose bitmap has no DS (RFC 4035 3.1.4).
    private func delegationProof() throws(DNSWireError) -> Int {
        guard let zones, let signing,
              let (zi, _) = zones.findZone(lowercaseWire: UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen])),
              let zs = signing.zones[zi] else { return 0 }
        let zone = zones.zones[zi]
        let idx = zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen]))
        guard idx >= 0 else { return 0 }
        let node = zone.nodes[idx]
        if let ds = node.rrset(.ds) {
            var at = 0
            let ownerView = UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen])
            for (k, r) in ds.rdatas.enumerated() where k < Signer.maxSetSize {
                try r.withBytes { (b) throws(DNSWireError) in
                    try writer.writeName(ownerView)
                    try writer.writeRecordBody(type: .ds, ttl: ds.ttl, rdata: b)
                    UnsafeMutableRawBufferPointer(rebasing: rd[at..<(at + b.count)]).copyMemory(from: b)
                }
                rdStart[k] = at; rdLen[k] = r.count
                at += r.count
            }
            let n = min(ds.rdatas.count, Signer.maxSetSize)
            return n + (try signatures(type: RRType.ds.rawValue, cls: 1, ttl: ds.ttl, records: n, zone: zs, wildcard: -1))
        }
        var nt = 0
        for s in node.rrsets where nt < Signer.maxTypes - 2 { types[nt] = s.type.rawValue; nt += 1 }
        return try nsec(next: nil, typeCount: nt, zone: zone, signing: zs)
    }

    /// The negative answer's NSEC (compact denial, RFC 9824) at the chain's last name, and
    /// the minimally covering NSECs of wildcard answers.
    private func proofs(negative: Bool, rcode: inout RCode, qtype: UInt16, compactOK: Bool) throws(DNSWireError) -> Int {
        guard let zones, let signing else { return 0 }
        var written = 0
        if negative, let (zi, _) = zones.findZone(lowercaseWire: UnsafeRawBufferPointer(rebasing: final[0..<finalLen])),
           let zs = signing.zones[zi] {
            let zone = zones.zones[zi]
            var nt = 0
            if rcode == .nxDomain {
                types[0] = RRType.nxname.rawValue
                nt = 1
                if !compactOK { rcode = .noError }
            } else {
                var idx = zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: final[0..<finalLen]))
                if idx < 0 { idx = wildcardNode(zone) }
                if idx >= 0 {
                    let node = zone.nodes[idx]
                    func add(_ t: UInt16) { if t != qtype && nt < Signer.maxTypes - 2 { types[nt] = t; nt += 1 } }
                    for s in node.rrsets { add(s.type.rawValue) }
                    if node.dynamicTypes.contains(.a) || node.dynamicTypes.contains(.all) { add(RRType.a.rawValue) }
                    if node.dynamicTypes.contains(.aaaa) || node.dynamicTypes.contains(.all) { add(RRType.aaaa.rawValue) }
                }
            }
            copyName(final, finalLen, to: ownerLow)
            ownerLowLen = finalLen
            written += try nsec(next: nil, typeCount: nt, zone: zone, signing: zs)
        }
        for w in 0..<wildcardCount {
            let ce = wildcardCE[w]
            let src = UnsafeMutableRawBufferPointer(rebasing: wildcards[(w * 256)..<((w + 1) * 256)])
            var len = 0
            while src[len] != 0 { len += Int(src[len]) + 1 }
            len += 1
            guard let (zi, _) = zones.findZone(lowercaseWire: UnsafeRawBufferPointer(rebasing: src[0..<len])),
                  let zs = signing.zones[zi] else { continue }
            // The label just below the closest encloser, L: the NSEC runs from the name just
            // before L.<ce> to L\000.<ce>, covering the name and nothing that exists.
            var l = 0
            while l + Int(src[l]) + 1 < ce { l += Int(src[l]) + 1 }
            let labelLength = Int(src[l])
            let ceLength = len - ce
            guard labelLength < 63, labelLength + 2 + ceLength <= 255 else { continue }
            // next = L\000.<ce>
            nameY[0] = UInt8(labelLength + 1)
            for k in 0..<labelLength { nameY[1 + k] = src[l + 1 + k] }
            nameY[labelLength + 1] = 0
            for k in 0..<ceLength { nameY[labelLength + 2 + k] = src[ce + k] }
            let nextLength = labelLength + 2 + ceLength
            // owner = L with its last octet decremented, padded with \255 to 63 octets.
            // (A label ending in \000 has no such predecessor to pad: no proof, left unsigned.)
            let predLength = labelLength
            var last = src[l + labelLength]
            guard last > 0 else { continue }
            last -= 1
            if last >= 0x41 && last <= 0x5A { last = 0x40 } // below "A": never lowercased past L
            let padded = min(63, 255 - ceLength - 1)
            guard padded >= predLength else { continue }
            ownerLow[0] = UInt8(padded)
            for k in 0..<predLength { ownerLow[1 + k] = src[l + 1 + k] }
            ownerLow[predLength] = last
            for k in predLength..<padded { ownerLow[1 + k] = 0xFF }
            for k in 0..<ceLength { ownerLow[1 + padded + k] = src[ce + k] }
            ownerLowLen = 1 + padded + ceLength
            types[0] = 0
            written += try nsec(next: nextLength, typeCount: 0, zone: zones.zones[zi], signing: zs)
        }
        return written
    }

    /// `*.<closest encloser>` of the name in `final` in `zone`, or -1.
    private func wildcardNode(_ zone: Zone) -> Int {
        var o = 0
        while o < finalLen - 1 {
            o += Int(final[o]) + 1
            let rest = UnsafeRawBufferPointer(rebasing: final[o..<finalLen])
            if zone.nodeIndex(lowercaseWire: rest) >= 0 {
                guard finalLen - o + 2 <= 255 else { return -1 }
                nameX[0] = 1; nameX[1] = UInt8(ascii: "*")
                UnsafeMutableRawBufferPointer(rebasing: nameX[2..<(2 + finalLen - o)]).copyMemory(from: rest)
                return zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: nameX[0..<(2 + finalLen - o)]))
            }
        }
        return -1
    }

    private func copyName(_ src: UnsafeMutableRawBufferPointer, _ n: Int, to dst: UnsafeMutableRawBufferPointer) {
        dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n)
    }

    /// One signed NSEC at `ownerLow`: next name `nameY[0..<next]`, or `\000.<owner>` when nil;
    /// the types in `types[0..<typeCount]` plus RRSIG and NSEC. TTL: the zone's negative TTL
    /// (RFC 4034 4, RFC 9077).
    private func nsec(next: Int?, typeCount: Int, zone: Zone, signing zs: ZoneSigning) throws(DNSWireError) -> Int {
        var n = typeCount
        types[n] = RRType.rrsig.rawValue; types[n + 1] = RRType.nsec.rawValue
        n += 2
        // Sorted, unique (a handful of types: insertion sort).
        for a in 1..<n {
            var b = a
            while b > 0 && types[b] < types[b - 1] { (types[b], types[b - 1]) = (types[b - 1], types[b]); b -= 1 }
        }
        var at = 0
        if let next {
            UnsafeMutableRawBufferPointer(rebasing: rd[0..<next]).copyMemory(from: UnsafeRawBufferPointer(rebasing: nameY[0..<next]))
            at = next
        } else {
            guard ownerLowLen + 2 <= 255 else { return 0 }
            rd[0] = 1; rd[1] = 0
            UnsafeMutableRawBufferPointer(rebasing: rd[2..<(2 + ownerLowLen)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: ownerLow[0..<ownerLowLen]))
            at = 2 + ownerLowLen
        }
        at += NSECBitmap.write(types, count: n, into: UnsafeMutableRawBufferPointer(rebasing: rd[at...]))
        copyName(ownerLow, ownerLowLen, to: owner)
        ownerLen = ownerLowLen
        ownerIsQuestion = equalNames(ownerLow, ownerLowLen, qname, qnameLen)
        try writeOwner()
        try writer.writeRecordBody(type: .nsec, ttl: zone.negativeTTL, rdata: UnsafeRawBufferPointer(rebasing: rd[0..<at]))
        rdStart[0] = 0; rdLen[0] = at
        return 1 + (try signatures(type: RRType.nsec.rawValue, cls: 1, ttl: zone.negativeTTL, records: 1, zone: zs, wildcard: -1))
    }
}
