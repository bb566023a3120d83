import Foundation
import Health
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
    private let countersSource: @Sendable () -> ServerCounters

    public init(publisher: Publisher, reloads: ReloadStats, sources: ConfigSources, startedAt: Double,
                metrics: QueryMetrics = QueryMetrics(), counters: @escaping @Sendable () -> ServerCounters) {
        self.publisher = publisher; self.reloads = reloads; self.sources = sources
        self.startedAt = startedAt; self.metrics = metrics; self.countersSource = counters
    }

    /// The snapshot queries are answered from right now.
    public var snapshot: ServingSnapshot { publisher.store.load() }
    public var monitor: HealthMonitor? { publisher.monitor }
    public var counters: ServerCounters { countersSource() }
}
