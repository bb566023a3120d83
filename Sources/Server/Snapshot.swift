import Answering
import CShim
import Config
import DNSSEC
import DNSWire
import Foundation
import Glibc
import Platform
import Routing
import Synchronization
import Zones

/// Everything a query reads, frozen: zones, engine options, the routing policies and the
/// endpoints' health. Built whole and validated before it is published; never mutated
/// afterwards. A health change publishes a copy with only `health` replaced.
public final class ServingSnapshot: Sendable {
    public let zones: ZoneSet
    /// The GSLB configuration and its policy evaluator; nil when serving zone files only.
    public let model: ConfigModel?
    public let router: Router?
    public let health: HealthSnapshot
    public let options: EngineOptions
    /// When this snapshot was built, for status views.
    public let loadedAt: Double
    public let generation: UInt64
    /// Response rate limiting over UDP; nil when off. Kept across reloads with equal settings.
    public let rateLimiter: ResponseRateLimiter?
    /// DNSSEC signing per zone; nil when no zone is signed.
    public let signing: SigningSet?
    /// Query logging through dnstap; nil when off. Set by `serve` (never by `check`), kept
    /// across reloads with equal settings.
    public let dnstap: DnstapSink?
    /// Who may transfer which zone, and how GSLB names look in a transfer (`transfers:`
    /// and `serve --allow-transfer`).
    public let transfers: TransferSettings
    /// Per zone (lowercase origin), the health its GSLB names in the `healthy` transfer view
    /// are written with: the health when the zone's serial was last decided, so a serial
    /// names one content. A zone not listed: every endpoint up.
    public let transferHealth: [DNSName: HealthSnapshot]

    public init(zones: ZoneSet, options: EngineOptions, loadedAt: Double, generation: UInt64 = 0,
                rateLimiter: ResponseRateLimiter? = nil, model: ConfigModel? = nil, router: Router? = nil,
                health: HealthSnapshot? = nil, signing: SigningSet? = nil, dnstap: DnstapSink? = nil,
                transfers: TransferSettings = TransferSettings(), transferHealth: [DNSName: HealthSnapshot] = [:]) {
        self.signing = signing
        self.transferHealth = transferHealth
        self.zones = zones; self.options = options; self.loadedAt = loadedAt; self.generation = generation
        self.transfers = transfers
        self.rateLimiter = rateLimiter
        self.dnstap = dnstap
        self.model = model
        self.router = router
        self.health = health ?? HealthSnapshot.allUp(count: model?.endpoints.count ?? 0)
    }

    /// The same configuration with other health.
    public func with(health: HealthSnapshot) -> ServingSnapshot {
        ServingSnapshot(zones: zones, options: options, loadedAt: loadedAt, generation: generation,
                        rateLimiter: rateLimiter, model: model, router: router, health: health, signing: signing, dnstap: dnstap,
                        transfers: transfers, transferHealth: transferHealth)
    }

    /// The same configuration with other zones (same order: the signing set follows it) and
    /// the health their `healthy` transfer views were written with.
    public func with(zones: ZoneSet, transferHealth: [DNSName: HealthSnapshot]) -> ServingSnapshot {
        ServingSnapshot(zones: zones, options: options, loadedAt: loadedAt, generation: generation,
                        rateLimiter: rateLimiter, model: model, router: router, health: health, signing: signing, dnstap: dnstap,
                        transfers: transfers, transferHealth: transferHealth)
    }

    /// The same snapshot logging to `sink`.
    public func with(dnstap sink: DnstapSink?) -> ServingSnapshot {
        ServingSnapshot(zones: zones, options: options, loadedAt: loadedAt, generation: generation,
                        rateLimiter: rateLimiter, model: model, router: router, health: health, signing: signing, dnstap: sink,
                        transfers: transfers, transferHealth: transferHealth)
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
    /// Where replaced snapshots go to be freed off the query path.
    let retired = SnapshotReaper<ServingSnapshot>()

    public init(_ initial: ServingSnapshot) {
        current = Mutex(initial)
    }

    public func load() -> ServingSnapshot { current.withLock { $0 } }

    /// Swaps in `next`. Queries in flight finish on the snapshot they hold; the store's
    /// reference to the previous one is dropped by the reaper thread.
    public func publish(_ next: ServingSnapshot) {
        var previous: ServingSnapshot? = current.withLock { c in
            let p = c
            c = next
            return p
        }
        generation.add(1, ordering: .releasing)
        retired.retire(&previous)
    }
}

/// Frees replaced snapshots on a thread of its own, under SCHED_IDLE (`ThreadPriority.idle`).
/// The last reference to a snapshot used to be dropped by whichever worker adopted the next
/// one, so that worker freed the whole previous zone data (a million-record zone is
/// millions of objects, tens of milliseconds) while its queries waited. Workers and the
/// publisher hand their reference over here instead, under the lock, so the reaper's is the
/// last. Generic only so a test can watch where its objects are freed.
///
///     var old: ServingSnapshot? = snapshot
///     snapshot = next
///     reaper.retire(&old)          // old is nil now; freed later on the reaper thread
final class SnapshotReaper<Retired: AnyObject>: @unchecked Sendable {
    // Guarded by `cond`.
    private let cond = NSCondition()
    private var queue: [Retired] = []
    private var started = false

    /// Takes `s` over (and sets it to nil) so that this thread never drops the last reference.
    /// Runs only when a snapshot is replaced, never per query.
    func retire(_ s: inout Retired?) {
        guard s != nil else { return }
        cond.lock()
        queue.append(s!)
        s = nil
        if !started {
            started = true
            let t = Thread { [self] in drain() }
            t.name = "snapshot-reaper"
            t.start()
        }
        cond.signal()
        cond.unlock()
    }

    private func drain() {
        cshim_name_current_thread("snapshot-reaper")
        ThreadPriority.background()
        cond.lock()
        while true {
            while queue.isEmpty { cond.wait() }
            var batch: [Retired] = []
            swap(&batch, &queue)
            cond.unlock()
            ThreadPriority.idle { batch.removeAll() }
            cond.lock()
        }
    }
}

/// Thread scheduling for background work: a reload's load, freeing a replaced snapshot,
/// the journal of a reload, returning memory to the system.
///
/// Under SCHED_IDLE a thread runs only when nothing else on its CPU wants to, and a query
/// worker that wakes takes the CPU from it at once. A nice value does not do that: at nice
/// 10 or 19 the load still got slices of milliseconds between a worker's packets (p99 at
/// 20k qps went from 0.5 ms to 4-8 ms while a million-record zone was built on the worker's
/// CPU). A thread that SCHED_IDLE starves (busy workers or other processes leave it less
/// than `minimumShare` of a CPU in each of `starvedChecks` consecutive `watchInterval`s) is
/// put back under SCHED_OTHER for the rest of its work, so a reload still finishes in
/// bounded time on a saturated host. One short interval does not count: with a single
/// 40 ms interval, a momentary dip (a burst of queries, the hypervisor taking the CPU) put a
/// 1M-record reload under SCHED_OTHER at 20k qps, and the worker then waited up to 2.6 ms
/// for the CPU behind it (p99 3.6 ms in that run against 0.2 ms when the load stayed idle).
/// Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows nice 0: without
/// them (`canLeaveIdle` false) the work keeps the thread's priority.
///
///     let result = ThreadPriority.idle { buildTheZones() }
enum ThreadPriority {
    /// Nice 10 for a background thread between its idle-scheduled work, and for all of it
    /// when this process may not leave SCHED_IDLE.
    static let backgroundNice: Int32 = 10
    /// How often a watched thread's CPU time is read, and the share of a CPU below which it
    /// counts as starved.
    static let watchInterval = 0.04
    static let minimumShare = 0.25
    /// Consecutive starved intervals before the thread leaves SCHED_IDLE (about 0.5 s).
    static let starvedChecks = 12

    /// Lowers the calling thread to `backgroundNice` (Linux: the nice value is per thread;
    /// threads it starts inherit it).
    static func background() {
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, backgroundNice)
    }

    /// Whether a thread of this process can be taken back out of SCHED_IDLE, tried once on
    /// a thread of its own (a thread that could not would stay idle for good).
    static let canLeaveIdle: Bool = {
        let result = Mutex(false)
        guard let probe = try? JoinableThread(name: "idle-probe", {
            let ok = cshim_sched_idle(0, 1) == 0 && cshim_sched_idle(0, 0) == 0
            result.withLock { $0 = ok }
        }) else { return false }
        probe.join() // The probe is two system calls.
        return result.withLock { $0 }
    }()

    /// Runs `body` on the calling thread under SCHED_IDLE, watched for starvation, and puts
    /// the thread back under SCHED_OTHER after it.
    static func idle<T>(_ body: () throws -> T) rethrows -> T {
        guard canLeaveIdle, cshim_sched_idle(0, 1) == 0 else { return try body() }
        let watch = StarvationWatch(tid: cshim_gettid())
        defer {
            watch.stop()
            _ = cshim_sched_idle(0, 0)
        }
        return try body()
    }
}

/// Puts thread `tid` back under SCHED_OTHER once it gets less than
/// `ThreadPriority.minimumShare` of a CPU over one `ThreadPriority.watchInterval`; ends
/// with `stop()` or then.
private final class StarvationWatch: @unchecked Sendable {
    // Guarded by `cond`.
    private let cond = NSCondition()
    private var stopped = false

    init(tid: Int32) {
        let t = Thread { [self] in watch(tid) }
        t.name = "idle-watch"
        t.start()
    }

    func stop() {
        cond.lock()
        stopped = true
        cond.signal()
        cond.unlock()
    }

    private func watch(_ tid: Int32) {
        cshim_name_current_thread("idle-watch")
        var cpu = cshim_thread_cpu_ns(tid)
        var at = monotonicSeconds()
        var starved = 0
        cond.lock()
        defer { cond.unlock() }
        while !stopped && cpu >= 0 {
            _ = cond.wait(until: Date().addingTimeInterval(ThreadPriority.watchInterval))
            if stopped { return }
            let (c, now) = (cshim_thread_cpu_ns(tid), monotonicSeconds())
            if now - at < ThreadPriority.watchInterval * 0.9 { continue }
            if c >= 0 && Double(c - cpu) / 1e9 < ThreadPriority.minimumShare * (now - at) {
                starved += 1
                if starved >= ThreadPriority.starvedChecks {
                    _ = cshim_sched_idle(tid, 0)
                    return
                }
            } else {
                starved = 0
            }
            (cpu, at) = (c, now)
        }
    }
}

/// The responder each worker owns: the answering pipeline over the current snapshot, then
/// response rate limiting and metrics on what the pipeline reports.
public final class AuthoritativeResponder: QueryResponder {
    private let store: SnapshotStore
    // Per-worker state, touched only by the worker's thread: no dynamic exclusivity checks.
    @exclusivity(unchecked) private var snapshot: ServingSnapshot
    @exclusivity(unchecked) private var seenGeneration: UInt64
    public let answerer = Answerer()
    // A borrowed view of what `snapshot` owns, for the query path: reading a strong
    // reference held in a var retains and releases it on every query; reset in `adopt`.
    // Unmanaged, so the query path reads it as a guaranteed reference (no retain and
    // release of the snapshot, its zones and options per query, which `unowned(unsafe)`
    // bound to a local still costs).
    @exclusivity(unchecked) private var current: Unmanaged<ServingSnapshot>
    /// This worker's counters (written only here, read by the metrics scrape).
    private let counters: QueryCounterBlock
    /// This worker's dnstap queue for the snapshot's sink (nil when logging is off), and the
    /// sink it belongs to; replaced in `adopt` when the sink changes.
    @exclusivity(unchecked) private var tapRing: DnstapRing?
    /// `tapRing`, borrowed for the query path: `if let` on an `unowned(unsafe)` optional
    /// retained and released it (nil included, two calls) on every query.
    @exclusivity(unchecked) private var tap: Unmanaged<DnstapRing>?
    @exclusivity(unchecked) private weak var tapSink: DnstapSink?

    public init(store: SnapshotStore, metrics: QueryMetrics = QueryMetrics()) {
        self.store = store
        self.counters = metrics.register()
        self.seenGeneration = store.generation.load(ordering: .acquiring)
        let first = store.load()
        self.snapshot = first
        self.current = Unmanaged.passUnretained(first)
        adopt(snapshot)
    }

    private func adopt(_ s: ServingSnapshot) {
        // The previous snapshot goes to the reaper at the end, after the answerer let go of
        // its router, so this worker never frees a whole zone set between two queries.
        var previous: ServingSnapshot? = snapshot === s ? nil : snapshot
        snapshot = s
        current = Unmanaged.passUnretained(s)
        counters.adopt(model: s.model)
        answerer.adopt(router: s.router, signing: s.signing)
        if s.dnstap !== tapSink || (s.dnstap == nil && tapRing != nil) {
            tapSink = s.dnstap
            tapRing = s.dnstap?.makeRing()
        }
        tap = tapRing.map { Unmanaged.passUnretained($0) }
        store.retired.retire(&previous)
    }

    /// Takes the published snapshot if it moved on: per query, and on an idle worker's tick.
    @inline(__always) public func refresh() {
        let g = store.generation.load(ordering: .acquiring)
        if g != seenGeneration {
            seenGeneration = g
            adopt(store.load())
        }
    }

    public func respond(query: UnsafeRawBufferPointer, client: IPAddress, transport: Transport,
                        response: UnsafeMutableRawBufferPointer) -> Int {
        respond(query: query, client: client, port: 0, local: nil, transport: transport, response: response)
    }

    /// Inlined into the protocol witness the workers call: one call frame fewer per query.
    @inline(__always)
    public func respond(query: UnsafeRawBufferPointer, client: IPAddress, port: UInt16, local: ListenAddress?,
                        transport: Transport, response: UnsafeMutableRawBufferPointer) -> Int {
        refresh()
        return current._withUnsafeGuaranteedRef { s in
            answer(s, query: query, client: client, port: port, local: local, transport: transport, response: response)
        }
    }

    @inline(__always)
    private func answer(_ s: ServingSnapshot, query: UnsafeRawBufferPointer, client: IPAddress, port: UInt16,
                        local: ListenAddress?, transport: Transport, response: UnsafeMutableRawBufferPointer) -> Int {
        // time() reads the vDSO clock: no system call per query.
        let now = UInt32(truncatingIfNeeded: time(nil))
        // Query logging: off is one nil test; on, a sampled query costs two vDSO clock reads
        // and a copy into this worker's ring (no lock, no allocation, no wait).
        var received = timespec()
        var logged = false
        if let t = tap { logged = t._withUnsafeGuaranteedRef { $0.sampleNext(now: now) } }
        if logged { clock_gettime(CLOCK_REALTIME, &received) }
        let a = answerer.respond(query: query, client: client, tcp: transport == .tcp, zones: s.zones,
                                 options: s.options, health: s.health, out: response, now: now)
        var sent = a.length
        if a.outcome.tsigStart >= 0 && sent > 0 {
            // Signed queries (a secondary's SOA probe, say) get signed answers (RFC 8945 5.3).
            sent = QueryTSIG.sign(query: query, response: response, length: sent, limit: answerer.engine.responseLimit,
                                  questionEnd: a.outcome.questionEnd, transfers: s.transfers)
        }
        if transport == .udp, let rrl = s.rateLimiter {
            sent = rrl.apply(a, response: response, client: client, now: now)
        }
        counters.count(a, sent: sent, tcp: transport == .tcp)
        if logged, let tap = tap?.takeUnretainedValue() {
            var done = timespec()
            clock_gettime(CLOCK_REALTIME, &done)
            var h = DnstapRecordHeader()
            h.flags = transport == .tcp ? DnstapRecordHeader.tcp : 0
            h.family = client.isV4 ? 4 : 6
            h.clientHi = client.hi; h.clientLo = client.lo; h.clientPort = port
            if let local {
                h.localHi = local.address.hi; h.localLo = local.address.lo; h.localPort = local.port
            }
            h.querySec = Int64(received.tv_sec); h.queryNsec = Int64(received.tv_nsec)
            h.responseSec = Int64(done.tv_sec); h.responseNsec = Int64(done.tv_nsec)
            h.gslbName = a.gslbName; h.node = a.node; h.endpoint = a.endpoint; h.scope = a.outcome.scope
            tap.push(h, query: query, response: UnsafeRawBufferPointer(rebasing: response[0..<sent]))
        }
        return sent
    }

    public func startTransfer(query: UnsafeRawBufferPointer, client: IPAddress) -> ZoneTransfer? {
        ZoneTransfer.start(query: query, client: client, snapshot: store.load())
    }
}
