import Config
import DNSWire
import Foundation
import Health
import Logging
import Synchronization

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
        HealthSerials.shared.check(self)
    }

    /// A health change from `monitor`; ignored when that monitor is no longer current.
    public func publish(health: HealthSnapshot, from monitor: HealthMonitor) {
        let current = state.withLock { s in
            guard s.monitor === monitor else { return false }
            store.publish(s.config.with(health: health))
            return true
        }
        if current { HealthSerials.shared.check(self) }
    }

    /// Replaces the configuration with `change(configuration, current health)` under the
    /// lock the other publishes take (so it cannot interleave with a reload's publish);
    /// returns the configurations before and after, or nil when `change` returns nil.
    func update(_ change: (ServingSnapshot, HealthSnapshot) -> ServingSnapshot?) -> (old: ServingSnapshot, new: ServingSnapshot)? {
        state.withLock { s -> (old: ServingSnapshot, new: ServingSnapshot)? in
            let health = store.load().health
            guard let next = change(s.config, health) else { return nil }
            let old = s.config
            s.config = next
            store.publish(next.with(health: health))
            return (old, next)
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
            try? monitor.setOverride(target, state: o.state, reason: o.reason, expiresIn: remaining, author: o.author, setAt: o.setAt)
        }
        // Fleet mode: the quorum's decision carries over by check name until its next round
        // (200 ms) decides with the new checks, so a reload never answers from one vantage.
        if let view = old.fleetView() { monitor.setFleetView(view) }
    }
    try monitor.start()
    if let t = initialRoundTimeout {
        let settled = try monitor.runInitialRound(timeout: t)
        if !settled { logger.warning("health: first round of checks not finished after \(t) s; unsettled checks keep their initial state") }
    }
    return monitor
}
