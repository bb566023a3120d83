import Config
import DNSWire
import Diagnostics

/// Collects the human-readable steps of one decision. Only `explain` passes one; the
/// server passes nil, and every trace call is `trace?.line(...)`, whose string argument
/// is not even built when the trace is nil.
public final class RoutingTrace {
    public private(set) var lines: [String] = []
    var depth = 0
    /// Set on the first location lookup.
    public var location: String? = nil
    public var summary: [String] = []
    public init() {}

    func line(_ s: String) { lines.append(String(repeating: "  ", count: depth) + s) }

    func finish(_ r: RoutingResult, model: ConfigModel) {
        if r.nodata { summary.append("answer:   NODATA (no records of this type)") }
        else if let c = r.cname { summary.append("answer:   CNAME \(c)") }
        else { summary.append("answer:   " + r.addresses.map(\.description).joined(separator: ", ")) }
        summary.append("ttl:      \(r.ttl)")
        summary.append("scope:    /\(r.scopePrefix)" + (r.scopePrefix == 0 ? " (answer does not depend on the client)" : " (answer holds for the client's /\(r.scopePrefix) network)"))
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
        let trace = RoutingTrace()
        var result = makeResult()
        var rng = RoutingRandom()
        resolve(nameIndex: idx, qtype: qtype, client: client, health: HealthSnapshot(states: states), random: &rng, into: &result, trace: trace)
        out.append("location: " + (trace.location ?? "not needed (no geo or nearest choice on this path)"))
        out.append(contentsOf: trace.lines)
        out.append(contentsOf: trace.summary)
        if result.usedRandom { out.append("note:     a random choice was made; run again for another draw") }
        return out.joined(separator: "\n") + "\n"
    }
}
