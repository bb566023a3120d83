import CShim

/// Every name of every zone in a `ZoneSet` that a query for exactly that name reaches, keyed
/// by its lowercase wire bytes, to its zone and node: one hash and one probe of the question's
/// name give what the zone search (the longest origin) and the zone's node lookup gave with a
/// hash and a probe each.
///
/// A name is here with the zone `ZoneSet.findZone` picks for it, and only if it is a node of
/// that zone: a name that is a node of a parent zone but lies in a more specific served zone
/// (glue for a served child, say) is that child's business, and a miss means the name is no
/// node of its zone (the lookup then searches the zone and walks, knowing the name is absent).
/// Delegations and names below them are here like any node (the prebuilt answers tell the
/// engine whether it may start at the node or must walk to it).
///
/// The index holds no names: a slot is the high bits of the key's hash (a tag that rejects
/// most other names without touching their keys) above the zone and entry, and the key is
/// read from the zone's own `NameTable`, whose entry k is node k. About 8 to 16 bytes a name,
/// built once per zone set (each load), then only read, by every worker without locks.
///
///     let index = NodeIndex(zones: zones) { w in findZone(w)?.zone }
///     let (zone, node) = index.find(name, zones: zoneRefs)   // zone -1: not a node
struct NodeIndex: Sendable {
    /// 0 for an empty slot, else `tag | zone << nodeBits | (entry + 1)`.
    private let slots: [UInt64]
    private let mask: Int
    private let nodeBits: UInt64
    private let nodeMask: UInt64
    /// The bits of a slot above its zone and entry: the hash's bits there.
    private let tagMask: UInt64
    /// The longest name held: a longer question is found missing without a hash.
    private let maxKeyLength: Int

    /// Indexes every node of `zones` whose name `zoneOf` (the zone set's zone search) puts in
    /// its own zone. `zoneOf` is asked only for the zones that a more specific or equal served
    /// origin can take names from.
    init(zones: [Zone], originTable: NameTable, zoneOf: (UnsafeRawBufferPointer) -> Int?) {
        var total = 0, maxNodes = 0
        for z in zones {
            total += z.nodes.count
            maxNodes = max(maxNodes, z.nodes.count)
        }
        var size = 16
        while size < total * 2 { size <<= 1 }
        mask = size - 1
        // Entry + 1 is at most the zone's node count; zones are numbered from 0.
        nodeBits = UInt64(Int.bitWidth - maxNodes.leadingZeroBitCount)
        nodeMask = nodeBits == 0 ? 0 : ~UInt64(0) >> (64 - nodeBits)
        let payloadBits = nodeBits + UInt64(Int.bitWidth - max(zones.count - 1, 0).leadingZeroBitCount)
        tagMask = payloadBits >= 64 ? 0 : ~UInt64(0) << payloadBits
        var slots = [UInt64](repeating: 0, count: size)
        var longest = 0
        let shared = NodeIndex.sharing(zones, originTable: originTable)
        let mask = self.mask, nodeBits = self.nodeBits, tagMask = self.tagMask
        slots.withUnsafeMutableBufferPointer { table in
            // Hashes of a chunk of keys first, each slot prefetched as its hash is known, then
            // the chunk's inserts: the table is larger than the caches for a large zone, and
            // this way the misses overlap instead of stalling on each name.
            let chunk = 32
            var hashes = [UInt64](repeating: 0, count: chunk)
            for (zi, zone) in zones.enumerated() {
                zone.table.withKeys { starts, bytes in
                    let count = starts.count - 1
                    var base = 0
                    while base < count {
                        let n = min(chunk, count - base)
                        for j in 0..<n {
                            let k = base + j
                            let h = NameTable.hash(UnsafeRawBufferPointer(rebasing: bytes[Int(starts[k])..<Int(starts[k + 1])]))
                            hashes[j] = h
                            cshim_prefetch(table.baseAddress! + (Int(truncatingIfNeeded: h) & mask))
                        }
                        for j in 0..<n {
                            let k = base + j
                            let key = UnsafeRawBufferPointer(rebasing: bytes[Int(starts[k])..<Int(starts[k + 1])])
                            if shared[zi] && zoneOf(key) != zi { continue }
                            let h = hashes[j]
                            var i = Int(truncatingIfNeeded: h) & mask
                            while table[i] != 0 { i = (i + 1) & mask }
                            table[i] = h & tagMask | UInt64(zi) << nodeBits | UInt64(k + 1)
                            longest = max(longest, key.count)
                        }
                        base += n
                    }
                }
            }
        }
        self.slots = slots
        maxKeyLength = longest
    }

    /// For each zone, whether another served zone's origin is at or below its own (a child
    /// zone, or the same origin served twice): then some of its names may be found in that
    /// zone instead, and each must be asked about. One probe per label of each origin.
    private static func sharing(_ zones: [Zone], originTable: NameTable) -> [Bool] {
        var shared = [Bool](repeating: false, count: zones.count)
        for (zi, zone) in zones.enumerated() {
            let wire = zone.origin.lowercased().wire
            wire.withUnsafeBytes { w in
                let own = Int(originTable.find(w))
                if own != zi {
                    // Served twice: the search picks `own`; both ask about their names.
                    shared[zi] = true
                    if own >= 0 { shared[own] = true }
                }
                var off = 0
                while off < w.count - 1 {
                    off += Int(w[off]) + 1
                    let parent = Int(originTable.find(UnsafeRawBufferPointer(rebasing: w[off...])))
                    if parent >= 0 && parent != zi { shared[parent] = true }
                }
            }
        }
        return shared
    }

    /// The zone and node whose name is the lowercase wire bytes in `p`, or zone -1.
    @inline(__always) func find(_ p: UnsafeRawBufferPointer, zones: [Unmanaged<Zone>]) -> (zone: Int, node: Int) {
        guard p.count <= maxKeyLength else { return (-1, -1) }
        let h = NameTable.hash(p)
        let tag = h & tagMask
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return (-1, -1) }
            if s & tagMask == tag {
                let z = Int(truncatingIfNeeded: (s & ~tagMask) >> nodeBits)
                let k = Int(truncatingIfNeeded: s & nodeMask) &- 1
                if zones[z]._withUnsafeGuaranteedRef({ $0.table.keyEquals(k, p) }) { return (z, k) }
            }
            i = (i &+ 1) & mask
        }
    }
}
