import Config
import Etcd
import Foundation
import Health
import Logging
import Platform
import Synchronization

/// One instance's observation of one check (and so of the endpoints the check covers), as it
/// publishes it under `PREFIX vantages/NAME`.
public struct VantageObservation: Codable, Sendable, Equatable {
    /// `up`, `down` or `degraded`.
    public var state: String
    /// The weight factor of a degraded state (1 up, 0 down).
    public var factor: Double
    /// Seconds since the epoch of the last change of `state`.
    public var since: Double
    /// The last failed probe's reason while the last probe failed; nil after a success.
    public var lastError: String?
    /// Seconds the last probe took.
    public var rtt: Double?
    /// The endpoints this check decides, by name.
    public var endpoints: [String]

    enum CodingKeys: String, CodingKey {
        case state, factor, since, rtt, endpoints
        case lastError = "last_error"
    }

    public var health: HealthState {
        switch state {
        case "down": return .down
        case "degraded": return .degraded(factor: factor)
        default: return .up
        }
    }

    /// What is compared to decide whether to publish again: the state, not the RTT or the error text.
    func sameState(_ o: VantageObservation) -> Bool {
        state == o.state && factor == o.factor && since == o.since
    }
}

/// One instance's record of every check it has settled.
public struct VantageRecord: Codable, Sendable, Equatable {
    public var name: String
    /// Seconds since the epoch of this record.
    public var updated: Double
    public var checks: [String: VantageObservation]
}

/// What `/status` shows of the quorum: the mode, the live vantages and, per check, who sees what.
public struct QuorumStatus: Codable, Sendable {
    public struct Check: Codable, Sendable {
        public var check: String
        public var endpoints: [String]
        /// The check's `quorum:` and the count it needs of the live vantages seeing it.
        public var quorum: String
        public var required: Int
        /// The state every instance uses (the fleet's) or this instance's own (`mode` own).
        public var decided: String
        public var own: String
        /// Vantage name -> its state (`up`, `down`, `degraded(F)`), with its last error.
        public var vantages: [String: String]
        public var errors: [String: String]
    }
    /// `fleet`: decided by the quorum of the live vantages; `own`: this instance alone
    /// (`reason` says why: etcd lost for longer than `fleet.quorum_fallback`, or starting).
    public var mode: String
    public var reason: String?
    /// Seconds since the epoch when `mode` began.
    public var since: Double
    /// The live vantages in the last set read from etcd.
    public var vantages: [String]
    public var checks: [Check]
}

/// Health from several vantage points: every instance publishes its own observations under
/// its fleet lease and decides each check's state from everything published, with the check's
/// `quorum:`. All instances read the same set, so all answer alike.
///
///     let q = QuorumAgent(fleet: agent, publisher: publisher, log: log)
///     q.start()   // after the fleet agent; q.stop() before it
///
/// One thread, every 200 ms (`tick`): read the monitor's own check states and publish them
/// when one changed (or `refresh` seconds passed, or the lease changed); read the whole
/// `vantages/` prefix and hand the decision to the monitor (`HealthMonitor.setFleetView`),
/// which publishes a new health snapshot when an endpoint changes, as for a probe result. The
/// query path only reads that snapshot.
///
/// A vantage whose lease lapsed is gone from etcd and stops counting. While etcd cannot be
/// read, the last decision stands; after `fleet.quorum_fallback` the instance goes back to its
/// own observations (`mode: own` in `/status`, `meridian_quorum_fallback` 1).
public final class QuorumAgent: Sendable {
    public let fleet: FleetAgent
    private let publisher: Publisher
    private let log: Logger
    /// Seconds between rounds: the publish and read steps of the failover budget.
    public static let tick = FailoverBudget.quorumPropagation / 2
    /// Seconds after which an unchanged record is written again.
    public static let refresh = 10.0

    private struct State {
        var stopping = false
        var fleetMode = false
        var reason: String? = "starting: no vantage set read yet"
        var since = Date().timeIntervalSince1970
        var lastRead = monotonicSeconds()
        var records: [VantageRecord] = []
        var published: VantageRecord?
        var publishedAt = -Double.infinity
        var publishedLease: Int64?
    }
    private let state = Mutex(State())
    private let done = DispatchGroup()

    public var vantagesPrefix: String { fleet.settings.prefix + "vantages/" }

    public init(fleet: FleetAgent, publisher: Publisher, log: Logger) {
        self.fleet = fleet; self.publisher = publisher; self.log = log
    }

    public func start() {
        done.enter()
        Thread { [done] in self.loop(); done.leave() }.start()
    }

    /// Stops the thread (at most a second) and deletes this instance's record.
    public func stop() {
        state.withLock { $0.stopping = true }
        _ = done.wait(timeout: .now() + 1)
    }

    /// True while this instance decides alone because etcd was out of reach too long.
    public var fallback: Bool { state.withLock { !$0.fleetMode && $0.reason?.hasPrefix("etcd") == true } }
    public var vantageCount: Int { state.withLock { $0.records.count } }

    private func loop() {
        while !state.withLock({ $0.stopping }) {
            let began = monotonicSeconds()
            round()
            let end = began + QuorumAgent.tick
            while monotonicSeconds() < end && !state.withLock({ $0.stopping }) { usleep(20_000) }
        }
        _ = try? fleet.client.delete(vantagesPrefix + fleet.settings.name)
    }

    private func round() {
        guard let monitor = publisher.monitor, let model = publisher.config.model else { return }
        let own = QuorumAgent.observations(monitor.status(), model: model)
        publishIfChanged(own)
        do throws(EtcdError) {
            let kvs = try fleet.client.range(prefix: vantagesPrefix).kvs
            let records = kvs.compactMap { try? JSONDecoder().decode(VantageRecord.self, from: Data($0.value)) }
                .sorted { $0.name < $1.name }
            // The monitor's own specs: a check without `host` runs once per endpoint, as `NAME@ADDRESS`.
            let view = QuorumAgent.decide(records, specs: Array(monitor.specs.values))
            monitor.setFleetView(view)
            let wasFleet = state.withLock { s -> Bool in
                let w = s.fleetMode
                s.records = records; s.lastRead = monotonicSeconds()
                if !w { s.fleetMode = true; s.reason = nil; s.since = Date().timeIntervalSince1970 }
                return w
            }
            if !wasFleet { log.notice("quorum: deciding from the fleet's vantages (\(records.map(\.name).joined(separator: ", ")))") }
        } catch {
            let limit = fleet.settings.quorumFallback
            let (lost, wasFleet, fellBack) = state.withLock {
                (monotonicSeconds() - $0.lastRead, $0.fleetMode, $0.reason?.hasPrefix("etcd") == true)
            }
            guard lost > limit, wasFleet || !fellBack else { return }
            monitor.setFleetView(nil)
            state.withLock { s in
                s.fleetMode = false; s.since = Date().timeIntervalSince1970
                s.reason = "etcd unreachable for more than \(DurationText.format(limit, style: .milliseconds)): \(error.message)"
            }
            log.error("quorum: etcd out of reach for more than \(DurationText.format(limit, style: .milliseconds)); deciding from this instance's own observations")
        }
    }

    /// Writes this instance's record on the fleet lease when a state changed, the lease is
    /// new, or `refresh` passed. Nothing before the fleet has a lease.
    private func publishIfChanged(_ own: [String: VantageObservation]) {
        guard let lease = fleet.lease else { return }
        let now = monotonicSeconds()
        let due = state.withLock { s -> Bool in
            guard let p = s.published, s.publishedLease == lease, now - s.publishedAt < QuorumAgent.refresh,
                  p.checks.count == own.count else { return true }
            return own.contains { k, v in !(p.checks[k].map { $0.sameState(v) } ?? false) }
        }
        guard due else { return }
        let rec = VantageRecord(name: fleet.settings.name, updated: Date().timeIntervalSince1970, checks: own)
        let data = (try? JSONEncoder().encode(rec)) ?? Data()
        do throws(EtcdError) {
            try fleet.client.put(vantagesPrefix + fleet.settings.name, value: Array(data), lease: lease)
            state.withLock { $0.published = rec; $0.publishedAt = now; $0.publishedLease = lease }
        } catch {
            // The read that follows fails too and accounts for the outage.
        }
    }

    /// This instance's settled checks as observations.
    static func observations(_ checks: [CheckStatus], model: ConfigModel) -> [String: VantageObservation] {
        var out: [String: VantageObservation] = [:]
        for c in checks where c.settled {
            let (word, factor): (String, Double) = {
                switch c.state {
                case .up: return ("up", 1)
                case .down: return ("down", 0)
                case .degraded(let f): return ("degraded", f)
                }
            }()
            let failed = c.lastResult.map { !$0.ok } ?? false
            out[c.name] = VantageObservation(state: word, factor: factor, since: c.since,
                                             lastError: failed ? c.lastResult?.reason : nil, rtt: c.lastResult?.latency,
                                             endpoints: c.endpoints.map { model.endpoints[$0].name })
        }
        return out
    }

    /// Each check's fleet state: down when at least `quorum.required(of: N)` of the N vantages
    /// that observe it see it down; otherwise the state of the first vantage (by name) that
    /// sees it usable. A check no vantage observes, and a file check, are left out (their own
    /// state stands).
    static func decide(_ records: [VantageRecord], specs: [CheckSpec]) -> [String: HealthState] {
        var view: [String: HealthState] = [:]
        for spec in specs {
            // A state file is its own host's operator switch (fleet-wide, use an override).
            if case .file = spec.kind { continue }
            let seen = records.compactMap { $0.checks[spec.name] }
            guard !seen.isEmpty else { continue }
            let down = seen.filter { $0.health == .down }.count
            if down >= spec.quorum.required(of: seen.count) {
                view[spec.name] = .down
            } else {
                view[spec.name] = seen.first { $0.health.isUsable }?.health ?? .up
            }
        }
        return view
    }

    public func status() -> QuorumStatus {
        let s = state.withLock { $0 }
        let monitor = publisher.monitor
        let model = publisher.config.model
        let fleetView = monitor?.fleetView()
        let own = monitor?.status() ?? []
        let specs = (monitor?.specs.values).map { $0.sorted { $0.name < $1.name } } ?? []
        let checks = specs.map { spec -> QuorumStatus.Check in
            var vs: [String: String] = [:], errors: [String: String] = [:]
            for r in s.records {
                guard let o = r.checks[spec.name] else { continue }
                vs[r.name] = o.health.description
                if let e = o.lastError { errors[r.name] = e }
            }
            let mine = own.first { $0.name == spec.name }
            return QuorumStatus.Check(check: spec.name, endpoints: (mine?.endpoints ?? []).compactMap { model?.endpoints[$0].name },
                                      quorum: spec.quorum.description, required: spec.quorum.required(of: vs.count),
                                      decided: (fleetView?[spec.name] ?? mine?.state ?? .up).description,
                                      own: (mine?.state ?? .up).description, vantages: vs, errors: errors)
        }
        return QuorumStatus(mode: s.fleetMode ? "fleet" : "own", reason: s.reason, since: s.since,
                            vantages: s.records.map(\.name), checks: checks)
    }
}
