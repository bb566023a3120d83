import Diagnostics
import DNSWire

/// The types a GSLB name answers from its policy. The master file answers every other
/// type at the same owner, so an address-only GSLB name can be the zone apex or sit beside
/// MX, TXT or CAA records; a name that can answer CNAME owns every type (RFC 1034 3.6.2).
///
///     let types: GSLBTypes = [.a]            // `types: [A]`: AAAA comes from the zone file
///     types.owns(.a)                         // true; owns(.mx) is false
public struct GSLBTypes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// A name's types from its configuration: every type if it can answer CNAME, else the
    /// address types its `types:` lists.
    public init(a: Bool, aaaa: Bool, cname: Bool) {
        self = cname ? .all : GSLBTypes(rawValue: (a ? 1 : 0) | (aaaa ? 2 : 0))
    }
    public static let a = GSLBTypes(rawValue: 1)
    public static let aaaa = GSLBTypes(rawValue: 2)
    /// Every type: a name whose endpoints (or fallback) answer CNAME.
    public static let all = GSLBTypes(rawValue: 4)

    /// Whether a query of type `t` goes to the policy (ANY is decided by the engine).
    @inline(__always) public func owns(_ t: RRType) -> Bool {
        contains(.all) || (t == .a && contains(.a)) || (t == .aaaa && contains(.aaaa))
    }
}

/// A GSLB name bound to a zone: its owner, its index in the configuration, and the types
/// its policy answers.
public struct GSLBBinding: Sendable, Equatable {
    public var owner: DNSName
    public var index: Int32
    public var types: GSLBTypes
    public init(owner: DNSName, index: Int32, types: GSLBTypes = .all) {
        self.owner = owner; self.index = index; self.types = types
    }
}

/// One name in a zone: its RRsets, or none for an empty non-terminal (RFC 8020).
public struct ZoneNode: Sendable {
    /// The owner as first written in the zone (case kept for output).
    public let name: DNSName
    /// A view into the zone's one packed storage (`RRSetStorage.swift`).
    public let rrsets: RRSetList
    /// NS records at a name other than the apex: a zone cut (RFC 1034 4.2.1).
    public let isDelegation: Bool
    /// Index of the GSLB name bound here, or -1 for static data only.
    public let dynamicIndex: Int32
    /// The types the GSLB name answers; `rrsets` answer the others.
    public let dynamicTypes: GSLBTypes
    /// The node `*.<this name>`, or -1: the source of synthesis when this node is a closest
    /// encloser (RFC 4592 3.3.1), found without building and hashing the name. Last, so it
    /// takes the struct's tail padding (the stride stays 40 bytes).
    public internal(set) var wildcard: Int32 = -1

    @inline(__always) public func rrset(_ t: RRType) -> RRSet? { rrsets.rrset(t) }
}

/// An authoritative zone built for lookup: every owner, and every empty non-terminal
/// between the apex and an owner, is a node found by a hash probe on its lowercase wire
/// name. Built once per (re)load and only read afterwards, so it is shared by all
/// workers without locks.
///
///     let zone = try Zone(origin: try DNSName("example.com."), records: records)
///     zone.node(named: try DNSName("www.example.com."))?.rrset(.a)
public final class Zone: Sendable {
    public let origin: DNSName
    public let nodes: [ZoneNode]
    let table: NameTable
    public let apexIndex: Int
    /// The SOA's own TTL and the negative-caching TTL min(SOA TTL, MINIMUM) (RFC 2308 5).
    public let soa: RRSet
    public let negativeTTL: UInt32
    public let recordCount: Int
    /// The authority record of a negative answer (the SOA with the negative TTL, RFC 2308 3)
    /// as the engine writes it right after a question whose name ends in the origin,
    /// encoded once here against a question that is the origin itself; empty when the SOA
    /// RRset is not one readable record. `negativePointers` are the offsets in it of the
    /// compression pointers the engine moves to the actual question and record
    /// (`QueryEngine.negative`): pointers below `negativeQuestionEnd` point into the question.
    let negativeRecord: [UInt8]
    let negativePointers: [Int]
    let negativeQuestionEnd: Int
    /// Source file, for logs.
    public let file: String?

    /// Builds the lookup structure. `dynamicNames` are GSLB owners (absolute) bound to a
    /// dynamic index and the types they answer; they become nodes even without static
    /// records. Whether static records may sit beside them is the configuration's check
    /// (`ConfigModel.validate(againstStatic:)`), not this one's. Records outside
    /// `origin` are ignored; duplicates are dropped and each RRset gets the TTL of its first
    /// record (what `ZoneCheck.normalized` does).
    /// Throws when the zone has no SOA at its apex (the content checks report the rest).
    public convenience init(origin: DNSName, records: [ResourceRecord], dynamicNames: [GSLBBinding] = [], file: String? = nil) throws(ZoneError) {
        var index = ZoneIndex(records: records, origin: origin)
        try self.init(index: &index, origin: origin, dynamicNames: dynamicNames, file: file)
    }

    /// Runs the content checks (`ZoneCheck.check`) and builds the zone from one grouping of
    /// the records, which costs about half of checking and building apart.
    ///
    ///     let zone = try Zone.checked(origin: origin, records: records, file: path)
    public static func checked(origin: DNSName, records: [ResourceRecord], dynamicNames: [GSLBBinding] = [],
                               file: String? = nil) throws(ZoneErrors) -> Zone {
        try checked(origin: origin, batch: RecordBatch(records), dynamicNames: dynamicNames, file: file)
    }

    /// `checked(origin:records:dynamicNames:file:)` on the parser's batch.
    static func checked(origin: DNSName, batch: RecordBatch, dynamicNames: [GSLBBinding] = [],
                        file: String? = nil) throws(ZoneErrors) -> Zone {
        var index = ZoneIndex(records: batch, origin: origin)
        let problems = index.check(origin: origin)
        guard problems.isEmpty else { throw ZoneErrors(problems) }
        do {
            return try Zone(index: &index, origin: origin, dynamicNames: dynamicNames, file: file)
        } catch {
            throw ZoneErrors([error])
        }
    }

    /// Builds from grouped records. Owner ids are node ids, in the order owners first
    /// appear; then come the dynamic names, the apex and the empty non-terminals, in that
    /// order. Takes `index.table` over as the node table.
    init(index: inout ZoneIndex, origin: DNSName, dynamicNames: [GSLBBinding], file: String?) throws(ZoneError) {
        self.origin = origin
        self.file = file
        let originKey = index.originKey
        var table = index.table
        index.table = NameTable(capacity: 0)
        let records = index.records
        let owners = index.ownerCount
        var names: [DNSName] = []
        names.reserveCapacity(owners + dynamicNames.count + 1)
        for o in 0..<owners { names.append(records.name(Int(index.ownerFirstRecord[o]))) }
        @inline(__always) func ensure(_ key: UnsafeRawBufferPointer, _ name: @autoclosure () -> DNSName) -> Int {
            let (e, inserted) = table.findOrInsert(key, hash: NameTable.hash(key), value: Int32(table.count))
            if inserted { names.append(name()) }
            return Int(e)
        }
        var dyn: [Int: GSLBBinding] = [:]
        for b in dynamicNames where b.owner.isSubdomain(of: origin) {
            let lower = b.owner.wire.map(asciiLower)
            dyn[lower.withUnsafeBytes { ensure($0, b.owner) }] = b
        }
        let apex = originKey.withUnsafeBytes { ensure($0, origin) }
        // Empty non-terminals: every ancestor between a node and the apex exists.
        var key: [UInt8] = []
        for k in 0..<names.count {
            key.removeAll(keepingCapacity: true)
            key.append(contentsOf: table.key(k))
            key.withUnsafeBytes { p in
                var off = Int(p[0]) + 1
                while p.count - off > originKey.count {
                    let q = UnsafeRawBufferPointer(rebasing: p[off...])
                    _ = ensure(q, DNSName(uncheckedWire: Array(q)))
                    off += Int(p[off]) + 1
                }
            }
        }
        // Every RRset packed into one array, each owner's sets contiguous and in the order
        // their types first appear, each set's rdatas in file order, duplicates left out.
        // First the byte length of each set's rdatas, then each set's place in the array.
        // 32-bit sizes: a set within the count checked below holds less than 4 GiB.
        let setCount = index.setType.count
        var setBytes = [UInt32](repeating: 0, count: setCount)
        for ri in 0..<records.count {
            let s = Int(index.setOf[ri])
            if s >= 0 && index.ownerOf[ri] >= 0 { setBytes[s] &+= 2 &+ UInt32(truncatingIfNeeded: records.rdataLength(ri)) }
        }
        // Each set's place in the array; then, while filling, where its next record goes.
        var cursor = [UInt32](repeating: 0, count: setCount)
        var ownerEnd = [UInt32](repeating: 0, count: owners)
        var total = 0
        for o in 0..<owners {
            var s = Int(index.ownerFirstSet[o])
            while s >= 0 {
                guard index.setCount[s] <= Int32(UInt16.max) else {
                    throw ZoneError(SourceLocation(file: file ?? origin.description, line: 1, column: 1),
                                    "zone \(origin) has more than \(UInt16.max) records of one type at one name")
                }
                cursor[s] = UInt32(truncatingIfNeeded: total)
                total += PackedSets.header + Int(setBytes[s])
                s = Int(index.setNext[s])
            }
            guard total <= Int(UInt32.max) else {
                throw ZoneError(SourceLocation(file: file ?? origin.description, line: 1, column: 1),
                                "zone \(origin) has more than 4 GiB of record data")
            }
            ownerEnd[o] = UInt32(total)
        }
        var storage = [UInt8](repeating: 0, count: total)
        storage.withUnsafeMutableBytes { out in
            for s in 0..<setCount {
                let at = Int(cursor[s])
                out.storeBytes(of: index.setType[s].rawValue, toByteOffset: at, as: UInt16.self)
                out.storeBytes(of: UInt16(truncatingIfNeeded: index.setCount[s]), toByteOffset: at + 2, as: UInt16.self)
                out.storeBytes(of: index.setTTL[s], toByteOffset: at + 4, as: UInt32.self)
                out.storeBytes(of: setBytes[s], toByteOffset: at + 8, as: UInt32.self)
                cursor[s] = UInt32(at + PackedSets.header)
            }
            setBytes = []
            for ri in 0..<records.count {
                let s = Int(index.setOf[ri])
                guard s >= 0 && index.ownerOf[ri] >= 0 else { continue }
                records.withRdata(ri) { r in
                    let at = Int(cursor[s])
                    out.storeBytes(of: UInt16(r.count), toByteOffset: at, as: UInt16.self)
                    if r.count > 0 {
                        UnsafeMutableRawBufferPointer(rebasing: out[(at + 2)...]).copyMemory(from: r)
                    }
                    cursor[s] = UInt32(at + 2 + r.count)
                }
            }
        }
        // The grouping is spent: free it before the nodes are built (lower peak memory).
        cursor = []
        index.ownerOf = []; index.setOf = []
        index.setTTL = []; index.setCount = []; index.setNext = []; index.ownerFirstSet = []
        var nodes: [ZoneNode] = []
        nodes.reserveCapacity(names.count)
        for (id, name) in names.enumerated() {
            var sets = RRSetList.empty
            if id < owners {
                sets = RRSetList(storage: storage, start: id == 0 ? 0 : ownerEnd[id - 1], end: ownerEnd[id])
            }
            let isDelegation = id != apex && id < owners && index.ownerFlags[id] & ZoneIndex.hasNS != 0
            // Most zones have no GSLB names: no dictionary lookup (a hash) per node then.
            let binding = dyn.isEmpty ? nil : dyn[id]
            nodes.append(ZoneNode(name: name, rrsets: sets, isDelegation: isDelegation, dynamicIndex: binding?.index ?? -1,
                                  dynamicTypes: binding?.types ?? []))
        }
        // Each wildcard's parent (an owner or an empty non-terminal, so a node) points to it.
        table.withKeys { starts, bytes in
            for k in 0..<nodes.count {
                let a = Int(starts[k]), b = Int(starts[k + 1])
                guard b - a > 2, bytes[a] == 1, bytes[a + 1] == UInt8(ascii: "*") else { continue }
                let parent = Int(table.find(UnsafeRawBufferPointer(rebasing: bytes[(a + 2)..<b])))
                if parent >= 0 { nodes[parent].wildcard = Int32(k) }
            }
        }
        guard let soa = nodes[apex].rrset(.soa), let soaRdata = soa.rdatas.first?.bytes else {
            throw ZoneError(SourceLocation(file: file ?? origin.description, line: 1, column: 1), "zone \(origin) has no SOA record at its apex")
        }
        // SOA MINIMUM is the last 32-bit field of the rdata (RFC 1035 3.3.13).
        let n = soaRdata.count
        let minimum = n >= 4 ? UInt32(soaRdata[n - 4]) << 24 | UInt32(soaRdata[n - 3]) << 16 | UInt32(soaRdata[n - 2]) << 8 | UInt32(soaRdata[n - 1]) : 0
        self.soa = soa
        self.negativeTTL = min(soa.ttl, minimum)
        (negativeRecord, negativePointers) = Zone.negativeRecord(origin: origin, soa: soa, ttl: min(soa.ttl, minimum))
        negativeQuestionEnd = 12 + origin.wire.count
        self.nodes = nodes
        self.table = table
        self.apexIndex = apex
        self.recordCount = index.uniqueCount
    }

    /// `negativeRecord` and `negativePointers` (see there): the SOA written with the engine's
    /// own encoder after a question at offset 12 that is `origin`, owner a pointer to it.
    private static func negativeRecord(origin: DNSName, soa: RRSet, ttl: UInt32) -> ([UInt8], [Int]) {
        guard soa.rdatas.count == 1, let rdata = soa.rdatas.first else { return ([], []) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)
        defer { buffer.deallocate() }
        let writer = MessageWriter()
        writer.reset(buffer: buffer, limit: buffer.count)
        do {
            _ = try writer.claim(12)
            try writer.writeBytes(origin.lowercased().wire)
            try writer.writeU32(0x0006_0001) // QTYPE SOA, QCLASS IN: any type would do
            writer.registerName(at: 12)
            let start = writer.position
            try writer.writeU16(0xC00C)
            try rdata.withBytes { (r) throws(DNSWireError) in try writer.writeRecordBody(type: .soa, ttl: ttl, rdata: r) }
            let record = Array(buffer[start..<writer.position])
            // The owner, then a pointer (if any) ending each of MNAME and RNAME.
            var pointers = [0]
            var at = 12
            for _ in 0..<2 {
                while true {
                    let l = record[at]
                    if l == 0 { at += 1; break }
                    if l & 0xC0 == 0xC0 { pointers.append(at); at += 2; break }
                    at += Int(l) + 1
                }
            }
            return (record, pointers)
        } catch {
            return ([], [])
        }
    }

    /// The node for lowercase wire bytes, or -1.
    @inline(__always) public func nodeIndex(lowercaseWire p: UnsafeRawBufferPointer) -> Int {
        Int(table.find(p))
    }

    public func node(named n: DNSName) -> ZoneNode? {
        let i = Int(table.find(n.lowercased().wire))
        return i >= 0 ? nodes[i] : nil
    }

    public var nameCount: Int { nodes.count }

    /// The SOA serial (RFC 1035 3.3.13).
    public var serial: UInt32 { SOAData.serial(soa.rdatas.firstBytes) }
}

/// The serial field of SOA rdata: the 32 bits after the two names (RFC 1035 3.3.13).
public enum SOAData {
    static func serialOffset(_ rdata: [UInt8]) -> Int? {
        rdata.withUnsafeBytes { p in
            guard let m = try? Wire.readName(p, at: 0), let n = try? Wire.readName(p, at: m), n + 4 <= p.count else { return nil }
            return n
        }
    }

    public static func serial(_ rdata: [UInt8]) -> UInt32 {
        guard let o = serialOffset(rdata) else { return 0 }
        return rdata[o..<(o + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }

    public static func withSerial(_ rdata: [UInt8], _ serial: UInt32) -> [UInt8] {
        guard let o = serialOffset(rdata) else { return rdata }
        var r = rdata
        for i in 0..<4 { r[o + i] = UInt8(truncatingIfNeeded: serial >> UInt32(24 - 8 * i)) }
        return r
    }

    /// RFC 1982 serial number arithmetic: a > b.
    public static func greater(_ a: UInt32, _ b: UInt32) -> Bool { a != b && (a &- b) < 0x8000_0000 }
}

/// Every zone served, found by the longest origin that is a suffix of the question.
public final class ZoneSet: Sendable {
    public let zones: [Zone]
    let table: NameTable
    /// Every name a query reaches exactly, to its zone and node (`findNode`).
    let index: NodeIndex
    /// Each zone's origin length in wire bytes.
    private let originLengths: [Int]
    /// Positive answers encoded at load time, the query path's fast path; nil while they are
    /// being built (the builder asks a `ZoneSet` without them).
    public let prebuilt: PrebuiltAnswers?
    /// Unretained views of `zones` and `prebuilt` (which this set owns) for the query path:
    /// reading an element of `zones`, or `prebuilt`, retains and releases it on every query.
    public let zoneRefs: [Unmanaged<Zone>]
    public let prebuiltRef: Unmanaged<PrebuiltAnswers>?

    public convenience init(zones: [Zone]) {
        let bare = ZoneSet(bare: zones)
        self.init(sharing: bare, prebuilt: PrebuiltAnswers(zones: bare))
    }

    /// The set without prebuilt answers: what their builder asks (and tests compare with).
    init(bare zones: [Zone]) {
        self.zones = zones
        var t = NameTable(capacity: zones.count)
        for (i, z) in zones.enumerated() { t.insert(lowercaseWire: z.origin.lowercased().wire, value: Int32(i)) }
        self.table = t
        originLengths = zones.map { $0.origin.wire.count }
        index = NodeIndex(zones: zones, originTable: t) { ZoneSet.findZone(t, $0)?.zone }
        prebuilt = nil
        zoneRefs = zones.map { Unmanaged.passUnretained($0) }
        prebuiltRef = nil
    }

    /// `bare` with `prebuilt`: its tables are shared, not built again.
    private init(sharing bare: ZoneSet, prebuilt: PrebuiltAnswers) {
        zones = bare.zones
        table = bare.table
        index = bare.index
        originLengths = bare.originLengths
        self.prebuilt = prebuilt
        zoneRefs = bare.zoneRefs
        prebuiltRef = Unmanaged.passUnretained(prebuilt)
    }

    /// The most specific zone containing the lowercase wire name in `name`, and the offset in
    /// `name` where the zone's origin starts; nil when no zone contains it.
    @inline(__always) public func findZone(lowercaseWire name: UnsafeRawBufferPointer) -> (zone: Int, originOffset: Int)? {
        ZoneSet.findZone(table, name)
    }

    @inline(__always)
    static func findZone(_ table: NameTable, _ name: UnsafeRawBufferPointer) -> (zone: Int, originOffset: Int)? {
        var off = 0
        while off < name.count {
            let z = table.find(UnsafeRawBufferPointer(rebasing: name[off...]))
            if z >= 0 { return (Int(z), off) }
            let len = Int(name[off])
            if len == 0 { break }
            off += len + 1
        }
        return nil
    }

    /// The zone `findZone` picks for the lowercase wire name in `name`, the offset of its
    /// origin there, and the name's node in it, with one hash of the name; nil when the name
    /// is not a node of that zone (or no zone contains it: `findZone` tells them apart).
    @inline(__always)
    public func findNode(lowercaseWire name: UnsafeRawBufferPointer) -> (zone: Int, node: Int, originOffset: Int)? {
        let (z, n) = index.find(name, zones: zoneRefs)
        guard z >= 0 else { return nil }
        return (z, n, name.count &- originLengths[z])
    }
}

extension Zone {
    /// The same zone served with SOA serial `serial`: built again from its records and GSLB
    /// bindings, for a serial that moves without a reload (transferred signatures refreshed,
    /// a health-following transfer view changed). Not on the query path.
    ///
    ///     let next = try zone.withSerial(zone.serial &+ 1)
    public func withSerial(_ serial: UInt32) throws(ZoneError) -> Zone {
        var records = RecordBatch()
        records.reserve(records: recordCount, names: nodes.count)
        var dynamic: [GSLBBinding] = []
        for (i, n) in nodes.enumerated() {
            if !n.rrsets.isEmpty {
                let name = n.name.wire.withUnsafeBytes { records.addName($0) }
                for s in n.rrsets {
                    for r in s.rdatas {
                        if i == apexIndex && s.type == .soa {
                            SOAData.withSerial(r.bytes, serial).withUnsafeBytes {
                                records.append(name: name, type: s.type, ttl: s.ttl, rdata: $0, line: 0, column: 0, file: nil)
                            }
                        } else {
                            r.storage.withUnsafeBytes { p in
                                records.append(name: name, type: s.type, ttl: s.ttl, rdata: UnsafeRawBufferPointer(rebasing: p[r.start..<(r.start + r.count)]),
                                               line: 0, column: 0, file: nil)
                            }
                        }
                    }
                }
            }
            if n.dynamicIndex >= 0 { dynamic.append(GSLBBinding(owner: n.name, index: n.dynamicIndex, types: n.dynamicTypes)) }
        }
        var index = ZoneIndex(records: records, origin: origin)
        return try Zone(index: &index, origin: origin, dynamicNames: dynamic, file: file)
    }
}
