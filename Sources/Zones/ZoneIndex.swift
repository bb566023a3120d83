import DNSWire

/// An open-addressing table of ids keyed by a 64-bit hash; the caller decides equality by
/// id, so keys are never copied out of the records.
struct IdTable {
    private var ids: [Int32]      // -1: empty
    private var tags: [UInt32]    // high hash bits, to skip most unequal keys cheaply
    private var mask: Int
    private(set) var count = 0

    init() {
        ids = Array(repeating: -1, count: 16)
        tags = Array(repeating: 0, count: 16)
        mask = 15
    }

    /// The id stored under a key equal to the new one, or `id` after storing it. `rehash`
    /// gives the hash of a stored id, for growing the table.
    @inline(__always)
    mutating func findOrInsert(hash h: UInt64, id: Int32, equal: (Int32) -> Bool, rehash: (Int32) -> UInt64) -> Int32 {
        if count * 2 >= ids.count { grow(rehash) }
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = ids[i]
            if s < 0 { ids[i] = id; tags[i] = tag; count += 1; return id }
            if tags[i] == tag && equal(s) { return s }
            i = (i + 1) & mask
        }
    }

    private mutating func grow(_ rehash: (Int32) -> UInt64) {
        let old = ids
        ids = Array(repeating: -1, count: old.count * 2)
        tags = Array(repeating: 0, count: old.count * 2)
        mask = ids.count - 1
        for id in old where id >= 0 {
            let h = rehash(id)
            var i = Int(truncatingIfNeeded: h) & mask
            while ids[i] >= 0 { i = (i + 1) & mask }
            ids[i] = id
            tags[i] = UInt32(truncatingIfNeeded: h >> 32)
        }
    }

    /// One splitmix64 step: spreads small integers over every bit.
    @inline(__always) static func mix(_ x: UInt64) -> UInt64 { mix64(x &+ splitmix64Gamma) }
}

/// The records of a zone grouped once by lowercase owner, RRset and rdata, shared by the
/// content checks (`ZoneCheck`) and the zone build (`Zone`), so a million-record zone hashes
/// each owner name and each rdata once instead of once per stage.
///
/// Owners at or below `origin` get ids in the order they first appear; those ids are also
/// the node ids of the zone built from the index, and `table` becomes the zone's name table.
/// Records outside the origin are left out (owner -1); the checks report them.
///
///     var index = ZoneIndex(records: records, origin: origin)
///     let errors = index.check(origin: origin)
struct ZoneIndex {
    let records: RecordBatch
    /// Lowercase origin wire bytes.
    let originKey: [UInt8]
    /// Lowercase owner wire name -> owner id.
    var table: NameTable
    /// Per record: its owner, or -1 when outside the origin.
    var ownerOf: [Int32]
    /// Per record: its RRset, or -1 for a duplicate (and for a record outside the origin).
    var setOf: [Int32]
    /// Per owner.
    var ownerFirstRecord: [Int32] = []
    var ownerFlags: [UInt8] = []
    var ownerFirstSet: [Int32] = []
    /// Per RRset, in the order each first appears; an owner's RRsets are linked by `setNext`.
    var setType: [RRType] = []
    var setTTL: [UInt32] = []
    var setCount: [Int32] = []
    var setNext: [Int32] = []
    /// Unique records at or below the origin.
    var uniqueCount = 0

    static let hasCNAME: UInt8 = 1
    /// Data other than CNAME, RRSIG and NSEC (what may not sit next to a CNAME, RFC 2181 10.1).
    static let hasOther: UInt8 = 2
    static let hasNS: UInt8 = 4
    static let hasDNAME: UInt8 = 8

    var ownerCount: Int { ownerFirstRecord.count }

    /// Owners with more RRsets than this find them through a hash table instead of their list.
    static let setScanLimit = 8

    init(records: [ResourceRecord], origin: DNSName) {
        self.init(records: RecordBatch(records), origin: origin)
    }

    init(records: RecordBatch, origin: DNSName) {
        self.records = records
        let originKey = origin.wire.map(asciiLower)
        self.originKey = originKey
        let n = records.count
        // The owners' bytes are at most the batch's names (fewer when an owner is written again
        // later): reserved, so the key bytes are not copied as they grow.
        var table = NameTable(capacity: n / 2 + 16, keyBytes: records.nameBytes.count)
        var ownerOf = [Int32](repeating: -1, count: n)
        var setOf = [Int32](repeating: -1, count: n)
        var ownerFirstRecord: [Int32] = [], ownerFlags: [UInt8] = [], ownerFirstSet: [Int32] = []
        var ownerLastSet: [Int32] = [], ownerSetCount: [Int32] = []
        var setOwner: [Int32] = [], setType: [RRType] = [], setTTL: [UInt32] = [], setCount: [Int32] = []
        var setNext: [Int32] = [], setFirstRecord: [Int32] = []
        ownerFirstRecord.reserveCapacity(n / 2); ownerFlags.reserveCapacity(n / 2); ownerFirstSet.reserveCapacity(n / 2)
        ownerLastSet.reserveCapacity(n / 2); ownerSetCount.reserveCapacity(n / 2)
        setOwner.reserveCapacity(n); setType.reserveCapacity(n); setTTL.reserveCapacity(n); setCount.reserveCapacity(n)
        setNext.reserveCapacity(n); setFirstRecord.reserveCapacity(n)
        // Sets of owners with many types, by (owner, type); records of sets with two or more
        // members, by (set, rdata). A record that starts a set cannot be a duplicate.
        var bigOwnerSets = IdTable()
        var members = IdTable()
        var uniqueCount = 0
        var scratch = [UInt8](repeating: 0, count: 256)
        let originLen = originKey.count
        var previousName = -1
        var previousOwner: Int32 = -1
        do {
            let rs = records
            @inline(__always) func rdataHash(_ set: Int32, _ ri: Int) -> UInt64 {
                rs.withRdata(ri) { p in
                    var x = IdTable.mix(UInt64(set))
                    for b in p { x = (x ^ UInt64(b)) &* 0x100000001b3 }
                    return x ^ (x >> 29)
                }
            }
            @inline(__always) func setHash(_ owner: Int32, _ type: RRType) -> UInt64 {
                IdTable.mix(UInt64(owner) << 16 | UInt64(type.rawValue))
            }
            // The table is larger than the caches, so each new name's first probe misses.
            // The slot of the name `lookahead` records on is prefetched (the same hash of
            // the same lowercase bytes that `findOrInsert` probes with), so several misses
            // are in flight at once and none stalls the loop.
            let lookahead = 16
            var aheadName = -1
            var ahead = [UInt8](repeating: 0, count: 256)
            for ri in 0..<rs.count {
                if ri + lookahead < rs.count, rs.nameIndex(ri + lookahead) != aheadName {
                    aheadName = rs.nameIndex(ri + lookahead)
                    let h = ahead.withUnsafeMutableBytes { s in
                        rs.withName(ri + lookahead) { w in
                            let n = min(w.count, s.count)
                            for k in 0..<n { s[k] = asciiLower(w[k]) }
                            return NameTable.hash(UnsafeRawBufferPointer(rebasing: s[0..<n]))
                        }
                    }
                    table.prefetch(hash: h)
                }
                // The parser enters an owner once for consecutive records written with it, so
                // the same name entry means the same owner, found without hashing.
                let base = rs.nameIndex(ri)
                let len = rs.nameLength(ri)
                let owner: Int32
                var newOwner = false
                if base == previousName {
                    owner = previousOwner
                } else {
                    if len > scratch.count { scratch = [UInt8](repeating: 0, count: len) }
                    let found: (entry: Int32, inserted: Bool)? = scratch.withUnsafeMutableBytes { s in
                        rs.withName(ri) { w in
                            for k in 0..<len { s[k] = asciiLower(w[k]) }
                        }
                        // At or below the origin: the origin's bytes end the name on a label boundary.
                        guard len >= originLen else { return nil }
                        var off = 0
                        while len - off > originLen { off += Int(s[off]) + 1 }
                        guard len - off == originLen else { return nil }
                        for k in 0..<originLen where s[off + k] != originKey[k] { return nil }
                        let key = UnsafeRawBufferPointer(rebasing: s[0..<len])
                        return table.findOrInsert(key, hash: NameTable.hash(key), value: Int32(table.count))
                    }
                    guard let found else { previousName = -1; continue }
                    owner = found.entry
                    newOwner = found.inserted
                    previousName = base
                    previousOwner = owner
                }
                let o = Int(owner)
                if newOwner {
                    ownerFirstRecord.append(Int32(ri))
                    ownerFlags.append(0)
                    ownerFirstSet.append(-1)
                    ownerLastSet.append(-1)
                    ownerSetCount.append(0)
                }
                ownerOf[ri] = owner
                let type = rs.type(ri)
                var set: Int32 = -1
                if ownerSetCount[o] <= ZoneIndex.setScanLimit {
                    var s = ownerFirstSet[o]
                    while s >= 0 { if setType[Int(s)] == type { set = s; break }; s = setNext[Int(s)] }
                } else {
                    let candidate = Int32(setType.count)
                    let found = bigOwnerSets.findOrInsert(hash: setHash(owner, type), id: candidate,
                                                          equal: { setOwner[Int($0)] == owner && setType[Int($0)] == type },
                                                          rehash: { setHash(setOwner[Int($0)], setType[Int($0)]) })
                    if found != candidate { set = found }
                }
                if set < 0 {
                    // A new RRset: its first record is unique.
                    set = Int32(setType.count)
                    setOwner.append(owner); setType.append(type); setTTL.append(rs.ttl(ri)); setCount.append(0)
                    setNext.append(-1); setFirstRecord.append(Int32(ri))
                    if ownerLastSet[o] < 0 { ownerFirstSet[o] = set } else { setNext[Int(ownerLastSet[o])] = set }
                    ownerLastSet[o] = set
                    ownerSetCount[o] += 1
                    if ownerSetCount[o] == ZoneIndex.setScanLimit + 1 {
                        // From now on this owner's sets are found by hashing: enter them all.
                        var s = ownerFirstSet[o]
                        while s >= 0 {
                            _ = bigOwnerSets.findOrInsert(hash: setHash(owner, setType[Int(s)]), id: s, equal: { _ in false },
                                                          rehash: { setHash(setOwner[Int($0)], setType[Int($0)]) })
                            s = setNext[Int(s)]
                        }
                    }
                } else {
                    let first = Int(setFirstRecord[Int(set)])
                    if setCount[Int(set)] == 1 {
                        if rs.rdataEqual(first, ri) { continue }
                        // The set gets its second member: enter the first one too.
                        _ = members.findOrInsert(hash: rdataHash(set, first), id: Int32(first), equal: { _ in false },
                                                 rehash: { rdataHash(setOf[Int($0)], Int($0)) })
                    }
                    if setCount[Int(set)] >= 1 {
                        let found = members.findOrInsert(hash: rdataHash(set, ri), id: Int32(ri),
                                                         equal: { j in setOf[Int(j)] == set && rs.rdataEqual(Int(j), ri) },
                                                         rehash: { rdataHash(setOf[Int($0)], Int($0)) })
                        if found != Int32(ri) { continue }
                    }
                }
                setOf[ri] = set
                setCount[Int(set)] += 1
                uniqueCount += 1
                switch type {
                case .cname: ownerFlags[o] |= ZoneIndex.hasCNAME
                case .rrsig, .nsec: break
                case .ns: ownerFlags[o] |= ZoneIndex.hasNS | ZoneIndex.hasOther
                case .dname: ownerFlags[o] |= ZoneIndex.hasDNAME | ZoneIndex.hasOther
                default: ownerFlags[o] |= ZoneIndex.hasOther
                }
            }
        }
        self.table = table
        self.ownerOf = ownerOf
        self.setOf = setOf
        self.ownerFirstRecord = ownerFirstRecord
        self.ownerFlags = ownerFlags
        self.ownerFirstSet = ownerFirstSet
        self.setType = setType
        self.setTTL = setTTL
        self.setCount = setCount
        self.setNext = setNext
        self.uniqueCount = uniqueCount
    }

    /// The owner id of lowercase wire bytes, or -1.
    func owner(lowercaseWire p: UnsafeRawBufferPointer) -> Int {
        let v = Int(table.find(p))
        return v < ownerCount ? v : -1
    }
}
