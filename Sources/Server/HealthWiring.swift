import Config
import DNSWire
import Foundation
import Health
import Logging
import Synchronization

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

/// Publishes serving snapshots as the combination of the current configuration and the
/// current health, from two sources (reloads and the health loop) without races: both go
/// through one lock, and health from a monitor that a reload replaced is ignored.
public final class Publisher: Sendable {
    private struct State: @unchecked Sendable {
        var config: ServingSnapshot
        var monitor: HealthMonitor?
    }
    private let state: Mutex<State>
    public let store: SnapshotStore

    public init(_ first: ServingSnapshot) {
        store = SnapshotStore(first)
        state = Mutex(State(config: first, monitor: nil))
    }

    public var monitor: HealthMonitor? { state.withLock { $0.monitor } }
    public var config: ServingSnapshot { state.withLock { $0.config } }

    /// A new configuration (and the monitor that watches its endpoints).
    public func publish(config: ServingSnapshot, monitor: HealthMonitor?) {
        state.withLock { s in
            s.config = config
            s.monitor = monitor
            store.publish(config.with(health: monitor?.snapshot ?? HealthSnapshot.allUp(count: config.model?.endpoints.count ?? 0)))
        }
    }

    /// A health change from `monitor`; ignored when that monitor is no longer current.
    public func publish(health: HealthSnapshot, from monitor: HealthMonitor) {
        state.withLock { s in
            guard s.monitor === monitor else { return }
            store.publish(s.config.with(health: health))
        }
    }
}

/// Starts the health loop for `snapshot`'s configuration, taking over the state of
/// `previous` (see `carryOver`) and the overrides still in force. Returns nil when the
/// configuration has no endpoints. A configuration with endpoints but no checks still gets a
/// monitor (with no threads doing work) so operator overrides have a home.
///
/// With a `previous` monitor, that monitor stops applying results (`handOver`) once the new
/// one is built; on success the caller publishes the new one and stops the old one. If this
/// throws after the hand-over, the old monitor has been restarted.
func startHealth(for snapshot: ServingSnapshot, previous: HealthMonitor?, publisher: Publisher,
                 logger: Logger, initialRoundTimeout: Double?) throws(HealthError) -> HealthMonitor? {
    guard let model = snapshot.model, !model.endpoints.isEmpty else { return nil }
    let plan = HealthPlan(model: model)
    let checks = plan.checks
    // The previous configuration is still the published one during a reload.
    let oldModel = publisher.config.model
    let handed = previous?.handOver()
    do throws(HealthError) {
        return try startHealth(plan: plan, checks: checks, model: model, oldModel: oldModel, previous: previous, handed: handed,
                               publisher: publisher, logger: logger, initialRoundTimeout: initialRoundTimeout)
    } catch {
        if let old = previous {
            old.stop()
            try? old.start()
        }
        throw error
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
func carryOver(_ handed: HealthHandOver, oldSpecs: [String: CheckSpec], plan: HealthPlan,
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

private func startHealth(plan: HealthPlan, checks: [CheckSpec], model: ConfigModel, oldModel: ConfigModel?,
                         previous: HealthMonitor?, handed: HealthHandOver?, publisher: Publisher,
                         logger: Logger, initialRoundTimeout: Double?) throws(HealthError) -> HealthMonitor? {
    let carried = handed.map { carryOver($0, oldSpecs: previous?.specs ?? [:], plan: plan, model: model, oldModel: oldModel) } ?? [:]
    // Box so the change callback can name the monitor it belongs to.
    final class Box: @unchecked Sendable { weak var monitor: HealthMonitor? }
    let box = Box()
    let monitor = try HealthMonitor(checks: checks, endpointChecks: plan.endpointChecks,
                                    endpointCount: model.endpoints.count,
                                    endpointDatacenters: plan.endpointDatacenters,
                                    endpointNames: Dictionary(uniqueKeysWithValues: model.endpoints.enumerated().map { ($0.offset, $0.element.name) }),
                                    workers: checks.isEmpty ? 1 : min(8, max(2, checks.count)), logger: logger,
                                    carried: carried,
                                    onChange: { snap in
                                        if let m = box.monitor { publisher.publish(health: snap, from: m) }
                                    })
    box.monitor = monitor
    if let old = previous {
        // Endpoint overrides follow the endpoint's name, so a reordered endpoint list keeps them right.
        for o in old.overrides() {
            let remaining = o.expiresAt.map { $0 - Date().timeIntervalSince1970 }
            if let r = remaining, r <= 0 { continue }
            var target = o.target
            if case .endpoint(let i) = o.target, let om = oldModel, om !== model {
                guard i < om.endpoints.count, let j = model.endpointIndex(named: om.endpoints[i].name) else {
                    logger.warning("override on endpoint \(i) dropped: its endpoint is gone from the new configuration")
                    continue
                }
                target = .endpoint(j)
            }
            try? monitor.setOverride(target, state: o.state, reason: o.reason, expiresIn: remaining)
        }
    }
    try monitor.start()
    if let t = initialRoundTimeout {
        let settled = try monitor.runInitialRound(timeout: t)
        if !settled { logger.warning("health: first round of checks not finished after \(t) s; unsettled checks keep their initial state") }
    }
    return monitor
}
