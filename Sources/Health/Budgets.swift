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
    /// False when the name accepts a budget over its rto (`rto: { target: ..., enforce: false }`).
    public var enforced: Bool = true
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
                let b = failoverBudget(check: spec, ttl: n.ttl, ttlWhenFailing: n.ttlWhenFailing, checks: specs,
                                       propagation: model.quorumPropagation)
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
                              rto: n.rto, violation: violation, enforced: n.rtoEnforced)
        }
    }

    /// The rule `Runtime.load` enforces, so `check`, `serve` and a reload agree: one
    /// `file:line:column: message` per name whose worst-case failover time exceeds its
    /// enforced rto, naming the parts that dominate it.
    ///
    ///     Budgets.rtoErrors(model)   // ["meridian.yaml:40:5: www.example.com.: failover time 63s exceeds rto 30s; ..."]
    public static func rtoErrors(_ model: ConfigModel) -> [String] {
        let budgets = compute(model)
        return model.names.indices.compactMap { i in
            guard budgets[i].enforced, let v = budgets[i].violation else { return nil }
            let rto = DurationText.format(model.names[i].rto ?? 0)
            return "\(model.names[i].location): \(model.names[i].owner): \(v) (to accept it: rto: { target: \(rto), enforce: false })"
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
        if let r = b.rto {
            s += b.violation == nil ? "; rto \(Int(r))s ok" : (b.enforced ? "" : "; \(b.violation!) (accepted: enforce: false)")
        }
        return s
    }
}
