import DNSWire
import Glibc

/// Positive answers for static names, encoded once at load time, so the query path answers
/// most queries with one hash probe and one copy.
///
/// For every name a query can match exactly (a node of the zone that `ZoneSet.findZone`
/// picks for it, not at or below a zone cut) it keeps where the node is, so the full
/// algorithm starts there without walking the tree; and for every RRset type at a static
/// name (not bound to a GSLB policy, with no CNAME) it keeps the bytes that follow the question in the
/// response: the answer section, and for NS, MX and SRV the additional section. Owners are
/// compression pointers to the question at offset 12, and every other pointer points into
/// the question or the block itself, so the block is valid after any question of the same
/// name whatever its case. The bytes are exactly what the full algorithm in `QueryEngine`
/// writes (simple types are encoded the same way; types with names in the rdata or
/// additional processing are produced by running the engine itself), so answering from
/// here changes nothing a client can see; it is only faster.
///
/// Anything else (NXDOMAIN, NODATA, wildcards, referrals, CNAMEs, ANY, GSLB names, a block
/// that does not fit the client's size) is left to the full algorithm.
///
/// Storage is a few flat allocations (no per-name arrays), read without reference counting.
///
///     let pre = PrebuiltAnswers(zones: zoneSet)
///     pre.find(lowercaseWire: name, type: RRType.a.rawValue)  // the block, or nil
public final class PrebuiltAnswers: @unchecked Sendable {
    /// One type's answer at one name.
    public struct Entry: Sendable {
        public var type: UInt16
        public var an: UInt16
        public var ns: UInt16
        public var ar: UInt16
        /// Offset of the block in `bytes`, and its length.
        public var start: UInt32
        public var length: UInt16
        /// The last entry of its name (the entries of a name are contiguous).
        public var last: Bool
    }

    struct Key {
        var offset: UInt32
        var hash: UInt32
        /// First entry of the name, or -1 when it has none (NODATA only, CNAME, GSLB).
        var firstEntry: Int32
        var length: UInt16
        /// Where the full algorithm finds the name: it starts there instead of walking.
        var zone: Int32
        var node: Int32
    }

    // Immutable after init; freed in deinit. That is why `@unchecked Sendable` is safe.
    private let slots: UnsafeMutablePointer<Int32>
    private let mask: Int
    private let keys: UnsafeMutablePointer<Key>
    private let keyBytes: UnsafeMutablePointer<UInt8>
    private let entries: UnsafeMutablePointer<Entry>
    private let bytes: UnsafeMutablePointer<UInt8>
    public let nameCount: Int
    public let entryCount: Int
    public let byteCount: Int

    /// Builds the answers for every eligible name in `zones`.
    public convenience init(zones: ZoneSet) {
        var b = Builder()
        b.build(zones)
        self.init(b)
    }

    private init(_ b: Builder) {
        nameCount = b.keys.count
        entryCount = b.entries.count
        byteCount = b.bytes.count
        var size = 16
        while size < nameCount * 2 { size <<= 1 }
        mask = size - 1
        slots = .allocate(capacity: size)
        slots.initialize(repeating: -1, count: size)
        keys = .allocate(capacity: max(nameCount, 1))
        keyBytes = .allocate(capacity: max(b.keyBytes.count, 1))
        entries = .allocate(capacity: max(entryCount, 1))
        bytes = .allocate(capacity: max(byteCount, 1))
        _ = UnsafeMutableBufferPointer(start: keys, count: nameCount).initialize(from: b.keys)
        _ = UnsafeMutableBufferPointer(start: keyBytes, count: b.keyBytes.count).initialize(from: b.keyBytes)
        _ = UnsafeMutableBufferPointer(start: entries, count: entryCount).initialize(from: b.entries)
        _ = UnsafeMutableBufferPointer(start: bytes, count: byteCount).initialize(from: b.bytes)
        for k in 0..<nameCount {
            var i = Int(truncatingIfNeeded: keys[k].hash) & mask
            while slots[i] >= 0 { i = (i + 1) & mask }
            slots[i] = Int32(k)
        }
    }

    deinit {
        slots.deallocate(); keys.deallocate(); keyBytes.deallocate(); entries.deallocate(); bytes.deallocate()
    }

    /// 64-bit multiply-xorshift over 8-byte words; the bytes must already be lowercase.
    @inline(__always) static func hash(_ p: UnsafeRawBufferPointer) -> UInt32 {
        let n = p.count
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(n)
        var i = 0
        while i + 8 <= n {
            h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(p[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 32
        return UInt32(truncatingIfNeeded: h)
    }

    /// The name's index for `entry` and `location`, or -1 when the name is not held here.
    @inline(__always) public func find(lowercaseWire p: UnsafeRawBufferPointer) -> Int {
        let h = PrebuiltAnswers.hash(p)
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s < 0 { return -1 }
            let k = keys[Int(s)]
            if k.hash == h && Int(k.length) == p.count
                && memcmp(keyBytes + Int(k.offset), p.baseAddress!, p.count) == 0 {
                return Int(s)
            }
            i = (i + 1) & mask
        }
    }

    /// The answer for type `type` at the name `find` returned, or nil.
    @inline(__always) public func entry(_ name: Int, type: UInt16) -> Entry? {
        var e = Int(keys[name].firstEntry)
        guard e >= 0 else { return nil }
        while true {
            let entry = entries[e]
            if entry.type == type { return entry }
            if entry.last { return nil }
            e += 1
        }
    }

    /// The zone and node of the name `find` returned.
    @inline(__always) public func location(_ name: Int) -> (zone: Int, node: Int) {
        (Int(keys[name].zone), Int(keys[name].node))
    }

    /// The entry for a lowercase wire name and a type, or nil.
    public func find(lowercaseWire p: UnsafeRawBufferPointer, type: UInt16) -> Entry? {
        let k = find(lowercaseWire: p)
        return k >= 0 ? entry(k, type: type) : nil
    }

    /// The bytes of an entry's block.
    @inline(__always) public func block(_ e: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: bytes + Int(e.start), count: Int(e.length))
    }

    private struct Builder {
        var keys: [Key] = []
        var keyBytes: [UInt8] = []
        var entries: [Entry] = []
        var bytes: [UInt8] = []

        mutating func build(_ zones: ZoneSet) {
            var engine: QueryEngine? = nil
            let query = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
            let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
            defer { query.deallocate(); out.deallocate() }
            for (zi, zone) in zones.zones.enumerated() {
                for (ni, node) in zone.nodes.enumerated() where !node.isDelegation {
                    let wire = node.name.lowercased().wire
                    let eligible = wire.withUnsafeBytes { w in
                        zones.findZone(lowercaseWire: w)?.zone == zi && !PrebuiltAnswers.belowCut(w, zone: zone)
                    }
                    guard eligible else { continue }
                    let first = entries.count
                    let static_ = node.dynamicIndex < 0 && node.rrset(.cname) == nil
                    for set in node.rrsets where static_ {
                        let start = bytes.count
                        var e = Entry(type: set.type.rawValue, an: UInt16(set.rdatas.count), ns: 0, ar: 0,
                                      start: UInt32(start), length: 0, last: false)
                        if PrebuiltAnswers.needsEngine(set.type) {
                            if engine == nil { engine = QueryEngine() }
                            guard let r = PrebuiltAnswers.run(engine!, name: wire, type: set.type, zones: zones,
                                                              query: query, out: out) else { continue }
                            e.an = r.an; e.ns = r.ns; e.ar = r.ar
                            bytes.append(contentsOf: r.block)
                        } else {
                            for rdata in set.rdatas {
                                bytes.append(contentsOf: [0xC0, 12, UInt8(set.type.rawValue >> 8), UInt8(truncatingIfNeeded: set.type.rawValue),
                                                          0, 1, UInt8(set.ttl >> 24), UInt8(truncatingIfNeeded: set.ttl >> 16),
                                                          UInt8(truncatingIfNeeded: set.ttl >> 8), UInt8(truncatingIfNeeded: set.ttl),
                                                          UInt8(rdata.count >> 8), UInt8(truncatingIfNeeded: rdata.count)])
                                bytes.append(contentsOf: rdata)
                            }
                        }
                        // A block larger than any message is left to the full algorithm (TC).
                        guard bytes.count - start <= 65535 - 12 - wire.count - 4 else {
                            bytes.removeLast(bytes.count - start)
                            continue
                        }
                        e.length = UInt16(bytes.count - start)
                        entries.append(e)
                    }
                    if entries.count > first { entries[entries.count - 1].last = true }
                    let h = wire.withUnsafeBytes { PrebuiltAnswers.hash($0) }
                    keys.append(Key(offset: UInt32(keyBytes.count), hash: h, firstEntry: entries.count > first ? Int32(first) : -1,
                                    length: UInt16(wire.count), zone: Int32(zi), node: Int32(ni)))
                    keyBytes.append(contentsOf: wire)
                }
            }
        }
    }

    /// Types whose answers hold compressible names (RFC 1035 4.1.4) or bring additional
    /// records (NS, MX, SRV): produced by the engine itself rather than re-encoded here.
    static func needsEngine(_ t: RRType) -> Bool {
        switch t {
        case .ns, .cname, .ptr, .mx, .soa, .srv: return true
        default: return false
        }
    }

    /// Whether a proper ancestor of the name, below the zone's apex, is a zone cut: then the
    /// name is answered with a referral, not from here.
    static func belowCut(_ w: UnsafeRawBufferPointer, zone: Zone) -> Bool {
        let originLength = zone.origin.wire.count
        var off = Int(w[0]) + 1
        while w.count - off > originLength {
            let idx = zone.nodeIndex(lowercaseWire: UnsafeRawBufferPointer(rebasing: w[off...]))
            if idx >= 0 && zone.nodes[idx].isDelegation { return true }
            off += Int(w[off]) + 1
        }
        return false
    }

    /// Asks the engine (over TCP, so nothing is truncated) and keeps what follows the question.
    static func run(_ engine: QueryEngine, name: [UInt8], type: RRType, zones: ZoneSet,
                    query: UnsafeMutableRawBufferPointer, out: UnsafeMutableRawBufferPointer)
        -> (an: UInt16, ns: UInt16, ar: UInt16, block: UnsafeRawBufferPointer)? {
        let qlen = 12 + name.count + 4
        guard qlen <= query.count else { return nil }
        for i in 0..<12 { query[i] = 0 }
        query[5] = 1 // QDCOUNT 1
        for (i, b) in name.enumerated() { query[12 + i] = b }
        query[12 + name.count] = UInt8(type.rawValue >> 8)
        query[12 + name.count + 1] = UInt8(truncatingIfNeeded: type.rawValue)
        query[12 + name.count + 2] = 0
        query[12 + name.count + 3] = 1
        let n = engine.respond(query: UnsafeRawBufferPointer(rebasing: query[0..<qlen]), client: IPAddress(v4: 0x7F00_0001),
                               tcp: true, zones: zones, options: EngineOptions(), out: out)
        guard n >= qlen else { return nil }
        let flags = UInt16(out[2]) << 8 | UInt16(out[3])
        // Only a complete authoritative NOERROR answer (AA set, TC clear, RCODE 0).
        guard flags & HeaderFlags.aa != 0, flags & HeaderFlags.tc == 0, flags & 0xF == 0 else { return nil }
        func u16(_ at: Int) -> UInt16 { UInt16(out[at]) << 8 | UInt16(out[at + 1]) }
        guard u16(6) > 0 else { return nil }
        return (u16(6), u16(8), u16(10), UnsafeRawBufferPointer(rebasing: out[qlen..<n]))
    }
}
