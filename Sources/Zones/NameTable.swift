import DNSWire

/// An open-addressing hash table from lowercase wire names to node indices, probed with
/// raw bytes so the query path can look up any suffix of the question name straight from
/// a scratch buffer without building a `DNSName` (no allocation per query).
///
/// Built once at load time, then only read. Load factor at most 1/2, so probes stay short.
///
///     var t = NameTable(capacity: names.count)
///     t.insert(lowercaseWire: name.wire, value: 3)
///     t.find(ptr)  // 3
struct NameTable: Sendable {
    private var slots: [Int32]       // index into keys/values, or -1
    private var hashes: [UInt64]
    private var keys: [[UInt8]]
    private(set) var values: [Int32]
    private var mask: Int

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = Array(repeating: -1, count: size)
        hashes = []
        keys = []
        values = []
        mask = size - 1
    }

    var count: Int { keys.count }

    /// FNV-1a over the bytes; the bytes must already be lowercase.
    @inline(__always) static func hash(_ p: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in p { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h ^ (h >> 29)
    }

    mutating func insert(lowercaseWire key: [UInt8], value: Int32) {
        if keys.count * 2 >= slots.count { grow() }
        let h = key.withUnsafeBytes { NameTable.hash($0) }
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 {
            let k = Int(slots[i])
            if hashes[k] == h && keys[k] == key { values[k] = value; return }
            i = (i + 1) & mask
        }
        slots[i] = Int32(keys.count)
        hashes.append(h)
        keys.append(key)
        values.append(value)
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        var size = slots.count * 2
        if size < 16 { size = 16 }
        slots = Array(repeating: -1, count: size)
        mask = size - 1
        hashes = []; keys = []; values = []
        for (k, v) in zip(oldKeys, oldValues) { insert(lowercaseWire: k, value: v) }
    }

    /// Finds the value for lowercase wire bytes, or -1.
    @inline(__always) func find(_ p: UnsafeRawBufferPointer) -> Int32 {
        let h = NameTable.hash(p)
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s < 0 { return -1 }
            let k = Int(s)
            if hashes[k] == h {
                let equal = keys[k].withUnsafeBytes { kb in
                    kb.count == p.count && (p.count == 0 || memcmpBytes(kb, p))
                }
                if equal { return values[k] }
            }
            i = (i + 1) & mask
        }
    }

    func find(_ key: [UInt8]) -> Int32 { key.withUnsafeBytes { find($0) } }
}

@inline(__always) func memcmpBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    for i in 0..<a.count where a[i] != b[i] { return false }
    return true
}
