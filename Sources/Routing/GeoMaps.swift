import Config
import DNSWire
import CShim
import Synchronization

// Compiled geo maps: at load, each `geo` and `nearest` node's map is compiled together with
// the sources it reads (CIDR map, MaxMind database, ASN database) into sorted address
// ranges per family whose values are the node's decision: the chosen key for `geo`, the
// order of its choices for `nearest`. Neighbouring networks with the same decision are one
// range, so a query is one binary search with no database decoding, and the shortest
// prefix around the client inside its range is the answer's ECS scope: every address in
// it gets the same decision, and the next shorter prefix would take in a different one
// (RFC 7871 7.2.1: the scope covers the network the answer is valid for).

/// Covering ranges over one address family, built in address order: `starts[0] == 0`, a
/// range runs up to the next start, and neighbours have different values.
struct GeoRanges: Sendable {
    var starts: [UInt128] = []
    var values: [Int32] = []

    mutating func append(_ start: UInt128, _ value: Int32) {
        if let last = values.last, last == value { return }
        starts.append(start); values.append(value)
    }

    var count: Int { starts.count }

    /// The ranges of several covering lists laid over each other: one range per stretch
    /// where no list changes, valued by an index into `combos` (each list's value, in
    /// order, lanes past the lists' number -1). At most four lists.
    static func overlay(_ lists: [GeoRanges]) -> (ranges: GeoRanges, combos: [SIMD4<Int32>]) {
        precondition(lists.count <= 4 && lists.allSatisfy { !$0.starts.isEmpty })
        var out = GeoRanges()
        var combos: [SIMD4<Int32>] = []
        var ids: [SIMD4<Int32>: Int32] = [:]
        var at = [Int](repeating: 0, count: lists.count)
        var start: UInt128 = 0
        while true {
            var key = SIMD4<Int32>(repeating: -1)
            for k in lists.indices { key[k] = lists[k].values[at[k]] }
            let id: Int32
            if let known = ids[key] { id = known } else {
                id = Int32(combos.count); combos.append(key); ids[key] = id
            }
            out.append(start, id)
            var next: UInt128? = nil
            for k in lists.indices where at[k] + 1 < lists[k].count {
                let b = lists[k].starts[at[k] + 1]
                next = min(next ?? b, b)
            }
            guard let n = next else { break }
            for k in lists.indices where at[k] + 1 < lists[k].count && lists[k].starts[at[k] + 1] == n { at[k] += 1 }
            start = n
        }
        return (out, combos)
    }

    /// These ranges with each value `v` replaced by `decide[v]`, equal neighbours merged.
    func project(_ decide: [Int32]) -> GeoRanges {
        var out = GeoRanges()
        for i in starts.indices { out.append(starts[i], decide[Int(values[i])]) }
        return out
    }
}

/// One node's compiled map: its ranges (`table`) and, for `nearest` only, `orders`: for
/// decision `d`, the node's choice indices nearest first at
/// `orders[d * choices ..< (d + 1) * choices]`.
struct GeoDecisionMap: Sendable {
    /// Shared, never copied: the query path reads it through an unmanaged reference
    /// (`Router.keyedTables`), where copying this struct's arrays retained each of them.
    let table: GeoRangeTable
    var orders: [Int32] = []

    init(v4: GeoRanges, v6: GeoRanges) { table = GeoRangeTable(v4: v4, v6: v6) }

    var v4Starts: [UInt32] { table.v4Starts }
    var v6Starts: [UInt128] { table.v6Starts }
    var rangeCount: Int { table.v4Starts.count + table.v6Starts.count }
    var bytes: Int { table.bytes + orders.count * 4 }

    @inline(__always) func lookup(_ a: IPAddress) -> (value: Int32, scope: Int) { table.lookup(a) }
}

/// Sorted range starts per family and each range's decision.
final class GeoRangeTable: Sendable {
    let v4Starts: [UInt32]
    let v4Values: [Int32]
    let v6Starts: [UInt128]
    let v6Values: [Int32]
    /// For each /16 of IPv4 (and one past the last), the range holding its first address,
    /// so an IPv4 search starts among the few ranges of the client's /16 and touches a
    /// couple of cache lines rather than walking down from the middle of the whole list.
    let v4Index: [UInt32]
    /// The same for each /16 of IPv6: a search among the ranges of the client's /16 (a
    /// dozen steps fewer than over the whole list).
    let v6Index: [UInt32]

    init(v4: GeoRanges, v6: GeoRanges) {
        v4Starts = v4.starts.map { UInt32(truncatingIfNeeded: $0) }
        v4Values = v4.values
        v6Starts = v6.starts
        v6Values = v6.values
        v4Index = GeoRangeTable.index(v4Starts, bits: 32)
        v6Index = GeoRangeTable.index(v6Starts, bits: 128)
    }

    /// For each value of the top 16 bits (and one past the last), the range holding the
    /// first address with those bits.
    static func index<K: FixedWidthInteger & UnsignedInteger>(_ starts: [K], bits: Int) -> [UInt32] {
        var index = [UInt32](repeating: 0, count: 65537)
        var i = 0
        for p in 0..<65536 {
            let first = K(p) << K(bits - 16)
            while i + 1 < starts.count && starts[i + 1] <= first { i += 1 }
            index[p] = UInt32(i)
        }
        index[65536] = UInt32(max(starts.count - 1, 0))
        return index
    }

    var bytes: Int { v4Starts.count * 8 + v6Starts.count * 20 + (v4Index.count + v6Index.count) * 4 }

    /// The decision for `a` and the shortest prefix around `a` with that decision.
    /// Allocates nothing: a binary search, then one over the prefix length.
    @inline(__always) func lookup(_ a: IPAddress) -> (value: Int32, scope: Int) {
        if a.isV4 {
            let x = a.v4Value
            let p = Int(x >> 16)
            return GeoRangeTable.find(v4Starts, v4Values, x, bits: 32, from: Int(v4Index[p]), to: Int(v4Index[p + 1]) + 1)
        }
        let p = Int(a.hi >> 48)
        return GeoRangeTable.find(v6Starts, v6Values, UInt128(a.hi) << 64 | UInt128(a.lo), bits: 128,
                                  from: Int(v6Index[p]), to: Int(v6Index[p + 1]) + 1)
    }

    /// The range holding `x`, searched in `starts[from..<to]` (`starts[from] <= x`, and the
    /// range holding `x` is before `to`), and the shortest prefix around `x` inside it.
    @inline(__always) static func find<K: FixedWidthInteger & UnsignedInteger>(_ starts: [K], _ values: [Int32], _ x: K,
                                                                               bits: Int, from: Int, to: Int) -> (value: Int32, scope: Int) {
        starts.withUnsafeBufferPointer { s in
            guard s.count > 0 else { return (-1, 0) }
            var lo = from, hi = min(to, s.count)
            while hi - lo > 1 {
                let mid = (lo + hi) >> 1
                if s[mid] <= x { lo = mid } else { hi = mid }
            }
            let first = s[lo]
            let last = lo + 1 < s.count ? s[lo + 1] &- 1 : K.max
            return (values[lo], shortestPrefix(x, first, last, bits: bits))
        }
    }

    /// The shortest prefix length m such that x's network of length m lies inside
    /// [first, last] (`first <= x <= last`). Each bound holds from some length on: x's
    /// network starts at or after `first` once m passes their common prefix (x is the greater
    /// at the first differing bit), or earlier when `first`'s bits past m are all zero; it
    /// ends at or before `last` likewise with `last`'s bits past m all ones. So the answer is
    /// the larger of the two thresholds, with no search.
    @inline(__always) static func shortestPrefix<K: FixedWidthInteger & UnsignedInteger>(_ x: K, _ first: K, _ last: K, bits: Int) -> Int {
        let fromFirst = min((x ^ first).leadingZeroBitCount + 1, bits - first.trailingZeroBitCount)
        let toLast = min((x ^ last).leadingZeroBitCount + 1, bits - (~last).trailingZeroBitCount)
        return min(max(fromFirst, toLast, 0), bits)
    }

    /// `shortestPrefix` by a search over the lengths, as it was computed before (for tests).
    static func shortestPrefixBySearch<K: FixedWidthInteger & UnsignedInteger>(_ x: K, _ first: K, _ last: K, bits: Int) -> Int {
        // Whether x's network of length m lies inside [first, last] only turns from false to
        // true as m grows: search for the first length where it does.
        var l = 0, h = bits
        while l < h {
            let m = (l + h) >> 1
            let host = m == 0 ? K.max : K.max >> K(m)
            let net = x & ~host
            if net >= first && net | host <= last { h = m } else { l = m + 1 }
        }
        return l
    }

    /// The first and last address of the range holding `a` (for tests).
    func range(of a: IPAddress) -> (first: UInt128, last: UInt128) {
        func span<K: FixedWidthInteger & UnsignedInteger>(_ s: [K], _ x: K) -> (UInt128, UInt128) {
            let i = (s.lastIndex { $0 <= x })!
            return (UInt128(s[i]), i + 1 < s.count ? UInt128(s[i + 1]) - 1 : UInt128(K.max))
        }
        return a.isV4 ? span(v4Starts, a.v4Value) : span(v6Starts, UInt128(a.hi) << 64 | UInt128(a.lo))
    }
}

/// Compiled maps kept from the last configuration built, by what they were compiled from,
/// so a reload that leaves a node's map and its sources unchanged reuses them.
let geoMapCache = Mutex<[String: GeoDecisionMap]>([:])

/// A digest of `bytes` (two independent 64-bit lanes), to recognise an unchanged database.
func digest(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
    var a: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(bytes.count)
    var b: UInt64 = 0x9E37_79B9_7F4A_7C15
    var i = 0
    while i + 8 <= bytes.count {
        let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        a = (a ^ w) &* 0x100_0000_01B3
        b = ((b &+ w) &* 0xFF51_AFD7_ED55_8CCD).rotated(29)
        i += 8
    }
    while i < bytes.count {
        a = (a ^ UInt64(bytes[i])) &* 0x100_0000_01B3
        b = (b &+ UInt64(bytes[i])) &* 0xC4CE_B9FE_1A85_EC53
        i += 1
    }
    return (mix64(a), mix64(b))
}

extension UInt64 {
    @inline(__always) fileprivate func rotated(_ n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}

/// How a configuration's geo maps were obtained (for the load summary).
public struct GeoMapReport: Sendable, CustomStringConvertible {
    public var compiled = 0
    public var reused = 0
    public var ranges = 0
    public var bytes = 0
    public var milliseconds = 0.0
    public var description: String {
        let mib = Double(bytes) / 1_048_576
        return "geo maps: \(compiled) compiled, \(reused) reused, \(ranges) ranges, "
            + "\(mib < 10 ? String(Int(mib * 10) / 10) + "." + String(Int(mib * 10) % 10) : String(Int(mib))) MiB, \(Int(milliseconds.rounded())) ms"
    }
}

extension Router {
    /// Compiles (or takes from `geoMapCache`) the map of every geo and nearest node.
    /// `geoNodes` are indices into `model.nodes`.
    static func compileGeoMaps(model: ConfigModel, database: GeoDatabase?, asnDatabase: GeoDatabase?, cidr: PrefixTrie,
                               locate: (_ cidrEntry: Int32, _ record: GeoRecord, _ asn: UInt32) -> ClientLocation,
                               geoDecision: (_ node: Int, _ canonical: [Int32], _ location: ClientLocation) -> Int32)
        -> (maps: [Int: GeoDecisionMap], report: GeoMapReport) {
        let nodes = model.nodes.indices.filter {
            switch model.nodes[$0].kind {
            case .geo, .nearest: return true
            default: return false
            }
        }
        var report = GeoMapReport()
        guard !nodes.isEmpty else { return ([:], report) }
        let clock = ContinuousClock()
        let began = clock.now
        func hex(_ d: (UInt64, UInt64)?) -> String { d.map { String($0.0, radix: 16) + String($0.1, radix: 16) } ?? "-" }
        var sources = "db:\(hex(database?.contentDigest)) asn:\(hex(asnDatabase?.contentDigest)) cidr:"
        for e in model.geo.cidr { sources += "\(e.prefix)=\(e.target);" }
        for d in model.datacenters { sources += "dc:\(d.name),\(d.latitude),\(d.longitude),\(d.country ?? ""),\(d.continent ?? "");" }
        let previous = geoMapCache.withLock { $0 }
        var maps: [Int: GeoDecisionMap] = [:]
        var keep: [String: GeoDecisionMap] = [:]
        // The sources laid over each other, read once for all nodes that need compiling.
        var located: Located?
        for n in nodes {
            let spec: String
            var canonical: [Int32] = []
            switch model.nodes[n].kind {
            case .geo(let keys, let children, let d):
                // Keys whose choices answer alike are one decision (the first such key), and
                // a key whose choice is the default's is no match: neighbours that differ
                // only there merge into one scope.
                let defaultKey = d.map { leafKey(model, $0) }
                let first = firstOfSameLeaf(model, children)
                canonical = children.indices.map { i in
                    leafKey(model, children[i]) == defaultKey ? -1 : first[i]
                }
                spec = "geo \(keys) \(canonical)"
            case .nearest(let c, let dcs, let bias, _): spec = "nearest \(c.count) \(dcs) \(bias)"
            default: continue
            }
            let key = spec + " " + sources
            // Nodes with the same key in this load share one map: 50,000 geo names over one
            // CIDR label each compiled their own before (13 GB resident at 100,000 names).
            if let m = keep[key] {
                maps[n] = m
                continue
            }
            if let m = previous[key] {
                maps[n] = m; keep[key] = m; report.reused += 1
                continue
            }
            if located == nil { located = locations(model: model, database: database, asnDatabase: asnDatabase, cidr: cidr, locate: locate) }
            let loc = located!
            let locs = loc.locations
            var decisions: [Int32]
            var orders: [Int32] = []
            if case .nearest(let children, _, _, _) = model.nodes[n].kind {
                // Choices ordered for each location; equal orders are one decision.
                var ids: [[Int32]: Int32] = [:]
                decisions = locs.map { loc in
                    // Without a location, listed order.
                    let order = loc.record.hasCoordinates ? nearestOrder(model: model, node: n, loc)
                        : (0..<Int32(children.count)).map { $0 }
                    if let id = ids[order] { return id }
                    let id = Int32(ids.count); ids[order] = id
                    orders += order
                    return id
                }
            } else {
                decisions = locs.map { geoDecision(n, canonical, $0) }
            }
            let v4 = loc.v4.project(decisions)
            var m = GeoDecisionMap(v4: v4, v6: loc.expandV6(decisions, v4: v4))
            m.orders = orders
            maps[n] = m; keep[key] = m; report.compiled += 1
        }
        geoMapCache.withLock { $0 = keep }
        // The intermediate lists (every database network) are gone: give their pages back.
        if report.compiled > 0 { _ = cshim_malloc_trim() }
        for m in keep.values { report.ranges += m.rangeCount; report.bytes += m.bytes }
        let took = clock.now - began
        report.milliseconds = Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15
        return (maps, report)
    }

    /// Every distinct location the sources give, and the ranges per family that index them.
    /// `alias[l] >= 0`: location `l` is the database's alias `alias[l]` of the IPv4 space.
    struct Located {
        var v4: GeoRanges
        var v6: GeoRanges
        var locations: [ClientLocation]
        var alias: [Int]
        var aliases: [(prefix: UInt128, shift: Int)]

        /// The IPv6 ranges decided by `decide`, with each alias of the IPv4 space filled in
        /// from `v4`, the IPv4 ranges already decided and merged.
        func expandV6(_ decide: [Int32], v4: GeoRanges) -> GeoRanges {
            var out = GeoRanges()
            for i in v6.starts.indices {
                let l = Int(v6.values[i])
                guard alias[l] >= 0 else { out.append(v6.starts[i], decide[l]); continue }
                let (prefix, shift) = aliases[alias[l]]
                let start = v6.starts[i]
                let end = i + 1 < v6.count ? v6.starts[i + 1] - 1 : UInt128.max
                let first = (start >> shift) & 0xFFFF_FFFF, last = (end >> shift) & 0xFFFF_FFFF
                var lo = 0, hi = v4.count
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2
                    if v4.starts[mid] <= first { lo = mid } else { hi = mid }
                }
                out.append(start, v4.values[lo])
                var j = lo + 1
                while j < v4.count && v4.starts[j] <= last {
                    out.append(prefix | (v4.starts[j] << shift), v4.values[j])
                    j += 1
                }
            }
            return out
        }
    }

    static func locations(model: ConfigModel, database: GeoDatabase?, asnDatabase: GeoDatabase?, cidr: PrefixTrie,
                          locate: (Int32, GeoRecord, UInt32) -> ClientLocation) -> Located {
        let city = database?.networks()
        let asn = asnDatabase?.networks()
        var lists4 = [cidrRanges(model, cidr, v4: true)]
        var lists6 = [cidrRanges(model, cidr, v4: false)]
        if let city { lists4.append(city.v4); lists6.append(city.v6) }
        if let asn { lists4.append(asn.v4); lists6.append(asn.v6) }
        // One combo table for both families: overlay them as one list of lists each.
        let o4 = GeoRanges.overlay(lists4)
        let o6 = GeoRanges.overlay(lists6)
        var locs: [ClientLocation] = []
        var alias: [Int] = []
        var aliases: [(prefix: UInt128, shift: Int)] = []
        var aliasIDs: [Int: Int] = [:]
        var ids: [SIMD4<Int32>: Int32] = [:]
        func remap(_ o: (ranges: GeoRanges, combos: [SIMD4<Int32>])) -> GeoRanges {
            let table: [Int32] = o.combos.map { c in
                if let id = ids[c] { return id }
                let cityIndex = city != nil ? c[1] : -1
                let asnIndex = asn != nil ? c[city != nil ? 2 : 1] : -1
                let record = cityIndex >= 0 ? city!.records[Int(cityIndex)] : GeoRecord()
                let asnValue = asnIndex >= 0 ? asn!.records[Int(asnIndex)].asn : 0
                let id = Int32(locs.count)
                locs.append(locate(c[0], record, asnValue))
                // Outside the CIDR map, an alias of the IPv4 space answers as IPv4 does.
                var a = -1
                if c[0] < 0, let k = GeoNetworks.aliasIndex(cityIndex), let n = city {
                    a = aliasIDs[k] ?? { aliases.append(n.aliases[k]); aliasIDs[k] = aliases.count - 1; return aliases.count - 1 }()
                } else if c[0] < 0, let k = GeoNetworks.aliasIndex(asnIndex), let n = asn {
                    a = aliasIDs[1000 + k] ?? { aliases.append(n.aliases[k]); aliasIDs[1000 + k] = aliases.count - 1; return aliases.count - 1 }()
                }
                alias.append(a)
                ids[c] = id
                return id
            }
            return o.ranges.project(table)
        }
        let v4 = remap(o4), v6 = remap(o6)
        return Located(v4: v4, v6: v6, locations: locs, alias: alias, aliases: aliases)
    }

    /// The CIDR map as covering ranges valued by the matching (canonical) entry, -1 outside it.
    static func cidrRanges(_ model: ConfigModel, _ cidr: PrefixTrie, v4: Bool) -> GeoRanges {
        func key(_ a: IPAddress) -> UInt128 { v4 ? UInt128(a.v4Value) : UInt128(a.hi) << 64 | UInt128(a.lo) }
        func address(_ k: UInt128) -> IPAddress {
            v4 ? IPAddress(v4: UInt32(truncatingIfNeeded: k))
                : IPAddress(family: .v6, hi: UInt64(truncatingIfNeeded: k >> 64), lo: UInt64(truncatingIfNeeded: k))
        }
        let top: UInt128 = v4 ? UInt128(UInt32.max) : .max
        var bounds: Set<UInt128> = [0]
        for e in model.geo.cidr where e.prefix.address.isV4 == v4 {
            let first = key(e.prefix.address.masked(to: e.prefix.length))
            let host = top >> UInt128(e.prefix.length)
            bounds.insert(first)
            if first | host < top { bounds.insert((first | host) + 1) }
        }
        var out = GeoRanges()
        for b in bounds.sorted() { out.append(b, cidr.lookup(address(b)).value) }
        return out
    }

    /// A nearest node's choice indices for a located client: by distance less bias, ties
    /// in listed order.
    static func nearestOrder(model: ConfigModel, node n: Int, _ loc: ClientLocation) -> [Int32] {
        guard case .nearest(let children, let dcs, let bias, _) = model.nodes[n].kind else { return [] }
        let d = children.indices.map { i in
            greatCircleKm(loc.record.latitude, loc.record.longitude, model.datacenters[dcs[i]].latitude,
                          model.datacenters[dcs[i]].longitude) - bias[i]
        }
        return children.indices.sorted { d[$0] < d[$1] || (d[$0] == d[$1] && $0 < $1) }.map { Int32($0) }
    }
}
