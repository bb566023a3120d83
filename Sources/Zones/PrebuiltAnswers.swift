import DNSWire

/// Positive answers for static names, encoded once at load time, so the query path answers
/// most queries with the zone lookups it needs anyway and one copy.
///
/// Every node a query can match exactly (a node of the zone that `ZoneSet.findZone` picks
/// for its name, not at or below a zone cut) is marked, so the full algorithm can start at
/// it without walking the tree from the apex. For every RRset type at such a node that is
/// static (not bound to a GSLB policy, no CNAME), this keeps the bytes that follow the
/// question in the response: the answer section, and for NS, MX and SRV the additional
/// section. At a GSLB name that answers addresses, the static types beside it (SOA, NS,
/// MX, TXT...) are kept too; the types its policy owns never are. Owners are compression pointers to the question at offset 12, and every other
/// pointer points into the question or the block itself, so the block is valid after any
/// question of the same name whatever its case. The bytes are exactly what the full
/// algorithm in `QueryEngine` writes (simple types are encoded the same way; types with
/// names in the rdata or additional processing are produced by running the engine
/// itself), so answering from here changes nothing a client can see; it is only faster.
///
/// Anything else (NXDOMAIN, NODATA, wildcards, referrals, CNAMEs, ANY, GSLB answers, a block
/// that does not fit the client's size) is left to the full algorithm.
///
/// Storage is four flat allocations indexed by node, no per-name objects and no copy of
/// the names (the zone set's index finds the zone and node, `ZoneSet.findNode`), read
/// without reference counting.
///
///     let pre = PrebuiltAnswers(zones: zoneSet)
///     pre.entry(zone: 0, node: i, type: RRType.a.rawValue)  // the block's entry, or nil
public final class PrebuiltAnswers: @unchecked Sendable {
    /// One type's answer at one name.
    public struct Entry: Sendable, BitwiseCopyable {
        public var type: UInt16
        public var an: UInt16
        public var ns: UInt16
        public var ar: UInt16
        /// Offset of the block in `bytes`, and its length.
        public var start: UInt32
        public var length: UInt16
        /// The last entry of its node (the entries of a node are contiguous).
        public var last: Bool
    }

    /// `first` value of a node that the full algorithm must reach by walking (a cut or
    /// below one, or a name a more specific served zone answers).
    static let notHeld: Int32 = -2
    /// `first` value of a held node with no prebuilt answer (NODATA only, CNAME, GSLB only).
    static let noEntries: Int32 = -1

    // Immutable after init; freed in deinit. That is why `@unchecked Sendable` is safe.
    private let zoneBase: RawArray<Int32>
    private let first: RawArray<Int32>
    private let entries: RawArray<Entry>
    private let bytes: RawArray<UInt8>

    public var entryCount: Int { entries.count }
    public var byteCount: Int { bytes.count }

    /// Builds the answers for every eligible node in `zones` (a set without prebuilt
    /// answers: the engine answers the types it must produce).
    public init(zones: ZoneSet) {
        // Room for every answer without a pass over the records to count them: at most one
        // entry per RRset, so per record; a simple record's block is 12 bytes and its rdata,
        // and every rdata is in its zone's one storage array (which the apex's list views:
        // the apex holds the SOA). Capacity never written costs address space only; blocks
        // the engine writes (NS, MX, SOA...) may still grow the array.
        var nodeCount = 0, recordBound = 0, byteBound = 0
        let bases = RawArray<Int32>(capacity: zones.zones.count)
        for zone in zones.zones {
            bases.append(Int32(nodeCount))
            nodeCount += zone.nodes.count
            recordBound += zone.recordCount
            byteBound += 12 * zone.recordCount + zone.nodes[zone.apexIndex].rrsets.storage.count
        }
        zoneBase = bases
        first = RawArray(capacity: nodeCount)
        entries = RawArray(capacity: recordBound)
        bytes = RawArray(capacity: byteBound + 4096)
        let engine = QueryEngine()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
        defer { out.deallocate() }
        for (zi, zone) in zones.zones.enumerated() {
            // Only zones with cuts, or with a more specific served zone inside, have nodes
            // the algorithm must walk to: skip the per-node checks for the rest.
            let hasCuts = zone.nodes.contains { $0.isDelegation }
            let lowerOrigin = zone.origin.lowercased()
            let hasInner = zones.zones.contains { $0 !== zone && $0.origin.isSubdomain(of: lowerOrigin) }
            for node in zone.nodes {
                guard !node.isDelegation else { first.append(Self.notHeld); continue }
                if hasCuts || hasInner {
                    let wire = node.name.lowercased().wire
                    let held = wire.withUnsafeBytes { w in
                        zones.findZone(lowercaseWire: w)?.zone == zi && !PrebuiltAnswers.belowCut(w, zone: zone)
                    }
                    guard held else { first.append(Self.notHeld); continue }
                }
                let firstEntry = entries.count
                // At a GSLB name only the types its policy does not own come from here (MX,
                // TXT, SOA and NS beside an address name); its A and AAAA follow health.
                if node.rrset(.cname) == nil && !node.dynamicTypes.contains(.all) {
                    for set in node.rrsets where !node.dynamicTypes.owns(set.type) {
                        add(set, node: node, zones: zones, engine: engine, out: out)
                    }
                }
                if entries.count > firstEntry {
                    entries[entries.count - 1].last = true
                    first.append(Int32(firstEntry))
                } else {
                    first.append(Self.noEntries)
                }
            }
        }
    }

    /// Encodes one RRset's answer at a held node, or nothing if the engine does not give a
    /// complete authoritative answer for it or it could never fit a message.
    private func add(_ set: RRSet, node: ZoneNode, zones: ZoneSet, engine: QueryEngine,
                     out: UnsafeMutableRawBufferPointer) {
        let start = bytes.count
        var e = Entry(type: set.type.rawValue, an: UInt16(set.rdatas.count), ns: 0, ar: 0,
                      start: UInt32(start), length: 0, last: false)
        if PrebuiltAnswers.needsEngine(set.type) {
            guard let r = PrebuiltAnswers.run(engine, name: node.name, type: set.type, zones: zones, out: out)
            else { return }
            e.an = r.an; e.ns = r.ns; e.ar = r.ar
            bytes.append(r.block)
        } else {
            // The same encoder the full algorithm uses, owner compressed to the question.
            let writer = engine.writer
            writer.reset(buffer: out, limit: out.count)
            do {
                for rdata in set.rdatas {
                    try rdata.withBytes { (r) throws(DNSWireError) in
                        try writer.writeRecord(ownerOffset: 12, type: set.type, ttl: set.ttl, rdata: r)
                    }
                }
            } catch {
                return // larger than any message: left to the full algorithm (it sets TC)
            }
            bytes.append(UnsafeRawBufferPointer(rebasing: out[0..<writer.position]))
        }
        // A block larger than any message is left to the full algorithm (it sets TC).
        guard bytes.count - start <= 65535 - 12 - 255 - 4 else {
            bytes.truncate(to: start)
            return
        }
        e.length = UInt16(bytes.count - start)
        entries.append(e)
    }

    /// Whether the full algorithm may start at node `node` of zone `zone` (found by its
    /// exact name) instead of walking to it.
    @inline(__always) public func holds(zone: Int, node: Int) -> Bool {
        first[Int(zoneBase[zone]) + node] != Self.notHeld
    }

    /// The answer for type `type` at a held node, or nil.
    @inline(__always) public func entry(zone: Int, node: Int, type: UInt16) -> Entry? {
        var e = Int(first[Int(zoneBase[zone]) + node])
        guard e >= 0 else { return nil }
        while true {
            let entry = entries[e]
            if entry.type == type { return entry }
            if entry.last { return nil }
            e += 1
        }
    }

    /// The bytes of an entry's block.
    @inline(__always) public func block(_ e: Entry) -> UnsafeRawBufferPointer {
        bytes.bytes(from: Int(e.start), count: Int(e.length))
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
    static func run(_ engine: QueryEngine, name: DNSName, type: RRType, zones: ZoneSet,
                    out: UnsafeMutableRawBufferPointer)
        -> (an: UInt16, ns: UInt16, ar: UInt16, block: UnsafeRawBufferPointer)? {
        let query = QueryBuilder.query(id: 0, name: name, type: type)
        let n = query.withUnsafeBytes {
            engine.respond(query: $0, client: IPAddress(v4: 0x7F00_0001), tcp: true, zones: zones,
                           options: EngineOptions(), out: out)
        }
        guard n >= query.count else { return nil }
        let flags = UInt16(out[2]) << 8 | UInt16(out[3])
        // Only a complete authoritative NOERROR answer (AA set, TC clear, RCODE 0).
        guard flags & HeaderFlags.aa != 0, flags & HeaderFlags.tc == 0, flags & 0xF == 0 else { return nil }
        func u16(_ at: Int) -> UInt16 { UInt16(out[at]) << 8 | UInt16(out[at + 1]) }
        guard u16(6) > 0 else { return nil }
        return (u16(6), u16(8), u16(10), UnsafeRawBufferPointer(rebasing: out[query.count..<n]))
    }
}

/// A growable array of trivial values in one allocation, read through a raw pointer (no
/// reference counting or copy-on-write checks on the query path). Grows by doubling; the
/// part of the capacity never written is never touched, so it costs address space only.
final class RawArray<T: BitwiseCopyable>: @unchecked Sendable {
    private(set) var base: UnsafeMutablePointer<T>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    @inline(__always) subscript(_ i: Int) -> T {
        get { base[i] }
        set { base[i] = newValue }
    }

    func append(_ v: T) {
        if count == capacity { grow(to: capacity * 2) }
        base[count] = v
        count += 1
    }

    func truncate(to n: Int) { count = min(count, n) }

    private func grow(to n: Int) {
        let next = UnsafeMutablePointer<T>.allocate(capacity: n)
        next.update(from: base, count: count)
        base.deallocate()
        base = next
        capacity = n
    }
}

extension RawArray where T == UInt8 {
    func append(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        if count + b.count > capacity { grow(to: max(capacity * 2, count + b.count)) }
        UnsafeMutableRawPointer(base + count).copyMemory(from: b.baseAddress!, byteCount: b.count)
        count += b.count
    }

    @inline(__always) func bytes(from start: Int, count n: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + start, count: n)
    }
}
