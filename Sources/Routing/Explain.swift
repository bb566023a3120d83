import Config
import DNSWire
import Diagnostics
import Foundation

/// The tracer behind `meridian explain` and the control API's `/explain`: turns the
/// events of one evaluation into the indented steps `explain` prints. Explain only; the
/// query path uses `NoTracer`.
final class ExplainTracer: RoutingTracer {
    var reportsLocation: Bool { true }
    let router: Router
    let health: HealthSnapshot
    let qtype: RRType
    let family: Router.Family
    let client: IPAddress
    private(set) var lines: [String] = []
    private var depth = 0
    /// Set on the first location lookup.
    private(set) var location: String? = nil
    private(set) var summary: [String] = []

    init(router: Router, health: HealthSnapshot, qtype: RRType, client: ClientInfo) {
        self.router = router; self.health = health; self.qtype = qtype
        family = Router.Family(qtype); self.client = client.address
    }

    var model: ConfigModel { router.model }

    private func line(_ s: String) { lines.append(String(repeating: "  ", count: depth) + s) }

    func noRecords(typeExcluded: Bool) {
        line("no \(qtype) records: no endpoint under this name answers \(qtype)" + (typeExcluded ? " (types: excludes \(qtype))" : ""))
    }

    func policyStarted() { line("policy:"); depth += 1 }

    func topFailedOpen() { line("nothing healthy at the top: answering as if all were up (fail open)") }

    func located(_ location: ClientLocation) { self.location = describe(location) }

    /// The scope shows in the summary (`finished`), so each consultation prints nothing.
    func consulted(node: Int, prefix: Int) {}

    func answered(node n: Int, shuffled: (taken: Int, usable: Int)?) {
        let which = leavesOutDegraded(n) ? "fully-up" : "usable"
        let minimum = model.nodes[n].minHealthy > 0 ? " (\(healthyCount(n)) of \(model.endpointsUnder[n].count) healthy, \(minimumText(n)))" : ""
        if let s = shuffled {
            line("\(label(n)): \(s.taken) of \(s.usable) \(which) members, shuffled [\(states(n))]\(minimum)")
        } else {
            line("\(label(n)): answering its \(which) members [\(states(n))]\(minimum)")
        }
    }

    /// Whether the pool or multivalue node `n` answered only some of its usable members:
    /// some eligible member is fully up and another one degraded.
    func leavesOutDegraded(_ n: Int) -> Bool {
        var up = false, degraded = false
        for ep in model.endpointsUnder[n] where router.eligible(ep, family) {
            switch health.state(ep) {
            case .up: up = true
            case .degraded(let f): if f >= 1 { up = true } else { degraded = true }
            case .down: break
            }
        }
        return up && degraded
    }

    func healthyCount(_ n: Int) -> Int { model.endpointsUnder[n].filter { health.state($0).isUsable }.count }

    /// `min_healthy 2`, or `min_healthy 2 (50% of 4)` when the pool or datacenter wrote a percentage.
    func minimumText(_ n: Int) -> String {
        let need = model.nodes[n].minHealthy
        var spec: MinHealthy? = nil
        if case .pool(let name, _) = model.nodes[n].kind {
            spec = model.pools.first { $0.name == name }?.minHealthy ?? model.datacenters.first { $0.name == name }?.minHealthy
        }
        if case .percent? = spec { return "min_healthy \(need) (\(spec!) of \(model.endpointsUnder[n].count))" }
        return "min_healthy \(need)"
    }

    func chose(_ choice: Choice, child: Int, of n: Int) {
        let node = model.nodes[n]
        switch (choice, node.kind) {
        case (.failover(let i, let count), _):
            line("failover: trying choice \(i + 1) of \(count), \(label(child))")
        case (.weighted(_, let effective, let total), _):
            line("weighted: picked \(label(child)) (effective weight \(effective) of \(total))")
        case (.geoKey(let i), .geo(let keys, _, _)):
            line("geo: client matches \(node.kindName) key \(keys[i].description) -> \(label(child))")
        case (.subnet(let prefix), _):
            line("subnet: \(client) -> \(label(child)) (the same for all of \(client.masked(to: prefix))/\(prefix))")
        case (.byDefault, _):
            line("\(node.kindName): using default -> \(label(child))")
        case (.nearest(let i, let distance?), .nearest(_, let dcs, let bias, _)):
            line("nearest: \(model.datacenters[dcs[i]].name) at \(Int(distance + bias[i])) km"
                 + (bias[i] != 0 ? " (bias \(bias[i]) km)" : "") + " -> \(label(child))")
        case (.hashed(let prefix), _):
            line("hashed: network \(client.masked(to: prefix))/\(prefix) hashes to \(label(child))")
        default:
            break   // nearest without a location: `noMatch` said so once
        }
    }

    func noMatch(node n: Int) {
        switch model.nodes[n].kind {
        case .geo: line("geo: no key matches the client")
        case .subnet: line("subnet: no prefix contains \(client)")
        case .nearest: line("nearest: client location unknown, taking choices in listed order")
        default: break
        }
    }

    func skipped(node n: Int, index: Int) {
        if case .nearest(_, let dcs, _, _) = model.nodes[n].kind {
            line("nearest: \(model.datacenters[dcs[index]].name) is down, skipping")
        }
    }

    func passedDegraded(node n: Int, child: Int) {
        line("\(model.nodes[n].kindName): \(label(child)) is only degraded, trying fully-up choices first")
    }

    func belowMinimum(node n: Int) {
        line("\(label(n)): \(healthyCount(n)) of \(model.endpointsUnder[n].count) healthy, below \(minimumText(n)): counts as down")
    }

    func exhausted(node n: Int) {
        switch model.nodes[n].kind {
        case .pool, .multivalue: line("\(label(n)): no usable member [\(states(n))]")
        case .weighted: line("weighted: no choice with weight left")
        case .failover, .nearest, .hashed: line("\(model.nodes[n].kindName): every choice is down")
        case .geo, .subnet: break   // the no-match or fallthrough lines said it
        }
    }

    func whenAllDown(node n: Int) {
        switch model.nodes[n].whenAllDown {
        case .parent: line("when_all_down parent: handing back to the parent")
        case .open: line("when_all_down open: answering as if all were up")
        case .nodata: line("when_all_down nodata: empty answer")
        case .fallback: line("when_all_down fallback: fixed records")
        }
    }

    func descend() { depth += 1 }
    func ascend() { depth -= 1 }

    func finished(_ r: RoutingResult) {
        if r.nodata { summary.append("answer:   NODATA (no records of this type)") }
        else if let c = r.cname { summary.append("answer:   CNAME \(c)") }
        else { summary.append("answer:   " + r.addresses.map(\.description).joined(separator: ", ")) }
        summary.append("ttl:      \(r.ttl)")
        summary.append("scope:    /\(r.scopePrefix)" + (r.scopePrefix == 0 ? " (answer does not depend on the client)" : " (answer holds for the client's /\(r.scopePrefix) network)"))
    }

    func label(_ n: Int) -> String {
        let node = model.nodes[n]
        switch node.kind {
        case .pool(let name, _): return "pool \(name)"
        case .multivalue(let name, _, _): return "multivalue \(name)"
        default: return "\(node.kindName) at \(node.location)"
        }
    }

    /// The members of a pool or multivalue node with their health, marking those that
    /// cannot answer the asked type.
    func states(_ n: Int) -> String {
        let eps: [Int]
        switch model.nodes[n].kind {
        case .pool(_, let e), .multivalue(_, let e, _): eps = e
        default: eps = []
        }
        return eps.map { "\(model.endpoints[$0].name) \(health.state($0))" + (router.eligible($0, family) ? "" : (family == .v4 ? " (no IPv4 address)" : (family == .v6 ? " (no IPv6 address)" : " (no CNAME)"))) }
            .joined(separator: ", ")
    }

    func describe(_ loc: ClientLocation) -> String {
        var parts: [String] = []
        if let c = loc.record.countryCode { parts.append("country \(c)") }
        if !loc.record.subdivisionCodes.isEmpty { parts.append("subdivision \(loc.record.subdivisionCodes.joined(separator: "/"))") }
        if let c = loc.record.continentCode { parts.append("continent \(c)") }
        if loc.record.hasCoordinates { parts.append("at \(loc.record.latitude),\(loc.record.longitude)") }
        if loc.record.asn != 0 { parts.append("AS\(loc.record.asn)") }
        if loc.label >= 0 { parts.insert("label \(router.labels[Int(loc.label)])", at: 0) }
        let what = parts.isEmpty ? "unknown" : parts.joined(separator: ", ")
        switch loc.source {
        case .cidrMap:
            return "\(what), from the CIDR map (first such entry at \(model.geo.cidr[loc.cidrEntry].location)), holds for /\(loc.prefix)"
        case .database:
            return "\(what), from \((router.database?.path as NSString?)?.lastPathComponent ?? "database") network /\(loc.record.prefixLength)"
                + (router.asnDatabase != nil ? ", ASN database network /\(loc.asnPrefix)" : "")
        case .none:
            return router.database == nil && model.geo.cidr.isEmpty ? "unknown (no geo source configured)"
                : "not found in any geo source (holds for /\(loc.prefix))"
        }
    }
}

extension Router {
    /// The trace `meridian explain` prints, through the same `resolve` the server runs.
    /// Health is up for every endpoint except those named in `down`.
    ///
    ///     let text = router.explain(name: try DNSName("www.example.com."), qtype: .a,
    ///                               client: IPAddress("81.2.69.142")!, ecs: nil, down: ["ams-1"])
    public func explain(name: DNSName, qtype: RRType, client source: IPAddress, ecs: IPPrefix?, down: [String] = []) -> String {
        var states = Array(repeating: HealthState.up, count: model.endpoints.count)
        var warnings: [String] = []
        for d in down {
            if let i = model.endpointIndex(named: d) { states[i] = .down }
            else { warnings.append("warning:  --down \(d): no such endpoint") }
        }
        return explain(name: name, qtype: qtype, client: source, ecs: ecs, health: HealthSnapshot(states: states), warnings: warnings)
    }

    /// The same trace against a given health snapshot (the control API passes the live one).
    public func explain(name: DNSName, qtype: RRType, client source: IPAddress, ecs: IPPrefix?, health: HealthSnapshot,
                        warnings: [String] = []) -> String {
        var out: [String] = []
        out.append("query:    \(name) \(qtype)")
        guard let idx = model.nameIndex[name.lowercased()] else {
            out.append("\(name) is not a GSLB name in this configuration (known: \(model.names.map(\.owner.description).joined(separator: ", ")))")
            return out.joined(separator: "\n") + "\n"
        }
        out.append(contentsOf: warnings)
        let subnet = ecs.map {
            ClientSubnet(family: $0.address.isV4 ? 1 : 2, sourcePrefix: UInt8($0.length), scopePrefix: 0, address: $0.address)
        }
        let client = ClientInfo(source: source, subnet: subnet)
        out.append("client:   \(client.explanation)")
        let states = model.endpoints.indices.map { health.state($0) }
        let downList = states.indices.filter { states[$0] == .down }.map { model.endpoints[$0].name }
        let degraded = states.indices.filter { if case .degraded = states[$0] { return true } else { return false } }
            .map { "\(model.endpoints[$0].name) \(states[$0])" }
        var h: [String] = []
        if !downList.isEmpty { h.append("down: \(downList.joined(separator: ", "))") }
        if !degraded.isEmpty { h.append("degraded: \(degraded.joined(separator: ", "))") }
        out.append("health:   " + (h.isEmpty ? "all endpoints up" : h.joined(separator: "; ") + "; others up"))
        let snapshot = HealthSnapshot(states: states)
        let trace = ExplainTracer(router: self, health: snapshot, qtype: qtype, client: client)
        var result = makeResult()
        var rng = RoutingRandom()
        resolve(nameIndex: idx, qtype: qtype, client: client, health: snapshot, random: &rng, into: &result, tracer: trace)
        out.append("location: " + (trace.location ?? "not needed (no geo or nearest choice on this path)"))
        out.append(contentsOf: trace.lines)
        out.append(contentsOf: trace.summary)
        if result.usedRandom { out.append("note:     a random choice was made; run again for another draw") }
        return out.joined(separator: "\n") + "\n"
    }
}
