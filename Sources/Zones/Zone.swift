import DNSWire

/// The records of one type at one name. TTLs in an RRset are equal (RFC 2181 5.2).
public struct RRSet: Sendable {
    public let type: RRType
    public let ttl: UInt32
    /// Uncompressed wire rdata, one entry per record, in zone-file order.
    public let rdatas: [[UInt8]]
    public init(type: RRType, ttl: UInt32, rdatas: [[UInt8]]) {
        self.type = type; self.ttl = ttl; self.rdatas = rdatas
    }
}

/// One name in a zone: its RRsets, or none for an empty non-terminal (RFC 8020).
public struct ZoneNode: Sendable {
    /// The owner as first written in the zone (case kept for output).
    public let name: DNSName
    public let rrsets: [RRSet]
    /// NS records at a name other than the apex: a zone cut (RFC 1034 4.2.1).
    public let isDelegation: Bool
    /// Index of the GSLB name bound here, or -1 for static data only.
    public let dynamicIndex: Int32

    @inline(__always) public func rrset(_ t: RRType) -> RRSet? {
        for s in rrsets where s.type == t { return s }
        return nil
    }
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
    /// Source file, for logs.
    public let file: String?

    /// Builds the lookup structure. `dynamicNames` are GSLB owners (absolute) bound to a
    /// dynamic index; they become nodes even without static records.
    /// Throws when the zone has no SOA at its apex (the content checks report the rest).
    public init(origin: DNSName, records: [ResourceRecord], dynamicNames: [(DNSName, Int32)] = [], file: String? = nil) throws(ZoneError) {
        self.origin = origin
        self.file = file
        let lowerOrigin = origin.lowercased()
        // Group by owner then type, keeping zone-file order.
        var order: [DNSName] = []
        var byName: [DNSName: (name: DNSName, types: [RRType], sets: [RRType: (ttl: UInt32, rdatas: [[UInt8]])])] = [:]
        func ensure(_ n: DNSName) {
            let key = n.lowercased()
            if byName[key] == nil {
                byName[key] = (n, [], [:])
                order.append(key)
            }
        }
        var count = 0
        // Duplicates are found by hashing and RRsets grow in place: copying the entry out of
        // the dictionary and scanning the set made loading quadratic in the RRset size
        // (20,000 records at one name took minutes).
        var seen = Set<ZoneCheck.RecordKey>()
        seen.reserveCapacity(records.count)
        for r in records where r.name.isSubdomain(of: lowerOrigin) {
            ensure(r.name)
            let key = r.name.lowercased()
            guard seen.insert(ZoneCheck.RecordKey(set: ZoneCheck.SetKey(name: ZoneCheck.NameKey(lowered: key.wire), type: r.type), rdata: r.rdata)).inserted else { continue }
            if byName[key]!.sets[r.type] != nil {
                byName[key]!.sets[r.type]!.rdatas.append(r.rdata)
            } else {
                byName[key]!.types.append(r.type)
                byName[key]!.sets[r.type] = (r.ttl, [r.rdata])
            }
            count += 1
        }
        var dyn: [DNSName: Int32] = [:]
        for (n, i) in dynamicNames where n.isSubdomain(of: lowerOrigin) {
            ensure(n)
            dyn[n.lowercased()] = i
        }
        // Empty non-terminals: every ancestor between an owner and the apex exists.
        ensure(origin)
        for key in order {
            var p = key.parent
            while let q = p, q.isSubdomain(of: lowerOrigin), q != lowerOrigin {
                ensure(q)
                p = q.parent
            }
        }
        var nodes: [ZoneNode] = []
        var table = NameTable(capacity: order.count)
        var apex = 0
        for key in order {
            let e = byName[key]!
            let sets = e.types.map { RRSet(type: $0, ttl: e.sets[$0]!.ttl, rdatas: e.sets[$0]!.rdatas) }
            let isApex = key == lowerOrigin
            if isApex { apex = nodes.count }
            table.insert(lowercaseWire: key.wire, value: Int32(nodes.count))
            nodes.append(ZoneNode(name: e.name, rrsets: sets, isDelegation: !isApex && e.sets[.ns] != nil,
                                  dynamicIndex: dyn[key] ?? -1))
        }
        guard let soa = nodes[apex].rrset(.soa), let soaRdata = soa.rdatas.first else {
            throw ZoneError(SourceLocation(file: file ?? origin.description, line: 1, column: 1), "zone \(origin) has no SOA record at its apex")
        }
        // SOA MINIMUM is the last 32-bit field of the rdata (RFC 1035 3.3.13).
        let n = soaRdata.count
        let minimum = n >= 4 ? UInt32(soaRdata[n - 4]) << 24 | UInt32(soaRdata[n - 3]) << 16 | UInt32(soaRdata[n - 2]) << 8 | UInt32(soaRdata[n - 1]) : 0
        self.soa = soa
        self.negativeTTL = min(soa.ttl, minimum)
        self.nodes = nodes
        self.table = table
        self.apexIndex = apex
        self.recordCount = count
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
}

/// Every zone served, found by the longest origin that is a suffix of the question.
public final class ZoneSet: Sendable {
    public let zones: [Zone]
    let table: NameTable
    /// Positive answers encoded at load time, the query path's fast path; nil while they are
    /// being built (the builder asks a `ZoneSet` without them).
    public let prebuilt: PrebuiltAnswers?

    public convenience init(zones: [Zone]) {
        self.init(zones: zones, prebuilt: PrebuiltAnswers(zones: ZoneSet(zones: zones, prebuilt: nil)))
    }

    init(zones: [Zone], prebuilt: PrebuiltAnswers?) {
        self.zones = zones
        var t = NameTable(capacity: zones.count)
        for (i, z) in zones.enumerated() { t.insert(lowercaseWire: z.origin.lowercased().wire, value: Int32(i)) }
        self.table = t
        self.prebuilt = prebuilt
    }

    /// The most specific zone containing the lowercase wire name in `name`, and the offset in
    /// `name` where the zone's origin starts; nil when no zone contains it.
    @inline(__always) public func findZone(lowercaseWire name: UnsafeRawBufferPointer) -> (zone: Int, originOffset: Int)? {
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
}
