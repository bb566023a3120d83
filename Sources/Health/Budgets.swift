import Config
import DNSWire

/// The failover budget of one GSLB name: the worst over the health-checked endpoints its
/// policy tree can answer with.
public struct NameBudget: Sendable {
    public var name: DNSName
    public var budget: FailoverBudget?
    /// The endpoint whose check gives the worst case.
    public var worstEndpoint: String?
    /// Endpoints under the name with no health check: only overrides move them.
    public var unchecked: [String]
    public var rto: Double?
    /// Why `rto` is exceeded, nil when it fits (or there is none).
    public var violation: String?
}

public enum Budgets {
    /// Budgets for every GSLB name of `model`, checks expanded per endpoint as the health loop runs them.
    public static func compute(_ model: ConfigModel) -> [NameBudget] {
        let plan = HealthPlan(model: model)
        let specs = Dictionary(plan.checks.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        return model.names.map { n in
            var worst: FailoverBudget?
            var worstName: String?
            var unchecked: [String] = []
            for e in model.endpointsUnder[n.root].sorted() {
                guard let c = plan.endpointChecks[e], let spec = specs[c] else {
                    unchecked.append(model.endpoints[e].name)
                    continue
                }
                let b = failoverBudget(check: spec, ttl: n.ttl, checks: specs)
                if worst == nil || b.down > worst!.down { worst = b; worstName = model.endpoints[e].name }
            }
            var violation: String?
            if let rto = n.rto {
                if let w = worst {
                    violation = w.exceeds(rto: rto)
                } else if Double(n.ttl) > rto {
                    violation = "TTL \(n.ttl)s alone exceeds rto \(Int(rto))s"
                }
            }
            return NameBudget(name: n.owner, budget: worst, worstEndpoint: worstName, unchecked: unchecked,
                              rto: n.rto, violation: violation)
        }
    }

    /// Lines for `meridian check`.
    public static func describe(_ b: NameBudget) -> String {
        var s = "gslb \(b.name): "
        if let w = b.budget {
            s += "\(w.description) (worst: \(b.worstEndpoint ?? "?"))"
        } else {
            s += "no health-checked endpoint: answers move only by override"
        }
        if !b.unchecked.isEmpty && b.budget != nil { s += "; unchecked: \(b.unchecked.joined(separator: ", "))" }
        if let r = b.rto { s += b.violation == nil ? "; rto \(Int(r))s ok" : "" }
        return s
    }
}
