import Config
import Foundation
import Platform
import Synchronization

/// GSLB decisions per datacenter per minute over the last `minutes`, for the status page.
/// Kept off the query path: a sampler thread (and each page render) reads the per-worker
/// decision counters the workers already keep and adds the difference since the previous
/// sample to the current minute's bucket. Nothing here runs per query.
///
///     let h = DecisionHistory()
///     h.sample(metrics: ctx.metrics, model: model)       // every 10 s, and before a render
///     h.minutes(now: Date().timeIntervalSince1970)       // oldest first, current minute last
public final class DecisionHistory: Sendable {
    public static let minutes = 10
    /// How often the sampler thread reads the counters.
    public static let sampleEvery = 10.0

    /// One minute: the epoch minute and the decisions per datacenter name in it.
    public struct Minute: Sendable, Equatable {
        public var minute: Int
        public var counts: [String: UInt64]
    }

    private struct State {
        var ring: [Minute] = []
        /// The counters at the previous sample, and the configuration they count for
        /// (counters start again from zero with each reload).
        var last: [String: UInt64] = [:]
        var model: ObjectIdentifier?
    }
    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)

    public init() {}

    /// Reads the decision counters of `model` and adds what changed since the last sample
    /// to the current minute. After a reload the new configuration's counters count from
    /// zero, so everything they hold is new (decisions between the last sample and the
    /// reload are lost: at most `sampleEvery` seconds).
    public func sample(metrics: QueryMetrics, model: ConfigModel, now: Double = Date().timeIntervalSince1970) {
        let minute = Int((now / 60).rounded(.down))
        // Read under the lock, so two samples (the thread's and a render's) cannot apply
        // their readings out of order.
        state.withLock { s in
            let sums = Self.perDatacenter(MetricsRenderer.decisionTotals(metrics.allBlocks, model: model), model: model)
            var current: [String: UInt64] = [:]
            for (i, dc) in model.datacenters.enumerated() { current[dc.name] = sums[i] }
            let same = s.model == ObjectIdentifier(model)
            var delta: [String: UInt64] = [:]
            for (dc, v) in current {
                let before = same ? (s.last[dc] ?? 0) : 0
                delta[dc] = v >= before ? v - before : v
            }
            s.last = current
            s.model = ObjectIdentifier(model)
            if s.ring.last?.minute != minute { s.ring.append(Minute(minute: minute, counts: [:])) }
            for (dc, d) in delta { s.ring[s.ring.count - 1].counts[dc, default: 0] &+= d }
            if s.ring.count > Self.minutes { s.ring.removeFirst(s.ring.count - Self.minutes) }
        }
    }

    /// `decisionTotals` (per name and datacenter column) summed over the names: one count
    /// per datacenter of `model`, in its order.
    static func perDatacenter(_ totals: [UInt64], model: ConfigModel) -> [UInt64] {
        let cols = model.datacenters.count + 1
        return model.datacenters.indices.map { i in
            var sum: UInt64 = 0
            for n in 0..<model.names.count where n * cols + i < totals.count { sum &+= totals[n * cols + i] }
            return sum
        }
    }

    /// The last `minutes` minutes up to `now`, oldest first; minutes without a sample count zero.
    public func minutes(now: Double = Date().timeIntervalSince1970) -> [Minute] {
        let ring = state.withLock { $0.ring }
        let current = Int((now / 60).rounded(.down))
        return ((current - Self.minutes + 1)...current).map { m in ring.first { $0.minute == m } ?? Minute(minute: m, counts: [:]) }
    }

    /// Samples every `sampleEvery` seconds on a thread of its own until `stop`.
    public func startSampling(_ context: ControlContext) {
        Thread { [self] in
            while !stopping.load(ordering: .relaxed) {
                if let model = context.snapshot.model { sample(metrics: context.metrics, model: model) }
                let end = monotonicSeconds() + Self.sampleEvery
                while !stopping.load(ordering: .relaxed) && monotonicSeconds() < end { usleep(100_000) }
            }
        }.start()
    }

    public func stop() { stopping.store(true, ordering: .relaxed) }
}
