import DNSWire

/// An open-addressing table of ids for a fixed number of inserts, keyed by a 64-bit hash;
/// the caller decides equality by id, so keys are never copied out of the records.
struct IdTable {
    private var ids: [Int32]      // -1: empty
    private var tags: [UInt32]    // high hash bits, to skip most unequal keys cheaply
    private let mask: Int

    /// Room for `capacity` inserts at a load factor of at most 1/2.
    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        ids = Array(repeating: -1, count: size)
        tags = Array(repeating: 0, count: size)
        mask = size - 1
    }

    /// The id stored under a key equal to the new one, or `id` after storing it.
    @inline(__always)
    mutating func findOrInsert(hash h: UInt64, id: Int32, equal: (Int32) -> Bool) -> Int32 {
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = ids[i]
            if s < 0 { ids[i] = id; tags[i] = tag; return id }
            if tags[i] == tag && equal(s) { return s }
            i = (i + 1) & mask
        }
    }

    /// A 64-bit finalizer (the splitmix64 one): spreads small integers over every bit.
    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
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
    let records: [ResourceRecord]
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

    init(records: [ResourceRecord], origin: DNSName) {
        self.records = records
        let originKey = origin.wire.map(asciiLower)
        self.originKey = originKey
        let n = records.count
        var table = NameTable(capacity: n / 2 + 16)
        var ownerOf = [Int32](repeating: -1, count: n)
        var setOf = [Int32](repeating: -1, count: n)
        var ownerFirstRecord: [Int32] = [], ownerFlags: [UInt8] = [], ownerFirstSet: [Int32] = [], ownerLastSet: [Int32] = []
        var setOwner: [Int32] = [], setType: [RRType] = [], setTTL: [UInt32] = [], setCount: [Int32] = [], setNext: [Int32] = []
        var sets = IdTable(capacity: n)
        var unique = IdTable(capacity: n)
        var uniqueCount = 0
        var scratch = [UInt8](repeating: 0, count: 256)
        let originLen = originKey.count
        records.withUnsafeBufferPointer { rs in
            for ri in 0..<rs.count {
                let r = rs[ri]
                let len = r.name.wire.count
                if len > scratch.count { scratch = [UInt8](repeating: 0, count: len) }
                let found: (entry: Int32, inserted: Bool)? = scratch.withUnsafeMutableBytes { s in
                    r.name.wire.withUnsafeBytes { w in
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
                guard let (owner, newOwner) = found else { continue }
                let o = Int(owner)
                if newOwner {
                    ownerFirstRecord.append(Int32(ri))
                    ownerFlags.append(0)
                    ownerFirstSet.append(-1)
                    ownerLastSet.append(-1)
                }
                ownerOf[ri] = owner
                let type = r.type
                let newSet = Int32(setType.count)
                let set = sets.findOrInsert(hash: IdTable.mix(UInt64(owner) << 16 | UInt64(type.rawValue)), id: newSet) { s in
                    setOwner[Int(s)] == owner && setType[Int(s)] == type
                }
                if set == newSet {
                    setOwner.append(owner); setType.append(type); setTTL.append(r.ttl); setCount.append(0); setNext.append(-1)
                    if ownerLastSet[o] < 0 { ownerFirstSet[o] = set } else { setNext[Int(ownerLastSet[o])] = set }
                    ownerLastSet[o] = set
                }
                let h = r.rdata.withUnsafeBytes { p in
                    var x = IdTable.mix(UInt64(set))
                    for b in p { x = (x ^ UInt64(b)) &* 0x100000001b3 }
                    return x ^ (x >> 29)
                }
                let first = unique.findOrInsert(hash: h, id: Int32(ri)) { j in
                    setOf[Int(j)] == set && rs[Int(j)].rdata == r.rdata
                }
                guard first == Int32(ri) else { continue }
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
