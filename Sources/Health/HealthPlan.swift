import Config
import DNSWire

/// The checks the health loop runs for one configuration. A check template whose host is
/// left empty is run once per distinct endpoint address (`web@192.0.2.10`); endpoints that
/// resolve to the same spec share one check, so a target shared by many endpoints is probed
/// once per interval. A calculated check over templates is a template too: for an endpoint
/// with `check: both` (`both: { type: calculated, checks: [web, smtp], min: 2 }`) it becomes
/// `both@ADDR` over `web@ADDR` and `smtp@ADDR`; members with an explicit host stay shared.
public struct HealthPlan: Sendable {
    public var checks: [CheckSpec] = []
    public var endpointChecks: [Int: String] = [:]
    public var endpointDatacenters: [Int: String] = [:]

    public init(model: ConfigModel) {
        var byName: [String: CheckSpec] = [:]
        // Checks with an explicit target keep their own name (calculated checks refer to them).
        for (i, c) in model.checks.enumerated() where !model.isPerEndpointCheck(i) {
            byName[c.name] = c
        }
        for (i, ep) in model.endpoints.enumerated() {
            if let dc = ep.datacenter { endpointDatacenters[i] = model.datacenters[dc].name }
            guard let c = ep.check else { continue }
            endpointChecks[i] = HealthPlan.instance(c, endpoint: i, host: model.checkHost(forEndpoint: i),
                                                    model: model, into: &byName, depth: 0)
        }
        checks = byName.keys.sorted().map { byName[$0]! }
    }

    /// The name of check `c` as run for endpoint `endpoint` (whose address is `host`), adding
    /// it and, for a calculated template, its members to `byName`. A name already taken by a
    /// different spec gets `#endpoint` appended. `depth` is bounded by the number of checks
    /// (the loader rejects calculated cycles; the bound only keeps this total).
    static func instance(_ c: Int, endpoint: Int, host: String, model: ConfigModel,
                         into byName: inout [String: CheckSpec], depth: Int) -> String {
        let template = model.checks[c]
        guard model.isPerEndpointCheck(c), depth <= model.checks.count else { return template.name }
        var spec = model.checkSpec(c, host: host)
        if case .calculated(let members, let minimum) = spec.kind {
            let names = members.map { m in
                model.checks.firstIndex { $0.name == m }.map {
                    instance($0, endpoint: endpoint, host: host, model: model, into: &byName, depth: depth + 1)
                } ?? m
            }
            spec.kind = .calculated(checks: names, minimum: minimum)
        }
        spec.name = "\(template.name)@\(host)"
        if let existing = byName[spec.name], existing != spec {
            spec.name += "#\(endpoint)"
        }
        byName[spec.name] = spec
        return spec.name
    }
}

extension CheckSpec {
    var targetDescription: String {
        switch kind {
        case .tcp(let h, _): return h
        case .http(let h): return h.host
        case .dns(let s, _, _, _, _, _): return s
        default: return name
        }
    }
}

/// The reload rule for health state, per check of the new configuration:
/// - same name and same probe (kind and target; interval, timeout, rise, fall and initial may
///   differ): everything carries over, settled or not, with the rise/fall counters as they
///   stand;
/// - otherwise (a new name, or the probe changed): the check restarts unsettled, so its first
///   result sets its state, and until then it starts from the worst checked state that its
///   endpoints (matched by endpoint name) had in the old configuration; only a check whose
///   endpoints are all new starts at its `initial` state.
/// So an endpoint that was down never answers as up just because the configuration reloaded.
public func carryOver(_ handed: HealthHandOver, oldSpecs: [String: CheckSpec], plan: HealthPlan,
               model: ConfigModel, oldModel: ConfigModel?) -> [String: CheckCarry] {
    var endpointsOf: [String: [Int]] = [:]
    for (ep, name) in plan.endpointChecks { endpointsOf[name, default: []].append(ep) }
    var out: [String: CheckCarry] = [:]
    for spec in plan.checks {
        if let c = handed.checks[spec.name], let old = oldSpecs[spec.name], old.kind == spec.kind {
            out[spec.name] = c
            continue
        }
        guard let om = oldModel else { continue }
        var worst: HealthState? = nil
        for ep in endpointsOf[spec.name] ?? [] {
            guard let j = om.endpointIndex(named: model.endpoints[ep].name), j < handed.endpointChecked.count else { continue }
            let was = handed.endpointChecked[j]
            if worst == nil || was.weightFactor < worst!.weightFactor { worst = was }
        }
        if let w = worst { out[spec.name] = .restart(at: w) }
    }
    return out
}
