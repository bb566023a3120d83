import Foundation
import Health
import Logging
import Synchronization

/// Reload outcomes, for metrics and status.
public final class ReloadStats: Sendable {
    public let ok = Atomic<UInt64>(0)
    public let failed = Atomic<UInt64>(0)
    private let last: Mutex<(success: Double?, failure: Double?, errors: [String])> = Mutex((nil, nil, []))

    public init() {}

    public func recordSuccess(at t: Double) {
        ok.add(1, ordering: .relaxed)
        last.withLock { $0.success = t; $0.errors = [] }
    }

    public func recordFailure(at t: Double, errors: [String]) {
        failed.add(1, ordering: .relaxed)
        last.withLock { $0.failure = t; $0.errors = errors }
    }

    /// Wall-clock time of the last successful load (the first load counts), of the last
    /// failed reload, and the errors of that failure (empty once a later reload succeeded).
    public var lastSuccess: Double? { last.withLock { $0.success } }
    public var lastFailure: Double? { last.withLock { $0.failure } }
    public var lastErrors: [String] { last.withLock { $0.errors } }
}

/// What the control API and SIGUSR1 read from a running server: the published snapshot
/// (configuration + health), the health monitor (status, overrides), socket counters and
/// reload outcomes. Owned by `Runtime.serve`.
public final class ControlContext: Sendable {
    public let publisher: Publisher
    public let reloads: ReloadStats
    public let sources: ConfigSources
    public let startedAt: Double
    /// Per-worker query counters, registered by each `AuthoritativeResponder`.
    public let metrics: QueryMetrics
    /// Where overrides are saved (`server.state_dir`); nil: not saved (no endpoints, or a
    /// context built in-process by a test).
    public let overrideFile: OverrideFile?
    /// Fleet mode: overrides go through etcd (nil: this server alone).
    public let fleet: FleetAgent?
    /// Fleet mode: endpoint state by quorum of the instances' vantages.
    public let quorum: QuorumAgent?
    /// Decisions per datacenter per minute for the status page (sampled off the query path).
    public let decisions = DecisionHistory()
    private let countersSource: @Sendable () -> ServerCounters

    public init(publisher: Publisher, reloads: ReloadStats, sources: ConfigSources, startedAt: Double,
                metrics: QueryMetrics = QueryMetrics(), overrideFile: OverrideFile? = nil, fleet: FleetAgent? = nil,
                quorum: QuorumAgent? = nil, counters: @escaping @Sendable () -> ServerCounters) {
        self.publisher = publisher; self.reloads = reloads; self.sources = sources
        self.startedAt = startedAt; self.metrics = metrics; self.overrideFile = overrideFile; self.fleet = fleet
        self.quorum = quorum
        self.countersSource = counters
    }

    /// Writes the overrides in force to the state folder; the error when that failed.
    @discardableResult
    public func saveOverrides() -> SystemError? { overrideFile?.saveCurrent(of: publisher) }

    func saveOverrides(log: Logger) {
        if let e = saveOverrides() { log.error("overrides not saved to \(overrideFile?.path ?? "-"): \(e); a restart would lose the latest change") }
    }

    /// The snapshot queries are answered from right now.
    public var snapshot: ServingSnapshot { publisher.store.load() }
    public var monitor: HealthMonitor? { publisher.monitor }
    public var counters: ServerCounters { countersSource() }
}
