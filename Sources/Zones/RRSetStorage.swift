import DNSWire

// A zone's RRsets are packed into one byte array (`Zone.init`), so a million-record zone
// costs a few large allocations rather than an array per record, per RRset and per name.
// Layout of one RRset, in native byte order:
//
//     type u16 | count u16 | ttl u32 | length u32 (bytes of the rdatas that follow)
//     then `count` times: rdata length u16 | rdata
//
// A name's RRsets are contiguous; `RRSetList` is a name's range of the array, `RRSet` one
// set's header and `RdataList` its records, all views sharing the one array.

enum PackedSets {
    static let header = 12

    @inline(__always) static func u16(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt16 {
        p.loadUnaligned(fromByteOffset: at, as: UInt16.self)
    }

    @inline(__always) static func u32(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        p.loadUnaligned(fromByteOffset: at, as: UInt32.self)
    }

    /// Appends one RRset header; the rdatas follow with `appendRdata`.
    static func appendHeader(_ out: inout [UInt8], type: RRType, count: Int, ttl: UInt32, length: Int) {
        withUnsafeBytes(of: type.rawValue) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(count)) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: ttl) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(length)) { out.append(contentsOf: $0) }
    }

    static func appendRdata(_ out: inout [UInt8], _ rdata: [UInt8]) {
        withUnsafeBytes(of: UInt16(rdata.count)) { out.append(contentsOf: $0) }
        out.append(contentsOf: rdata)
    }
}

/// One record's rdata, uncompressed wire form: a view into its zone's storage, indexed from 0.
///
///     set.rdatas.first?.bytes      // [UInt8], a copy
public struct Rdata: RandomAccessCollection, Sendable {
    let storage: [UInt8]
    let start: Int
    public let count: Int

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    @inline(__always) public subscript(i: Int) -> UInt8 { storage[start + i] }

    /// A copy of the bytes.
    public var bytes: [UInt8] { Array(storage[start..<(start + count)]) }

    /// Runs `body` over the bytes, in place. Written here rather than through DNSWire's
    /// `withBytes`, so that the callers in this module get it specialized (no generic
    /// metadata lookup per record).
    @inline(__always)
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(DNSWireError) -> R) throws(DNSWireError) -> R {
        let (s, n) = (start, count)
        let r: Result<R, DNSWireError> = storage.withUnsafeBytes { p in
            Result { () throws(DNSWireError) in try body(UnsafeRawBufferPointer(rebasing: p[s..<(s + n)])) }
        }
        return try r.get()
    }
}

/// The records of one RRset, in zone-file order. `count` is O(1); walking is sequential.
public struct RdataList: Collection, Sendable {
    let storage: [UInt8]
    /// Offset of the first record's length field, and the end of the last record.
    let first: Int
    let end: Int
    public let count: Int

    /// A byte offset into the storage; only for indices this list gave.
    public struct Index: Comparable, Sendable {
        let offset: Int
        public static func < (a: Index, b: Index) -> Bool { a.offset < b.offset }
    }

    public var startIndex: Index { Index(offset: first) }
    public var endIndex: Index { Index(offset: end) }
    public var isEmpty: Bool { count == 0 }

    @inline(__always) public func index(after i: Index) -> Index {
        let n = storage.withUnsafeBytes { Int(PackedSets.u16($0, i.offset)) }
        return Index(offset: i.offset + 2 + n)
    }

    @inline(__always) public subscript(i: Index) -> Rdata {
        let n = storage.withUnsafeBytes { Int(PackedSets.u16($0, i.offset)) }
        return Rdata(storage: storage, start: i.offset + 2, count: n)
    }

    /// The first record's rdata copied, or an empty array for an empty set.
    public var firstBytes: [UInt8] { first < end ? self[startIndex].bytes : [] }
}

/// The records of one type at one name. TTLs in an RRset are equal (RFC 2181 5.2).
public struct RRSet: Sendable {
    public let type: RRType
    public let ttl: UInt32
    /// Uncompressed wire rdata, one entry per record, in zone-file order.
    public let rdatas: RdataList

    /// An RRset of its own (outside any zone's storage).
    public init(type: RRType, ttl: UInt32, rdatas: [[UInt8]]) {
        var length = 0
        for r in rdatas { length += 2 + r.count }
        var out: [UInt8] = []
        out.reserveCapacity(PackedSets.header + length)
        PackedSets.appendHeader(&out, type: type, count: rdatas.count, ttl: ttl, length: length)
        for r in rdatas { PackedSets.appendRdata(&out, r) }
        self.init(storage: out, at: 0)
    }

    /// The same records with another TTL.
    public init(_ other: RRSet, ttl: UInt32) {
        type = other.type; self.ttl = ttl; rdatas = other.rdatas
    }

    /// The set whose header is at `at` in `storage`.
    @inline(__always) init(storage: [UInt8], at: Int) {
        let (t, c, l, n) = storage.withUnsafeBytes { p in
            (PackedSets.u16(p, at), PackedSets.u16(p, at + 2), PackedSets.u32(p, at + 4), PackedSets.u32(p, at + 8))
        }
        type = RRType(rawValue: t)
        ttl = l
        let first = at + PackedSets.header
        rdatas = RdataList(storage: storage, first: first, end: first + Int(n), count: Int(c))
    }
}

/// The RRsets at one name, in the order their types first appear in the zone file.
public struct RRSetList: Collection, Sendable {
    let storage: [UInt8]
    let start: UInt32
    let end: UInt32

    static let empty = RRSetList(storage: [], start: 0, end: 0)

    public struct Index: Comparable, Sendable {
        let offset: Int
        public static func < (a: Index, b: Index) -> Bool { a.offset < b.offset }
    }

    public var startIndex: Index { Index(offset: Int(start)) }
    public var endIndex: Index { Index(offset: Int(end)) }
    public var isEmpty: Bool { start == end }

    @inline(__always) public func index(after i: Index) -> Index {
        let n = storage.withUnsafeBytes { Int(PackedSets.u32($0, i.offset + 8)) }
        return Index(offset: i.offset + PackedSets.header + n)
    }

    @inline(__always) public subscript(i: Index) -> RRSet { RRSet(storage: storage, at: i.offset) }

    /// The RRset of type `t`, or nil.
    @inline(__always) public func rrset(_ t: RRType) -> RRSet? {
        let found: Int? = storage.withUnsafeBytes { p in
            var at = Int(start)
            let stop = Int(end)
            while at < stop {
                if PackedSets.u16(p, at) == t.rawValue { return at }
                at += PackedSets.header + Int(PackedSets.u32(p, at + 8))
            }
            return nil
        }
        guard let found else { return nil }
        return RRSet(storage: storage, at: found)
    }
}
