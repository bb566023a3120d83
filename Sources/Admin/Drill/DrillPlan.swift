import Config
import DNSWire
import Health
import Server

/// A client network a drill or runbook queries as, sent as an EDNS Client Subnet option
/// (RFC 7871 6). `0.0.0.0/0` means "do not locate me": the query's source address decides.
///
///     let v = Vantage(IPPrefix("203.0.113.0/24")!, note: "cidr: office")
///     v.description   // "203.0.113.0/24"
public struct Vantage: Hashable, Sendable, CustomStringConvertible {
    public var prefix: IPPrefix
    /// Why this vantage was picked (shown in the runbook), e.g. "cidr map: iad".
    public var note: String
    public init(_ prefix: IPPrefix, note: String = "") { self.prefix = prefix; self.note = note }
    public var description: String { prefix.description }
}

/// One GSLB name that can answer with an endpoint of the datacenter under drill.
///
///     let api = plan.names[0]
///     api.budget?.down   // 52: health-check failover without an override
///     api.rto            // 30
public struct AffectedName: Sendable {
    /// Index into `ConfigModel.names`.
    public var index: Int
    public var owner: DNSName
    /// The configured TTL of the name's answers.
    public var ttl: UInt32
    public var rto: Double?
    /// The query types the name answers (A, AAAA or both); a drill asks each.
    public var types: [RRType]
    /// Endpoints of the datacenter the name's policy can answer with.
    public var endpoints: [Int]
    /// The slowest automatic (health-check) failover among those endpoints; nil when none
    /// has a check, so only an override takes them out.
    public var budget: FailoverBudget?
}

/// What taking one datacenter out of service touches: the answers that point into it and
/// the GSLB names that can give them. Shared by `meridian drill` and `meridian runbook`.
///
///     let plan = try DatacenterPlan(model: model, datacenter: "ams")
///     plan.names.map(\.owner)              // [www.example.com., api.example.com.]
///     plan.pointsInto(addresses: [IPAddress("192.0.2.10")!], cnames: [])   // true
public struct DatacenterPlan: Sendable {
    public var datacenter: String
    /// A and AAAA data of the datacenter's endpoints.
    public var addresses: Set<IPAddress>
    /// CNAME targets of the datacenter's endpoints, lower case.
    public var cnames: Set<DNSName>
    public var names: [AffectedName]
    /// Every address and CNAME target in the config, to the datacenter(s) it belongs to;
    /// fallback records map to "fallback".
    public var placeOfAddress: [IPAddress: String]
    public var placeOfCNAME: [DNSName: String]

    /// Fails with a readable message for an unknown datacenter or one no GSLB name uses.
    public init(model: ConfigModel, datacenter: String) throws(DrillError) {
        guard let dcIndex = model.datacenters.firstIndex(where: { $0.name == datacenter }) else {
            let known = model.datacenters.map(\.name).joined(separator: ", ")
            throw DrillError(.usage, "unknown datacenter \"\(datacenter)\" (known: \(known.isEmpty ? "none" : known))")
        }
        self.datacenter = datacenter
        var addrs = Set<IPAddress>(), cn = Set<DNSName>()
        var placeA: [IPAddress: String] = [:], placeC: [DNSName: String] = [:]
        func note(_ a: IPAddress, _ place: String) {
            if let old = placeA[a], old != place, !old.split(separator: "+").contains(Substring(place)) { placeA[a] = old + "+" + place }
            else if placeA[a] == nil { placeA[a] = place }
        }
        for e in model.endpoints {
            let place = e.datacenter.map { model.datacenters[$0].name } ?? e.name
            for a in e.v4 + e.v6 { note(a, place) }
            if let c = e.cname?.lowercased() { placeC[c] = placeC[c] ?? place }
            guard e.datacenter == dcIndex else { continue }
            addrs.formUnion(e.v4 + e.v6)
            if let c = e.cname { cn.insert(c.lowercased()) }
        }
        for n in model.nodes {
            if case .fallback(let fa, let fc) = n.whenAllDown {
                for a in fa where placeA[a] == nil { placeA[a] = "fallback" }
                if let c = fc?.lowercased(), placeC[c] == nil { placeC[c] = "fallback" }
            }
        }
        addresses = addrs; cnames = cn; placeOfAddress = placeA; placeOfCNAME = placeC
        var checksByName: [String: CheckSpec] = [:]
        for c in model.checks { checksByName[c.name] = c }
        var affected: [AffectedName] = []
        for (i, n) in model.names.enumerated() {
            let eps = model.endpointsUnder[n.root].filter { model.endpoints[$0].datacenter == dcIndex }
            guard !eps.isEmpty else { continue }
            var worst: FailoverBudget? = nil
            for ep in eps {
                guard let spec = model.checkSpec(forEndpoint: ep) else { continue }
                let b = failoverBudget(check: spec, ttl: n.ttl, ttlWhenFailing: n.ttlWhenFailing, checks: checksByName,
                                       propagation: model.quorumPropagation)
                if worst == nil || b.down > worst!.down { worst = b }
            }
            var types: [RRType] = []
            if n.answersA { types.append(.a) }
            if n.answersAAAA { types.append(.aaaa) }
            affected.append(AffectedName(index: i, owner: n.owner, ttl: n.ttl, rto: n.rto, types: types,
                                         endpoints: eps, budget: worst))
        }
        guard !affected.isEmpty else {
            throw DrillError(.usage, "no GSLB name in \(model.file) answers with an endpoint of datacenter \(datacenter): nothing to drill")
        }
        names = affected
    }

    /// Whether an answer sends clients into the datacenter.
    public func pointsInto(addresses a: [IPAddress], cnames c: [DNSName]) -> Bool {
        a.contains { addresses.contains($0) } || c.contains { cnames.contains($0.lowercased()) }
    }

    /// Where an answer sends clients: datacenter names (or "fallback"), else the raw data.
    public func places(addresses a: [IPAddress], cnames c: [DNSName]) -> [String] {
        var out: [String] = []
        for x in c { let p = placeOfCNAME[x.lowercased()] ?? x.description; if !out.contains(p) { out.append(p) } }
        for x in a { let p = placeOfAddress[x] ?? x.description; if !out.contains(p) { out.append(p) } }
        return out
    }

    /// The vantages used when none are given: one CIDR-map entry per distinct target (at
    /// most `limit`, in file order, so each mapped place is represented once), then
    /// `0.0.0.0/0`, which lets the query's source address decide (the geo default for a
    /// client the map and databases do not know).
    public static func defaultVantages(_ model: ConfigModel, limit: Int = 8) -> [Vantage] {
        var out: [Vantage] = []
        var targets = Set<CIDRTarget>()
        for e in model.geo.cidr where out.count < limit && targets.insert(e.target).inserted {
            let what: String
            switch e.target {
            case .label(let l): what = "cidr map label \(l)"
            case .datacenter(let d): what = "cidr map: located in \(model.datacenters[d].name)"
            case .coordinates(let la, let lo): what = "cidr map: at \(la),\(lo)"
            }
            out.append(Vantage(e.prefix, note: what))
        }
        out.append(Vantage(IPPrefix(address: IPAddress(v4: 0), length: 0),
                           note: "no client subnet: decided by the address the query comes from"))
        return out
    }
}

/// A drill or runbook failure, with the exit status it maps to.
///
///     throw DrillError(.usage, "unknown datacenter \"xyz\"")   // exit 2
public struct DrillError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case usage, failed }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }
    /// 2 for usage and configuration errors, 1 for everything else.
    public var exitCode: Int32 { kind == .usage ? 2 : 1 }
}
