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

    public init(capacity: Int) {
        addresses = []
        addresses.reserveCapacity(max(capacity, 1))
    }

    public mutating func reset() {
        addresses.removeAll(keepingCapacity: true)
        cname = nil; ttl = 0; scopePrefix = 0; nodata = false; usedRandom = false; firstEndpoint = -1
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
        state &+= 0x9E37_79B9_7F4A_7C15
        return mix64(state)
    }
}

@inline(__always) func mix64(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
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
    var endpointsUnder: [Int] = []
    var geoKeys: [CompiledGeoKey] = []
    var geoUsesASN = false
    var trie = PrefixTrie()
    /// `subnet`: trie values index this (the rules' children, then the default).
    var targets: [Int] = []
    var childIDs: [UInt64] = []
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
    /// Capacity a `RoutingResult` needs for any answer of this configuration.
    public let maxAddresses: Int

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
        func intern(_ s: String) -> Int32 {
            if let i = labels.firstIndex(of: s) { return Int32(i) }
            labels.append(s); return Int32(labels.count - 1)
        }
        var trie = PrefixTrie()
        var cidrLabels: [Int32] = []
        for (i, e) in model.geo.cidr.enumerated() {
            // Entries with the same target share one value so the trie can merge them.
            let canonical = model.geo.cidr.firstIndex { $0.target == e.target } ?? i
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
                func canonical(_ i: Int) -> Int32 {
                    Int32(c.targets.firstIndex { Router.sameLeaf(model, $0, c.targets[i]) } ?? i)
                }
                if def != nil {
                    let d = canonical(c.targets.count - 1)
                    c.trie.insert(IPPrefix(address: IPAddress(v4: 0), length: 0), value: d)
                    c.trie.insert(IPPrefix(address: IPAddress(family: .v6, hi: 0, lo: 0), length: 0), value: d)
                }
                for (i, p) in prefixes.enumerated() { c.trie.insert(p, value: canonical(i)) }
                c.trie.compact()
            case .hashed(let children, _, _, _):
                c.childIDs = children.map { stableHash(Router.childName(model, $0)) }
            default: break
            }
            compiled.append(c)
        }
        // Endpoints under each node, computed bottom-up (children always precede parents).
        for i in model.nodes.indices {
            var under: [Int] = []
            switch model.nodes[i].kind {
            case .pool(_, let e), .multivalue(_, let e, _): under = e
            case .failover(let ch), .weighted(let ch, _), .hashed(let ch, _, _, _), .nearest(let ch, _, _, _):
                for c in ch { under += compiled[c].endpointsUnder }
            case .geo(_, let ch, let d), .subnet(_, let ch, let d):
                for c in ch + (d.map { [$0] } ?? []) { under += compiled[c].endpointsUnder }
            }
            var seen = Set<Int>()
            compiled[i].endpointsUnder = under.filter { seen.insert($0).inserted }
        }
        self.labels = labels
        self.cidrLabels = cidrLabels
        self.compiled = compiled
        dcCodes = model.datacenters.map { (packCode($0.country ?? ""), packCode($0.continent ?? "")) }
        answerable = model.names.map { n in
            let eps = compiled[n.root].endpointsUnder.map { model.endpoints[$0] }
            return (eps.contains { $0.cname != nil || !$0.v4.isEmpty }, eps.contains { $0.cname != nil || !$0.v6.isEmpty },
                    eps.contains { $0.cname != nil })
        }
        var maxFallback = 0
        for n in model.nodes { if case .fallback(let a, _) = n.whenAllDown { maxFallback = max(maxFallback, a.count) } }
        maxAddresses = model.endpoints.reduce(0) { $0 + max($1.v4.count, $1.v6.count) } + maxFallback
    }

    /// Two policy nodes that answer identically whatever the client: the same node, or
    /// pools of the same endpoints with the same `when_all_down`.
    static func sameLeaf(_ model: ConfigModel, _ a: Int, _ b: Int) -> Bool {
        if a == b { return true }
        guard case .pool(_, let x) = model.nodes[a].kind, case .pool(_, let y) = model.nodes[b].kind else { return false }
        return x == y && model.nodes[a].whenAllDown == model.nodes[b].whenAllDown
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
        if hit.value >= 0 {
            let e = model.geo.cidr[Int(hit.value)]
            loc.source = .cidrMap
            loc.cidrEntry = Int(hit.value)
            loc.label = cidrLabels[Int(hit.value)]
            loc.prefix = hit.scope
            switch e.target {
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
            loc.record.prefixLength = hit.scope
            return loc
        }
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

    // MARK: resolve

    /// Chooses the answer for GSLB name `nameIndex` (into `model.names`). Pure apart from
    /// `random`; allocates nothing unless `trace` is given. See `RoutingResult` for the output.
    public func resolve<R: RandomNumberGenerator>(nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot,
                                                  random: inout R, into result: inout RoutingResult, trace: RoutingTrace? = nil) {
        resolveGeneric(nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result, trace: trace)
    }

    func resolveGeneric<R: RandomNumberGenerator>(nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot,
                                                  random: inout R, into result: inout RoutingResult, trace: RoutingTrace?) {
        result.reset()
        let name = model.names[nameIndex]
        result.ttl = name.ttl
        let family: Family = qtype == .a ? .v4 : (qtype == .aaaa ? .v6 : .other)
        let answersType = family == .v4 ? name.answersA : (family == .v6 ? name.answersAAAA : true)
        var st = EvalState(rng: random, family: family, client: client, health: health, trace: trace)
        defer { random = st.rng }
        let can = answerable[nameIndex]
        if !answersType || !(family == .v4 ? can.v4 : (family == .v6 ? can.v6 : can.other)) {
            result.nodata = true
            trace?.line("no \(qtype) records: no endpoint under this name answers \(qtype)" + (answersType ? "" : " (types: excludes \(qtype))"))
            trace?.finish(result, model: model)
            return
        }
        trace?.line("policy:")
        trace?.depth += 1
        if !evaluate(name.root, &st, &result) {
            // `parent` at the top has no parent to fall to: answer as if all were up.
            trace?.line("nothing healthy at the top: answering as if all were up (fail open)")
            st.ignoreHealth = true
            if !evaluate(name.root, &st, &result) { result.nodata = true }
        }
        trace?.depth -= 1
        result.usedRandom = st.usedRandom
        result.scopePrefix = client.allowsScope ? min(st.scope, client.address.bitLength) : 0
        if result.addresses.isEmpty && result.cname == nil { result.nodata = true }
        trace?.finish(result, model: model)
    }

    /// The same as the generic `resolve`, specialised for the per-worker generator, so
    /// callers in other modules get the allocation-free specialised code.
    public func resolve(nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot,
                        random: inout RoutingRandom, into result: inout RoutingResult, trace: RoutingTrace? = nil) {
        resolveGeneric(nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result, trace: trace)
    }

    enum Family { case v4, v6, other }

    struct EvalState<R: RandomNumberGenerator> {
        var rng: R
        let family: Family
        let client: ClientInfo
        let health: HealthSnapshot
        let trace: RoutingTrace?
        var ignoreHealth = false
        var located = false
        var loc = ClientLocation()
        var scope = 0
        var usedRandom = false
        /// Records that the decision looked at the client, valid for its `prefix`-bit network.
        /// At least 1: scope 0 tells resolvers the answer suits every client of either
        /// family (many keep scope-0 answers in their plain cache), which is false for a
        /// decision that looked at the address, even one that found no rule for its family.
        @inline(__always) mutating func consulted(_ prefix: Int) {
            scope = max(scope, prefix, 1)
        }
        init(rng: R, family: Family, client: ClientInfo, health: HealthSnapshot, trace: RoutingTrace?) {
            self.rng = rng; self.family = family; self.client = client; self.health = health; self.trace = trace
        }
    }

    @inline(__always) func eligible(_ ep: Int, _ f: Family) -> Bool {
        let e = model.endpoints[ep]
        if e.cname != nil { return true }
        switch f {
        case .v4: return !e.v4.isEmpty
        case .v6: return !e.v6.isEmpty
        case .other: return false
        }
    }

    @inline(__always) func usable<R>(_ ep: Int, _ st: inout EvalState<R>) -> Bool {
        st.ignoreHealth || st.health.state(ep).isUsable
    }

    /// The best health factor under a node: 0 when nothing eligible is usable.
    func factor<R>(_ node: Int, _ st: inout EvalState<R>) -> Double {
        var best = 0.0
        for ep in compiled[node].endpointsUnder where eligible(ep, st.family) {
            let f = st.ignoreHealth ? 1 : st.health.state(ep).weightFactor
            if f > best { best = f }
        }
        return best
    }

    func healthy<R>(_ node: Int, _ st: inout EvalState<R>) -> Bool {
        for ep in compiled[node].endpointsUnder where eligible(ep, st.family) && usable(ep, &st) { return true }
        return false
    }

    func location<R>(_ st: inout EvalState<R>) -> ClientLocation {
        if !st.located {
            st.loc = locate(st.client)
            st.located = true
            if let t = st.trace { t.location = describe(st.loc) }
        }
        return st.loc
    }

    func append(_ ep: Int, _ f: Family, _ result: inout RoutingResult) {
        let e = model.endpoints[ep]
        if let c = e.cname {
            if result.cname == nil && result.addresses.isEmpty {
                result.cname = c
                result.firstEndpoint = Int32(ep)
            }
            return
        }
        guard result.cname == nil else { return }
        let list = f == .v4 ? e.v4 : e.v6
        if result.addresses.isEmpty && !list.isEmpty { result.firstEndpoint = Int32(ep) }
        for a in list where !result.addresses.contains(a) {
            if result.addresses.count < result.addresses.capacity { result.addresses.append(a) }
        }
    }

    func label(_ n: Int) -> String {
        let node = model.nodes[n]
        switch node.kind {
        case .pool(let name, _): return "pool \(name)"
        case .multivalue(let name, _, _): return "multivalue \(name)"
        default: return "\(node.kindName) at \(node.location)"
        }
    }

    func states<R>(_ eps: [Int], _ st: inout EvalState<R>) -> String {
        eps.map { "\(model.endpoints[$0].name) \(st.health.state($0))" + (eligible($0, st.family) ? "" : (st.family == .v4 ? " (no IPv4 address)" : (st.family == .v6 ? " (no IPv6 address)" : " (no CNAME)"))) }
            .joined(separator: ", ")
    }

    /// Returns true when the node produced an answer (records, fallback or NODATA), false
    /// when everything under it is down and its `when_all_down` is `parent`.
    func evaluate<R>(_ n: Int, _ st: inout EvalState<R>, _ result: inout RoutingResult) -> Bool {
        let node = model.nodes[n]
        let trace = st.trace
        switch node.kind {
        case .pool(_, let eps):
            var any = false
            for ep in eps where eligible(ep, st.family) && usable(ep, &st) {
                append(ep, st.family, &result); any = true
            }
            if any { trace?.line("\(label(n)): answering its usable members [\(states(eps, &st))]"); return true }
            trace?.line("\(label(n)): no usable member [\(states(eps, &st))]")
            return allDown(n, &st, &result)

        case .multivalue(_, let eps, let count):
            let ok: Bool = withUnsafeTemporaryAllocation(of: Int.self, capacity: eps.count) { buf in
                var m = 0
                for ep in eps where eligible(ep, st.family) && usable(ep, &st) { buf[m] = ep; m += 1 }
                if m == 0 { return false }
                let take = min(count, m)
                for i in 0..<take {
                    let j = Int.random(in: i..<m, using: &st.rng)
                    buf.swapAt(i, j)
                    append(buf[i], st.family, &result)
                }
                st.usedRandom = true
                trace?.line("\(label(n)): \(take) of \(m) usable members, shuffled [\(states(eps, &st))]")
                return true
            }
            if ok { return true }
            trace?.line("\(label(n)): no usable member [\(states(eps, &st))]")
            return allDown(n, &st, &result)

        case .failover(let children):
            for (i, c) in children.enumerated() {
                trace?.line("failover: trying choice \(i + 1) of \(children.count), \(label(c))")
                trace?.depth += 1
                let ok = evaluate(c, &st, &result)
                trace?.depth -= 1
                if ok { return true }
            }
            trace?.line("failover: every choice is down")
            return allDown(n, &st, &result)

        case .weighted(let children, let weights):
            var excluded: UInt64 = 0
            for _ in 0..<children.count {
                var total = 0.0
                for (i, c) in children.enumerated() where excluded & (1 << UInt64(i)) == 0 {
                    total += Double(weights[i]) * factor(c, &st)
                }
                if total <= 0 { break }
                var x = Double.random(in: 0..<total, using: &st.rng)
                st.usedRandom = true
                var pick = -1
                for (i, c) in children.enumerated() where excluded & (1 << UInt64(i)) == 0 {
                    let w = Double(weights[i]) * factor(c, &st)
                    if w <= 0 { continue }
                    pick = i
                    if x < w { break }
                    x -= w
                }
                guard pick >= 0 else { break }
                trace?.line("weighted: picked \(label(children[pick])) (effective weight \(Double(weights[pick]) * factor(children[pick], &st)) of \(total))")
                trace?.depth += 1
                let ok = evaluate(children[pick], &st, &result)
                trace?.depth -= 1
                if ok { return true }
                excluded |= 1 << UInt64(pick)
            }
            trace?.line("weighted: no choice with weight left")
            return allDown(n, &st, &result)

        case .geo(_, let children, let defaultChild):
            let loc = location(&st)
            let ck = compiled[n]
            st.consulted(ck.geoUsesASN ? max(loc.prefix, loc.asnPrefix) : loc.prefix)
            var best = -1, bestRank = Int.max
            for (i, k) in ck.geoKeys.enumerated() where k.rank < bestRank && matches(k, loc) {
                best = i; bestRank = k.rank
            }
            if best >= 0 {
                trace?.line("geo: client matches \(model.nodes[n].kindName) key \(geoKeyText(n, best)) -> \(label(children[best]))")
                trace?.depth += 1
                let ok = evaluate(children[best], &st, &result)
                trace?.depth -= 1
                if ok { return true }
            } else {
                trace?.line("geo: no key matches the client")
            }
            if let d = defaultChild {
                trace?.line("geo: using default -> \(label(d))")
                trace?.depth += 1
                let ok = evaluate(d, &st, &result)
                trace?.depth -= 1
                if ok { return true }
            }
            return allDown(n, &st, &result)

        case .subnet(_, _, let defaultChild):
            let hit = compiled[n].trie.lookup(st.client.address)
            st.consulted(hit.scope)
            var chosen = -1
            if hit.value >= 0 {
                chosen = compiled[n].targets[Int(hit.value)]
                trace?.line("subnet: \(st.client.address) -> \(label(chosen)) (the same for all of \(st.client.address.masked(to: hit.scope))/\(hit.scope))")
                trace?.depth += 1
                let ok = evaluate(chosen, &st, &result)
                trace?.depth -= 1
                if ok { return true }
            } else {
                trace?.line("subnet: no prefix contains \(st.client.address)")
            }
            if let d = defaultChild, d != chosen {
                trace?.line("subnet: using default -> \(label(d))")
                trace?.depth += 1
                let ok = evaluate(d, &st, &result)
                trace?.depth -= 1
                if ok { return true }
            }
            return allDown(n, &st, &result)

        case .nearest(let children, let dcs, let bias, let count):
            let loc = location(&st)
            st.consulted(loc.prefix)
            let hasCoords = loc.record.hasCoordinates
            if !hasCoords { trace?.line("nearest: client location unknown, taking choices in listed order") }
            var taken: UInt64 = 0
            var answered = 0
            for _ in 0..<children.count {
                var pick = -1, bestD = Double.infinity
                for i in children.indices where taken & (1 << UInt64(i)) == 0 {
                    let d = hasCoords ? distanceKm(loc.record.latitude, loc.record.longitude, dcs[i]) - bias[i] : Double(i)
                    if d < bestD || pick < 0 { pick = i; bestD = d }
                }
                if pick < 0 { break }
                taken |= 1 << UInt64(pick)
                if !healthy(children[pick], &st) {
                    trace?.line("nearest: \(model.datacenters[dcs[pick]].name) is down, skipping")
                    continue
                }
                if hasCoords {
                    trace?.line("nearest: \(model.datacenters[dcs[pick]].name) at \(Int(bestD + bias[pick])) km" + (bias[pick] != 0 ? " (bias \(bias[pick]) km)" : "") + " -> \(label(children[pick]))")
                }
                trace?.depth += 1
                let ok = evaluate(children[pick], &st, &result)
                trace?.depth -= 1
                if ok { answered += 1; if answered >= count { break } }
            }
            if answered > 0 { return true }
            trace?.line("nearest: every choice is down")
            return allDown(n, &st, &result)

        case .hashed(let children, let weights, let v4, let v6):
            let prefix = st.client.address.isV4 ? v4 : v6
            let net = st.client.address.masked(to: prefix)
            st.consulted(prefix)
            let key = mix64(net.hi ^ mix64(net.lo ^ UInt64(prefix)))
            var excluded: UInt64 = 0
            for _ in 0..<children.count {
                var pick = -1, bestScore = -Double.infinity
                for (i, c) in children.enumerated() where excluded & (1 << UInt64(i)) == 0 && weights[i] > 0 && healthy(c, &st) {
                    // Weighted rendezvous hashing: removing one choice only moves the clients
                    // that scored it highest.
                    let h = mix64(key ^ compiled[n].childIDs[i])
                    let u = (Double(h >> 11) + 0.5) / 9_007_199_254_740_992.0
                    let score = -Double(weights[i]) / log(u)
                    if score > bestScore { bestScore = score; pick = i }
                }
                guard pick >= 0 else { break }
                trace?.line("hashed: network \(net)/\(prefix) hashes to \(label(children[pick]))")
                trace?.depth += 1
                let ok = evaluate(children[pick], &st, &result)
                trace?.depth -= 1
                if ok { return true }
                excluded |= 1 << UInt64(pick)
            }
            trace?.line("hashed: every choice is down")
            return allDown(n, &st, &result)
        }
    }

    func allDown<R>(_ n: Int, _ st: inout EvalState<R>, _ result: inout RoutingResult) -> Bool {
        let trace = st.trace
        switch model.nodes[n].whenAllDown {
        case .parent:
            trace?.line("when_all_down parent: handing back to the parent")
            return false
        case .open:
            if st.ignoreHealth { return false }
            trace?.line("when_all_down open: answering as if all were up")
            st.ignoreHealth = true
            trace?.depth += 1
            let ok = evaluate(n, &st, &result)
            trace?.depth -= 1
            st.ignoreHealth = false
            return ok
        case .nodata:
            trace?.line("when_all_down nodata: empty answer")
            result.nodata = true
            return true
        case .fallback(let addresses, let cname):
            trace?.line("when_all_down fallback: fixed records")
            if let cname { result.cname = cname; return true }
            for a in addresses where (a.isV4 && st.family == .v4) || (a.isV6 && st.family == .v6) {
                if result.addresses.count < result.addresses.capacity && !result.addresses.contains(a) { result.addresses.append(a) }
            }
            if result.addresses.isEmpty { result.nodata = true }
            return true
        }
    }

    func matches(_ k: CompiledGeoKey, _ loc: ClientLocation) -> Bool {
        switch k {
        case .label(let l): return loc.label == l
        case .asn(let a): return loc.record.asn == a && a != 0
        case .subdivision(let c, let s):
            return loc.record.country == c && (loc.record.subdivision1 == s || loc.record.subdivision2 == s) && s != 0
        case .country(let c): return loc.record.country == c
        case .continent(let c): return loc.record.continent == c
        }
    }

    func geoKeyText(_ n: Int, _ i: Int) -> String {
        if case .geo(let keys, _, _) = model.nodes[n].kind { return keys[i].description }
        return "?"
    }

    func distanceKm(_ lat: Double, _ lon: Double, _ dc: Int) -> Double {
        let d = model.datacenters[dc]
        return greatCircleKm(lat, lon, d.latitude, d.longitude)
    }

    func describe(_ loc: ClientLocation) -> String {
        var parts: [String] = []
        if let c = loc.record.countryCode { parts.append("country \(c)") }
        if !loc.record.subdivisionCodes.isEmpty { parts.append("subdivision \(loc.record.subdivisionCodes.joined(separator: "/"))") }
        if let c = loc.record.continentCode { parts.append("continent \(c)") }
        if loc.record.hasCoordinates { parts.append("at \(loc.record.latitude),\(loc.record.longitude)") }
        if loc.record.asn != 0 { parts.append("AS\(loc.record.asn)") }
        if loc.label >= 0 { parts.insert("label \(labels[Int(loc.label)])", at: 0) }
        let what = parts.isEmpty ? "unknown" : parts.joined(separator: ", ")
        switch loc.source {
        case .cidrMap:
            return "\(what), from the CIDR map (first such entry at \(model.geo.cidr[loc.cidrEntry].location)), holds for /\(loc.prefix)"
        case .database:
            return "\(what), from \((database?.path as NSString?)?.lastPathComponent ?? "database") network /\(loc.record.prefixLength)"
                + (asnDatabase != nil ? ", ASN database network /\(loc.asnPrefix)" : "")
        case .none:
            return database == nil && model.geo.cidr.isEmpty ? "unknown (no geo source configured)"
                : "not found in any geo source (holds for /\(loc.prefix))"
        }
    }
}

/// Great-circle distance by the haversine formula on a 6371 km sphere.
public func greatCircleKm(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
    let r = Double.pi / 180
    let dlat = (lat2 - lat1) * r, dlon = (lon2 - lon1) * r
    let a = sin(dlat / 2) * sin(dlat / 2) + cos(lat1 * r) * cos(lat2 * r) * sin(dlon / 2) * sin(dlon / 2)
    return 2 * 6371 * asin(min(1, sqrt(a)))
}
