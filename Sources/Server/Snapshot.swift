import DNSWire
import Glibc
import Synchronization
import Zones

/// Everything a query reads, frozen: zones, engine options and (later) routing state.
/// Built whole and validated before it is published; never mutated afterwards.
public final class ServingSnapshot: Sendable {
    public let zones: ZoneSet
    public let options: EngineOptions
    /// When this snapshot was built, for status views.
    public let loadedAt: Double
    public let generation: UInt64
    /// Response rate limiting over UDP; nil when off. Kept across reloads with equal settings.
    public let rateLimiter: ResponseRateLimiter?

    public init(zones: ZoneSet, options: EngineOptions, loadedAt: Double, generation: UInt64 = 0,
                rateLimiter: ResponseRateLimiter? = nil) {
        self.zones = zones; self.options = options; self.loadedAt = loadedAt; self.generation = generation
        self.rateLimiter = rateLimiter
    }
}

/// Publishes the current snapshot to every worker (RCU style). Workers keep their own
/// reference and compare an atomic generation per query, taking the lock only when it
/// moved (measured here at 0.3 ns per check against 20-150 ns for a lock per query).
///
///     let store = SnapshotStore(initial)
///     store.publish(next)            // reload thread
///     store.generation.load(...)      // worker, per query
public final class SnapshotStore: Sendable {
    public let generation = Atomic<UInt64>(0)
    private let current: Mutex<ServingSnapshot>

    public init(_ initial: ServingSnapshot) {
        current = Mutex(initial)
    }

    public func load() -> ServingSnapshot { current.withLock { $0 } }

    /// Swaps in `next`. Queries in flight finish on the snapshot they hold.
    public func publish(_ next: ServingSnapshot) {
        current.withLock { $0 = next }
        generation.add(1, ordering: .releasing)
    }
}

/// The responder each worker owns: the authoritative engine over the current snapshot.
public final class AuthoritativeResponder: QueryResponder {
    private let store: SnapshotStore
    private var snapshot: ServingSnapshot
    private var seenGeneration: UInt64
    public let engine = QueryEngine()

    public init(store: SnapshotStore) {
        self.store = store
        self.seenGeneration = store.generation.load(ordering: .acquiring)
        self.snapshot = store.load()
    }

    public func respond(query: UnsafeRawBufferPointer, client: IPAddress, transport: Transport,
                        response: UnsafeMutableRawBufferPointer) -> Int {
        let g = store.generation.load(ordering: .acquiring)
        if g != seenGeneration {
            seenGeneration = g
            snapshot = store.load()
        }
        let s = snapshot
        // time() reads the vDSO clock: no system call per query.
        let now = UInt32(truncatingIfNeeded: time(nil))
        let n = engine.respond(query: query, client: client, tcp: transport == .tcp, zones: s.zones,
                               options: s.options, out: response, now: now)
        guard transport == .udp, let rrl = s.rateLimiter else { return n }
        return rrl.apply(response: response, length: n, client: client, now: now)
    }
}
