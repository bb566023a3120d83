import CShim
import DNSWire

/// An open-addressing hash table from lowercase wire names to node indices, probed with
/// raw bytes so the query path can look up any suffix of the question name straight from
/// a scratch buffer without building a `DNSName` (no allocation per query).
///
/// Keys live back to back in one byte buffer, so a million names cost three arrays rather
/// than a million small ones. Built once at load time, then only read. Load factor at most
/// 1/2, so probes stay short.
///
///     var t = NameTable(capacity: names.count)
///     t.insert(lowercaseWire: name.wire, value: 3)
///     t.find(ptr)  // 3
struct NameTable: Sendable {
    /// 0 for an empty slot, else the hash's high 32 bits above entry index + 1: a probe
    /// rejects most other names without touching their keys (one cache miss, not three).
    private var slots: [UInt64]
    /// Entry k's key is `bytes[starts[k]..<starts[k + 1]]`.
    private var starts: [UInt32]
    private var bytes: [UInt8]
    private(set) var values: [Int32]
    private var mask: Int
    /// The longest key: a longer name is no key, found without hashing (the zone set's
    /// table is probed with every suffix of the question, most of them longer than any origin).
    private var maxKeyLength = 0

    /// Room for `capacity` keys of `keyBytes` bytes in all without growing.
    init(capacity: Int, keyBytes: Int = 0) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = Array(repeating: 0, count: size)
        starts = [0]
        starts.reserveCapacity(capacity + 1)
        bytes = []
        bytes.reserveCapacity(keyBytes)
        values = []
        values.reserveCapacity(capacity)
        mask = size - 1
    }

    var count: Int { values.count }

    /// A hash of the bytes (already lowercase), eight at a time: each word is folded in with
    /// a multiply and a shift, the last partial word read as the message's last eight bytes
    /// (or byte by byte for keys shorter than a word), then a 64-bit finalizer (MurmurHash3's
    /// fmix64 constants) spreads every input bit into the tag (high half) and the slot (low
    /// bits). About 25 instructions for a 20-byte name where FNV-1a took about 100.
    @inline(__always) static func hash(_ p: UnsafeRawBufferPointer) -> UInt64 {
        let n = p.count
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(truncatingIfNeeded: n &+ 1)
        guard n > 0, let base = p.baseAddress else { return finalize(h) }
        var i = 0
        while i &+ 8 <= n {
            h = (h ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            i &+= 8
        }
        if i < n {
            var t: UInt64 = 0
            if n >= 8 {
                t = base.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self)
            } else {
                for k in 0..<n { t |= UInt64(base.load(fromByteOffset: k, as: UInt8.self)) << (UInt64(k) &* 8) }
            }
            h = (h ^ t) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
        }
        return finalize(h)
    }

    @inline(__always) private static func finalize(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }

    /// Brings the slot a key with hash `h` probes first into the cache without waiting for
    /// it: called some keys ahead of `findOrInsert`, so the miss on a table larger than the
    /// caches overlaps the work on the keys before it instead of stalling on each new name.
    @inline(__always) func prefetch(hash h: UInt64) {
        slots.withUnsafeBufferPointer { p in
            cshim_prefetch(p.baseAddress.map { $0 + (Int(truncatingIfNeeded: h) & mask) })
        }
    }

    mutating func insert(lowercaseWire key: [UInt8], value: Int32) {
        key.withUnsafeBytes { k in
            let (i, inserted) = findOrInsert(k, hash: NameTable.hash(k), value: value)
            if !inserted { values[Int(i)] = value }
        }
    }

    /// The entry for `key` (lowercase wire bytes whose hash is `hash`), added with `value`
    /// when missing. Returns the entry's index (entries are numbered in insertion order)
    /// and whether it was added.
    @inline(__always)
    mutating func findOrInsert(_ key: UnsafeRawBufferPointer, hash h: UInt64, value: Int32) -> (entry: Int32, inserted: Bool) {
        if values.count * 2 >= slots.count { grow() }
        let tag = h & 0xFFFF_FFFF_0000_0000
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { break }
            if s & 0xFFFF_FFFF_0000_0000 == tag {
                let k = Int(truncatingIfNeeded: s & 0xFFFF_FFFF) - 1
                if keyEquals(k, key) { return (Int32(k), false) }
            }
            i = (i + 1) & mask
        }
        let e = Int32(values.count)
        slots[i] = tag | UInt64(e + 1)
        bytes.append(contentsOf: key)
        starts.append(UInt32(bytes.count))
        maxKeyLength = max(maxKeyLength, key.count)
        values.append(value)
        return (e, true)
    }

    /// Whether entry k's key is the bytes in `p` (for `NodeIndex`, which keeps no keys of its own).
    @inline(__always) func keyEquals(_ k: Int, _ p: UnsafeRawBufferPointer) -> Bool {
        let a = Int(starts[k]), b = Int(starts[k + 1])
        guard b - a == p.count else { return false }
        return bytes.withUnsafeBytes { kb in
            memcmpBytes(UnsafeRawBufferPointer(rebasing: kb[a..<b]), p)
        }
    }

    /// Entry k's key, lowercase wire bytes.
    func key(_ k: Int) -> ArraySlice<UInt8> { bytes[Int(starts[k])..<Int(starts[k + 1])] }

    /// Calls `body` with every key: entry k's is `bytes[starts[k]..<starts[k + 1]]` (load time).
    func withKeys<R>(_ body: (_ starts: UnsafeBufferPointer<UInt32>, _ bytes: UnsafeRawBufferPointer) -> R) -> R {
        starts.withUnsafeBufferPointer { s in bytes.withUnsafeBytes { b in body(s, b) } }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = Array(repeating: 0, count: size)
        mask = size - 1
        bytes.withUnsafeBytes { all in
            for k in 0..<values.count {
                let h = NameTable.hash(UnsafeRawBufferPointer(rebasing: all[Int(starts[k])..<Int(starts[k + 1])]))
                var i = Int(truncatingIfNeeded: h) & mask
                while slots[i] != 0 { i = (i + 1) & mask }
                slots[i] = h & 0xFFFF_FFFF_0000_0000 | UInt64(k + 1)
            }
        }
    }

    /// Finds the value for lowercase wire bytes, or -1.
    @inline(__always) func find(_ p: UnsafeRawBufferPointer) -> Int32 {
        guard p.count <= maxKeyLength else { return -1 }
        let h = NameTable.hash(p)
        let tag = h & 0xFFFF_FFFF_0000_0000
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return -1 }
            if s & 0xFFFF_FFFF_0000_0000 == tag {
                let k = Int(truncatingIfNeeded: s & 0xFFFF_FFFF) - 1
                if keyEquals(k, p) { return values[k] }
            }
            i = (i + 1) & mask
        }
    }

    func find(_ key: [UInt8]) -> Int32 { key.withUnsafeBytes { find($0) } }
}

/// Whether two byte ranges of the same length are equal, eight bytes at a time (the last
/// word overlapping the one before it; byte by byte below eight bytes).
@inline(__always) func memcmpBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    let n = a.count
    guard n > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return true }
    if n < 8 {
        for i in 0..<n where pa.load(fromByteOffset: i, as: UInt8.self) != pb.load(fromByteOffset: i, as: UInt8.self) {
            return false
        }
        return true
    }
    var i = 0
    while i &+ 8 < n {
        if pa.loadUnaligned(fromByteOffset: i, as: UInt64.self) != pb.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i &+= 8
    }
    return pa.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self) == pb.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self)
}
