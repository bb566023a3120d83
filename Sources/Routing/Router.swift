import Config
import DNSWire
import Foundation
import Diagnostics

/// The answer a policy tree chose. Allocate one per worker with `Router.makeResult()`
/// (its address storage is sized from the config) and pass it to every `resolve` call:
/// resolving then appends only within that capacity and allocates nothing.
///
/// Invariants after `resolve`: at most one of `addresses` (non-empty), `cname` (non-nil)
/// and `nodata` holds; `scopePrefix` is 0 when the answer did not depend on the client.
public struct RoutingResult: Sendable {
    public var addresses: [IPAddress]
    /// Set when a hostname endpoint answers (RFC 7871 7.2.1: answer the CNAME alone when scoped).
    public var cname: DNSName?
    public var ttl: UInt32 = 0
    /// RFC 7871 7.2 SCOPE PREFIX-LENGTH for the response's ECS option.
    public var scopePrefix: Int = 0
    /// No records of the asked type: answer NOERROR with an empty answer section.
    public var nodata = false
    /// True when a random choice (weighted, multivalue) shaped the answer, so it must not
    /// be reused from a per-network decision cache.
    public var usedRandom = false
    /// The endpoint whose address or CNAME comes first in the answer (its index in the
    /// model), or -1 (NODATA, fallback addresses): what metrics count the decision under.
    public var firstEndpoint: Int32 = -1
    /// The policy node that answered (the pool or multivalue node of `firstEndpoint`, or the
    /// node whose `when_all_down` gave NODATA or fallback records), or -1: what the
    /// per-node decision metrics count the answer under.
    public var answeringNode: Int32 = -1

    public init(capacity: Int) {
        addresses = []
        addresses.reserveCapacity(max(capacity, 1))
    }

    public mutating func reset() {
        addresses.removeAll(keepingCapacity: true)
        cname = nil; ttl = 0; scopePrefix = 0; nodata = false; usedRandom = false; firstEndpoint = -1; answeringNode = -1
    }

    /// Records `node` as the one that answered, unless an earlier node already did.
    @inline(__always) mutating func noteAnswering(_ node: Int) {
        if answeringNode < 0 { answeringNode = Int32(truncatingIfNeeded: node) }
    }
}

/// A small fast generator for per-worker use (SplitMix64); not for cryptography.
///
///     var rng = RoutingRandom(seed: 42)
///     router.resolve(nameIndex: 0, qtype: .a, client: c, health: h, random: &rng, into: &result)
public struct RoutingRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public init() { state = UInt64.random(in: 1...UInt64.max) }
    public mutating func next() -> UInt64 {
        state &+= splitmix64Gamma
        return mix64(state)
    }
}

/// Stable across processes (unlike `Hasher`), so `hashed` stays sticky over restarts.
func stableHash(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return mix64(h)
}

/// Where the client is, as far as the configured sources know.
public struct ClientLocation: Sendable {
    public enum Source: Sendable { case none, cidrMap, database }
    public var source: Source = .none
    /// The CIDR-map entry that matched, or -1.
    public var cidrEntry: Int = -1
    /// Interned CIDR-map label (labels and datacenter names), or -1.
    public var label: Int32 = -1
    public var record = GeoRecord()
    /// Network prefix length the location holds for: the CIDR-map scope or the database netmask.
    public var prefix = 0
    /// Netmask from the ASN database (0 without one).
    public var asnPrefix = 0
    public init() {}
}

enum CompiledGeoKey: Sendable {
    case label(Int32), asn(UInt32), subdivision(country: UInt32, code: UInt32), country(UInt32), continent(UInt32)
    /// Lower matches first: labels, then ASN, then subdivision, country, continent.
    var rank: Int {
        switch self {
        case .label: return 0
        case .asn: return 1
        case .subdivision: return 2
        case .country: return 3
        case .continent: return 4
        }
    }
}

struct CompiledNode: Sendable {
    var geoKeys: [CompiledGeoKey] = []
    var geoUsesASN = false
    var trie = PrefixTrie()
    /// `subnet`: trie values index this (the rules' children, then the default).
    var targets: [Int] = []
    var childIDs: [UInt64] = []
    /// `geo` and `nearest`: the compiled map (see GeoMaps.swift).
    var map: GeoDecisionMap? = nil
}

/// Evaluates GSLB policy trees. Build one per configuration (it opens the geo databases
/// and precomputes tries and geo keys); share it across workers.
///
///     let router = try Router(model: model)
///     var result = router.makeResult()
///     var rng = RoutingRandom()
///     let client = ClientInfo(source: src, subnet: query.edns?.clientSubnet)
///     router.resolve(nameIndex: i, qtype: .a, client: client, health: snapshot, random: &rng, into: &result)
///     // result.addresses / result.cname / result.nodata, result.ttl, result.scopePrefix
public final class Router: Sendable {
    public let model: ConfigModel
    public let database: GeoDatabase?
    public let asnDatabase: GeoDatabase?
    let cidr: PrefixTrie
    let cidrLabels: [Int32]
    let labels: [String]
    let compiled: [CompiledNode]
    /// Per datacenter: packed country and continent codes, so CIDR-map hits allocate nothing.
    let dcCodes: [(country: UInt32, continent: UInt32)]
    /// Per GSLB name: whether anything under it answers A, AAAA, other types (CNAME only).
    let answerable: [(v4: Bool, v6: Bool, other: Bool)]
    /// Capacity a `RoutingResult` needs for any answer of this configuration: the largest
    /// answer its policies can give, not the number of endpoints.
    public let maxAddresses: Int
    /// How the geo and nearest maps were compiled or reused at load.
    public let geoMapReport: GeoMapReport
    /// Per GSLB name: its root node when the root is a `geo`, `subnet` or `nearest` node and
    /// nothing under it looks at the client (no geo, subnet, nearest or hashed below), else
    /// -1. Such a name's decision is a function of the root's compiled lookup for the client
    /// (its value), the health and the query's family, so `DecisionCache` keys it by that
    /// value rather than by the client's network (see `decisionKey`).
    let keyedRoot: [Int32]
    /// Per GSLB name with a keyed geo or nearest root: that root's ranges, unretained (the
    /// root's map in `compiled` owns them for the router's lifetime), so `decisionKey`
    /// reads them with no reference counting.
    let keyedTables: [Unmanaged<GeoRangeTable>?]

    public init(model: ConfigModel) throws(ConfigErrors) {
        self.model = model
        var errors: [ConfigError] = []
        func open(_ ref: FileReference?, _ what: String) -> GeoDatabase? {
            guard let ref else { return nil }
            do { return try GeoDatabase(path: ref.path) } catch {
                errors.append(ConfigError(ref.location, "geo.\(what): cannot open MaxMind database \(ref.path): \(error)"))
                return nil
            }
        }
        database = open(model.geo.database, "database")
        asnDatabase = open(model.geo.asnDatabase, "asn_database")
        if !errors.isEmpty { throw ConfigErrors(errors) }

        var labels: [String] = []
        var labelIndex: [String: Int32] = [:]
        func intern(_ s: String) -> Int32 {
            if let i = labelIndex[s] { return i }
            labels.append(s)
            let i = Int32(labels.count - 1)
            labelIndex[s] = i
            return i
        }
        var trie = PrefixTrie()
        var cidrLabels: [Int32] = []
        var firstWithTarget: [CIDRTarget: Int] = [:]
        for (i, e) in model.geo.cidr.enumerated() {
            // Entries with the same target share one value (the first such entry's) so the
            // trie can merge them.
            let canonical = firstWithTarget[e.target, default: i]
            firstWithTarget[e.target] = canonical
            trie.insert(e.prefix, value: Int32(canonical))
            switch e.target {
            case .label(let l): cidrLabels.append(intern(l))
            case .datacenter(let d): cidrLabels.append(intern(model.datacenters[d].name))
            case .coordinates: cidrLabels.append(-1)
            }
        }
        for dc in model.datacenters { _ = intern(dc.name) }
        trie.compact()
        cidr = trie

        var compiled: [CompiledNode] = []
        for node in model.nodes {
            var c = CompiledNode()
            switch node.kind {
            case .geo(let keys, _, _):
                for k in keys {
                    switch k {
                    case .label(let l): c.geoKeys.append(.label(intern(l)))
                    case .asn(let n): c.geoKeys.append(.asn(n)); c.geoUsesASN = true
                    case .subdivision(let cc, let s): c.geoKeys.append(.subdivision(country: packCode(cc), code: packCode(s)))
                    case .country(let cc): c.geoKeys.append(.country(packCode(cc)))
                    case .continent(let cc): c.geoKeys.append(.continent(packCode(cc)))
                    }
                }
            case .subnet(let prefixes, let children, let def):
                // The default is a /0 rule of both families; rules whose choices are the same
                // leaf share a value, so compaction merges their networks.
                c.targets = children + (def.map { [$0] } ?? [])
                let canonical = Router.firstOfSameLeaf(model, c.targets)
                if def != nil {
                    let d = canonical[c.targets.count - 1]
                    c.trie.insert(IPPrefix(address: IPAddress(v4: 0), length: 0), value: d)
                    c.trie.insert(IPPrefix(address: IPAddress(family: .v6, hi: 0, lo: 0), length: 0), value: d)
                }
                for (i, p) in prefixes.enumerated() { c.trie.insert(p, value: canonical[i]) }
                c.trie.compact()
            case .hashed(let children, _, _, _):
                c.childIDs = children.map { stableHash(Router.childName(model, $0)) }
            default: break
            }
            compiled.append(c)
        }
        let dcCodes = model.datacenters.map { (country: packCode($0.country ?? ""), continent: packCode($0.continent ?? "")) }
        let cidrTrie = trie
        let compiledKeys = compiled
        let geo = Router.compileGeoMaps(
            model: model, database: database, asnDatabase: asnDatabase, cidr: cidrTrie,
            locate: { entry, record, asn in
                if entry >= 0 {
                    return Router.cidrLocation(model, dcCodes, cidrLabels, Int(entry), scope: 0)
                }
                var loc = ClientLocation()
                loc.record = record
                loc.record.asn = asn
                loc.source = record.found ? .database : .none
                return loc
            },
            geoDecision: { n, canonical, loc in
                let best = Router.bestGeoKey(compiledKeys[n].geoKeys, loc)
                return best < 0 ? -1 : canonical[best]
            })
        for (n, m) in geo.maps { compiled[n].map = m }
        geoMapReport = geo.report
        self.labels = labels
        self.cidrLabels = cidrLabels
        self.compiled = compiled
        self.dcCodes = dcCodes
        answerable = model.names.map { n in
            let eps = model.endpointsUnder[n.root].map { model.endpoints[$0] }
            return (eps.contains { $0.cname != nil || !$0.v4.isEmpty }, eps.contains { $0.cname != nil || !$0.v6.isEmpty },
                    eps.contains { $0.cname != nil })
        }
        maxAddresses = model.maxAnswerAddresses
        keyedRoot = model.names.map { Router.isKeyedRoot(model, $0.root) ? Int32($0.root) : -1 }
        keyedTables = keyedRoot.map { n in n < 0 ? nil : compiled[Int(n)].map.map { Unmanaged.passUnretained($0.table) } }
    }

    /// Whether `root` looks at the client through its own compiled lookup and nothing under
    /// it looks at the client at all (see `keyedRoot`).
    static func isKeyedRoot(_ model: ConfigModel, _ root: Int) -> Bool {
        func looksAtClient(_ n: Int) -> Bool {
            switch model.nodes[n].kind {
            case .geo, .subnet, .nearest, .hashed: return true
            case .pool, .multivalue, .failover, .weighted: return false
            }
        }
        switch model.nodes[root].kind {
        case .geo, .subnet, .nearest: break
        default: return false
        }
        return !PolicyNode.subtree(root, in: model.nodes).contains { $0 != root && looksAtClient($0) }
    }

    /// For a name with a keyed root (`keyedRoot`): the value of the root's compiled lookup for
    /// `a` (the geo key or subnet rule chosen, or the nearest order; -1 for none) and the ECS
    /// scope `resolve` gives the answer when the root is evaluated, which it always is unless
    /// the root is below its `min_healthy`. Nil for other names. Allocates nothing.
    @inline(__always) func decisionKey(_ nameIndex: Int, _ a: IPAddress) -> (value: Int32, scope: Int)? {
        let n = Int(keyedRoot[nameIndex])
        guard n >= 0 else { return nil }
        let hit: (value: Int32, scope: Int)
        if let table = keyedTables[nameIndex] {
            hit = table._withUnsafeGuaranteedRef { $0.lookup(a) }
        } else {
            let t = compiled[n].trie.lookup(a)
            hit = (t.value, t.scope)
        }
        // As `EvalState.consulted` and `resolve` compute it.
        return (hit.value, min(max(hit.scope, 1), a.bitLength))
    }

    /// Two policy nodes are the same leaf, answering identically whatever the client, when
    /// they are the same node, or pools of the same endpoints with the same `when_all_down`
    /// and `min_healthy`: exactly when their `leafKey`s are equal.
    enum LeafKey: Hashable {
        case node(Int)
        case pool(endpoints: [Int], whenAllDown: WhenAllDown, minHealthy: Int)
    }

    static func leafKey(_ model: ConfigModel, _ n: Int) -> LeafKey {
        guard case .pool(_, let endpoints) = model.nodes[n].kind else { return .node(n) }
        return .pool(endpoints: endpoints, whenAllDown: model.nodes[n].whenAllDown, minHealthy: model.nodes[n].minHealthy)
    }

    /// For each of `nodes`, the index of the first of them that is the same leaf,
    /// found with one hash table instead of a scan per node.
    static func firstOfSameLeaf(_ model: ConfigModel, _ nodes: [Int]) -> [Int32] {
        var first: [LeafKey: Int32] = [:]
        first.reserveCapacity(nodes.count)
        return nodes.indices.map { i in
            let key = leafKey(model, nodes[i])
            if let j = first[key] { return j }
            first[key] = Int32(i)
            return Int32(i)
        }
    }

    static func childName(_ model: ConfigModel, _ n: Int) -> String {
        switch model.nodes[n].kind {
        case .pool(let name, _), .multivalue(let name, _, _): return name
        default: return "\(model.nodes[n].location)"
        }
    }

    public func makeResult() -> RoutingResult { RoutingResult(capacity: maxAddresses) }

    // MARK: location

    /// Finds the client's location: CIDR map first (longest prefix), else the databases.
    public func locate(_ client: ClientInfo) -> ClientLocation {
        var loc = ClientLocation()
        let a = client.address
        let hit = cidr.lookup(a)
        if hit.value >= 0 { return Router.cidrLocation(model, dcCodes, cidrLabels, Int(hit.value), scope: hit.scope) }
        // Without a map hit the map's structure still bounds the scope: a longer scope than
        // the trie walk reached could cover a mapped network (see PrefixTrie).
        let mapScope = hit.scope
        if let db = database {
            loc.record = db.lookup(a)
            loc.source = loc.record.found ? .database : .none
            loc.prefix = max(loc.record.prefixLength, mapScope)
        } else {
            loc.prefix = mapScope
        }
        if let asn = asnDatabase {
            let r = asn.lookup(a)
            loc.record.asn = r.asn
            loc.asnPrefix = max(r.prefixLength, mapScope)
        }
        return loc
    }
}

extension Router {
    /// The location CIDR-map entry `entry` gives, valid for a `scope`-bit network.
    static func cidrLocation(_ model: ConfigModel, _ dcCodes: [(country: UInt32, continent: UInt32)], _ cidrLabels: [Int32],
                             _ entry: Int, scope: Int) -> ClientLocation {
        var loc = ClientLocation()
        loc.source = .cidrMap
        loc.cidrEntry = entry
        loc.label = cidrLabels[entry]
        loc.prefix = scope
        switch model.geo.cidr[entry].target {
        case .label: break
        case .datacenter(let d):
            let dc = model.datacenters[d]
            loc.record.found = true
            loc.record.hasCoordinates = true
            loc.record.latitude = dc.latitude; loc.record.longitude = dc.longitude
            loc.record.country = dcCodes[d].country
            loc.record.continent = dcCodes[d].continent
        case .coordinates(let la, let lo):
            loc.record.found = true
            loc.record.hasCoordinates = true
            loc.record.latitude = la; loc.record.longitude = lo
        }
        loc.record.prefixLength = scope
        return loc
    }
}

/// Great-circle distance by the haversine formula on a 6371 km sphere.
public func greatCircleKm(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
    let r = Double.pi / 180
    let dlat = (lat2 - lat1) * r, dlon = (lon2 - lon1) * r
    let a = sin(dlat / 2) * sin(dlat / 2) + cos(lat1 * r) * cos(lat2 * r) * sin(dlon / 2) * sin(dlon / 2)
    return 2 * 6371 * asin(min(1, sqrt(a)))
}
