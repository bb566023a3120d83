import Config
import Glibc
import Platform
import Logging
import Synchronization

/// What an operator override applies to.
///
///     try monitor.setOverride(.endpoint(3), state: .down, reason: "deploy", expiresIn: 600)
///     try monitor.setOverride(.datacenter("ams"), state: .down, reason: "maintenance")
public enum OverrideTarget: Hashable, Sendable, CustomStringConvertible {
    /// An endpoint by its index in `ConfigModel.endpoints`.
    case endpoint(Int)
    /// Every endpoint of a datacenter, by name.
    case datacenter(String)

    public var description: String {
        switch self {
        case .endpoint(let i): return "endpoint \(i)"
        case .datacenter(let d): return "datacenter \(d)"
        }
    }
}

/// An operator's forced state, shown in every status view.
///
///     for o in monitor.overrides() { print("\(o.target): \(o.state) (\(o.reason))") }
public struct OverrideStatus: Sendable, Equatable {
    public var target: OverrideTarget
    public var state: HealthState
    public var reason: String
    /// Who set it (`user@host` from the CLI, or what the API caller sent); empty when unknown.
    public var author: String = ""
    /// Wall-clock seconds since the epoch when it was set.
    public var setAt: Double
    /// Wall-clock seconds since the epoch when it lapses; nil means until cleared.
    public var expiresAt: Double?

    public init(target: OverrideTarget, state: HealthState, reason: String, author: String = "", setAt: Double, expiresAt: Double?) {
        self.target = target; self.state = state; self.reason = reason
        self.author = author; self.setAt = setAt; self.expiresAt = expiresAt
    }
}

/// One check as the status views show it.
///
///     for c in monitor.status() {
///         print(c.name, c.state, c.lastResult?.reason ?? "-", c.pending ?? "")
///     }
public struct CheckStatus: Sendable {
    public var name: String
    /// A short description of what is probed ("tcp 10.0.0.1:443").
    public var target: String
    /// The checked state after rise/fall (overrides are not applied here; see `overrides`).
    public var state: HealthState
    /// False until the first result (or, for calculated checks, until all members have one).
    public var settled: Bool
    /// Wall-clock seconds since the epoch when `state` began.
    public var since: Double
    /// Seconds `state` has lasted so far.
    public var stateAge: Double
    /// The last attempt: ok, reason (error or status), latency, bounded output.
    public var lastResult: CheckResult?
    /// Wall-clock time of the last attempt.
    public var lastRun: Double?
    public var runs: Int
    /// Attempts that failed, since the monitor started (for metrics).
    public var failures: Int = 0
    /// A change in progress, as "down 1/3" (one failure of the three `fall` needs).
    public var pending: String?
    /// Endpoints that use this check.
    public var endpoints: [Int]
    /// Overrides on those endpoints or their datacenters.
    public var overrides: [OverrideStatus]
}

/// One endpoint as the status views show it.
///
///     let e = monitor.endpointStatus()[0]
///     print(e.checked, "->", e.effective, e.override?.reason ?? "")
public struct EndpointStatus: Sendable {
    public var endpoint: Int
    public var check: String?
    public var datacenter: String?
    /// The state from its check (up when it has none).
    public var checked: HealthState
    /// What the query path sees: the override's state when there is one.
    public var effective: HealthState
    public var override: OverrideStatus?
}

/// A check's state as a reload hands it from the old monitor to the same check of the new
/// one: the state, whether it has settled, and the rise/fall counters as they stand, so a
/// reload neither resets a check nor lets an endpoint that is down answer as up.
///
///     let handed = old.handOver()
///     let m = try HealthMonitor(checks: specs, ..., carried: handed.checks)
public struct CheckCarry: Sendable {
    public var state: HealthState
    public var settled: Bool
    public var pending: HealthState?
    public var pendingCount: Int
    /// Monotonic and wall-clock start of `state`.
    public var since: Double
    public var sinceWall: Double
    public var last: CheckResult?
    public var lastRunWall: Double?
    public var runs: Int
    public var failures: Int
    /// Monotonic time of its last change of state after its first result (nil: none), so a
    /// reload keeps a flapping endpoint suspect.
    public var flippedAt: Double? = nil

    /// A check that restarts (its probe changed) from `state` instead of its `initial`: not
    /// settled, so its first result sets its state directly.
    public static func restart(at state: HealthState) -> CheckCarry {
        CheckCarry(state: state, settled: false, pending: nil, pendingCount: 0, since: monotonicSeconds(), sinceWall: wallNow(),
                   last: nil, lastRunWall: nil, runs: 0, failures: 0)
    }
}

/// What `handOver` returns: every check's state by name, and every endpoint's checked state
/// (by endpoint index of the old configuration), taken at one instant.
public struct HealthHandOver: Sendable {
    public var checks: [String: CheckCarry]
    public var endpointChecked: [HealthState]
}

/// Lateness of check starts (seconds after their due time), for benchmarks and metrics.
///
///     let l = monitor.lateness(); print(l.p99 * 1000, "ms")
public struct LatenessStats: Sendable {
    public var count: Int
    public var p50: Double
    public var p99: Double
    public var max: Double
}

/// Runs health checks on its own threads and publishes an immutable `HealthSnapshot` on
/// every change of an endpoint's effective state.
///
/// Threads: one scheduler sleeps until the next due check and hands it to a pool of
/// `workers` threads (the bound on concurrent checks); checks never run on DNS workers.
/// A check shared by many endpoints runs once per interval. Rise/fall and the degraded rule
/// live here, not in the checkers. The first result of a check sets its state directly (the
/// start-up round); after that a change needs `rise` (better) or `fall` (worse) results in a row.
///
///     let m = try HealthMonitor(checks: specs, endpointChecks: [0: "web"], endpointCount: 2,
///                               logger: logger) { snap in server.publish(snap) }
///     try m.start()
///     _ = m.runInitialRound(timeout: 5)
///     let s = m.snapshot            // or cache it and watch m.generation
///     try m.setOverride(.datacenter("ams"), state: .down, reason: "maintenance", expiresIn: 3600)
///     m.stop()
///
/// Readers: `generation` is an atomic load; a query worker keeps its own reference and takes
/// `snapshot` (a mutex) only when the generation moved (see SWIFT-NOTES.md).
/// `onChange` is called serialized, always with the newest snapshot, on the thread that made
/// the change (a health worker, the scheduler for an expiry, or the caller of `setOverride`);
/// it must not call `setOverride`/`clearOverride`/`stop` (they deliver through the same lock,
/// and `stop` joins the worker that is calling it).
public final class HealthMonitor: Sendable {
    private let lock = Lock()
    private let schedCond: Condition
    private let workCond: Condition
    private let settleCond: Condition
    private let st: LoopState
    private let current: Mutex<HealthSnapshot>
    private let currentGeneration = Atomic<UInt64>(0)
    private let deliverLock = Lock()
    private let delivered: DeliveredBox
    private let logger: Logger
    private let onChange: @Sendable (HealthSnapshot) -> Void
    private let workers: Int
    /// endpoint -> runtime index of its check.
    private let endpointCheck: [Int?]
    private let endpointDC: [String?]
    private let datacenters: Set<String>
    /// Calculated checks in dependency order (members first).
    private let calcOrder: [Int]
    private let nameIndex: [String: Int]
    /// Endpoint names for log lines (indices when absent).
    private let endpointNames: [Int: String]
    /// The checks this monitor runs, by name (a reload compares them to carry state over).
    public let specs: [String: CheckSpec]
    /// One idle connection per distinct host:port of the `watch: true` checks.
    private let watched: [WatchedTarget]

    /// - Parameters:
    ///   - checks: every check, unique names; calculated checks name others.
    ///   - endpointChecks: endpoint index -> check name; endpoints without one are up.
    ///   - endpointCount: `ConfigModel.endpoints.count`.
    ///   - endpointDatacenters: endpoint index -> datacenter name, for datacenter overrides.
    ///   - workers: threads that run checks (the bound on checks in flight).
    ///   - carried: state to start from, by check name (a reload's `handOver`); a check not
    ///     named here starts unsettled at its `initialState`.
    public init(
        checks: [CheckSpec], endpointChecks: [Int: String], endpointCount: Int,
        endpointDatacenters: [Int: String] = [:], endpointNames: [Int: String] = [:], workers: Int = 8, logger: Logger,
        carried: [String: CheckCarry] = [:],
        onChange: @escaping @Sendable (HealthSnapshot) -> Void = { _ in }
    ) throws(HealthError) {
        var index: [String: Int] = [:]
        var runtimes: [CheckRuntime] = []
        let now = monotonicSeconds(), wall = wallNow()
        for spec in checks {
            guard index[spec.name] == nil else { throw HealthError("check \"\(spec.name)\" is defined twice") }
            guard spec.interval > 0, spec.timeout > 0, spec.rise >= 1, spec.fall >= 1 else {
                throw HealthError("check \"\(spec.name)\": interval and timeout must be > 0, rise and fall >= 1")
            }
            index[spec.name] = runtimes.count
            let checker: (any Checker)?
            switch spec.kind {
            case .tcp(let host, let port): checker = TCPChecker(host: host, port: port, source: spec.source)
            case .http(let h):
                do throws(HealthError) { checker = try HTTPChecker(h, source: spec.source) } catch { throw HealthError("check \"\(spec.name)\": \(error.message)") }
                if h.tls && !h.verifyCertificate {
                    logger.warning("health check \"\(spec.name)\": TLS certificate verification is off for \(hostPort(h.host, h.port))")
                }
            case .dns(let server, let port, let name, let type, let rcode, let answer):
                do throws(HealthError) {
                    checker = try DNSChecker(server: server, port: port, name: name, type: type, expectRcode: rcode, expectAnswer: answer,
                                             source: spec.source)
                } catch { throw HealthError("check \"\(spec.name)\": \(error.message)") }
            case .exec(let command):
                do throws(HealthError) { checker = try ExecChecker(command: command) } catch { throw HealthError("check \"\(spec.name)\": \(error.message)") }
            case .file(let path): checker = FileChecker(path: path)
            case .calculated: checker = nil
            }
            let rt = CheckRuntime(spec: spec, checker: checker, now: now, wall: wall)
            if let c = carried[spec.name] { rt.adopt(c) }
            runtimes.append(rt)
        }
        // Calculated members and a dependency order; a cycle is a config error.
        for rt in runtimes {
            guard case .calculated(let names, let minimum) = rt.spec.kind else { continue }
            for n in names {
                guard let i = index[n] else { throw HealthError("calculated check \"\(rt.spec.name)\" names unknown check \"\(n)\"") }
                rt.members.append(i)
            }
            guard minimum >= 0, minimum <= names.count else {
                throw HealthError("calculated check \"\(rt.spec.name)\": minimum \(minimum) is not within 0...\(names.count)")
            }
        }
        var order: [Int] = []
        var mark = [UInt8](repeating: 0, count: runtimes.count) // 0 new, 1 visiting, 2 done
        func visit(_ i: Int, depth: Int) throws(HealthError) {
            if mark[i] == 2 { return }
            guard mark[i] == 0, depth <= runtimes.count else {
                throw HealthError("calculated check \"\(runtimes[i].spec.name)\" depends on itself")
            }
            mark[i] = 1
            for m in runtimes[i].members { try visit(m, depth: depth + 1) }
            mark[i] = 2
            if runtimes[i].checker == nil { order.append(i) }
        }
        for i in runtimes.indices { try visit(i, depth: 0) }

        var epCheck = [Int?](repeating: nil, count: max(0, endpointCount))
        for (ep, name) in endpointChecks {
            guard ep >= 0, ep < endpointCount else { throw HealthError("endpoint \(ep) is out of range 0..<\(endpointCount)") }
            guard let i = index[name] else { throw HealthError("endpoint \(ep) names unknown check \"\(name)\"") }
            epCheck[ep] = i
            runtimes[i].endpoints.append(ep)
        }
        for rt in runtimes { rt.endpoints.sort() }
        var epDC = [String?](repeating: nil, count: max(0, endpointCount))
        for (ep, dc) in endpointDatacenters where ep >= 0 && ep < endpointCount { epDC[ep] = dc }

        self.nameIndex = index
        self.endpointNames = endpointNames
        self.specs = Dictionary(checks.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.calcOrder = order
        self.endpointCheck = epCheck
        self.endpointDC = epDC
        self.datacenters = Set(endpointDatacenters.values)
        self.workers = max(1, workers)
        self.logger = logger
        self.onChange = onChange
        self.schedCond = Condition(lock)
        self.workCond = Condition(lock)
        self.settleCond = Condition(lock)
        self.st = LoopState(runtimes: runtimes)
        self.watched = HealthMonitor.watchedTargets(runtimes, logger: logger)
        self.delivered = DeliveredBox()
        let states = epCheck.map { $0.map { runtimes[$0].state } ?? .up }
        // Carried checks may be failing or flapping already: the first snapshot says so.
        let suspect = Self.suspect(runtimes: runtimes, calcOrder: order, endpointCheck: epCheck, now: now) { _ in false }
        self.current = Mutex(HealthSnapshot(states: states, suspect: suspect, generation: 0))
        st.publishedSuspect = suspect
        st.published = states
        st.unsettled = runtimes.filter { $0.checker != nil && !$0.settled }.count
        _ = lock.withLock { evaluateCalculatedLocked(now: now) }
    }

    // MARK: Reading

    /// The newest snapshot (a mutex read: cache it and compare `generation` on hot paths).
    public var snapshot: HealthSnapshot { current.withLock { $0 } }

    /// Moves on every publication; an atomic load, cheap enough for every query.
    public var generation: UInt64 { currentGeneration.load(ordering: .acquiring) }

    // MARK: Running

    /// Starts the scheduler and the worker pool. First runs are spread over
    /// `min(interval, 1 s)` with jitter so many checks never fire in one burst.
    public func start() throws(HealthError) {
        lock.lock()
        guard !st.started else { lock.unlock(); return }
        st.started = true
        st.stopping = false
        let now = monotonicSeconds()
        for (i, rt) in st.runtimes.enumerated() where rt.checker != nil {
            rt.due = now + Double.random(in: 0..<1) * min(rt.spec.interval, 1.0)
            st.heap.push(rt.due, i)
        }
        lock.unlock()
        var threads: [pthread_t] = []
        do throws(HealthError) {
            threads.append(try spawnThread(name: "health-sched") { [self] in schedulerLoop() })
            for k in 0..<workers {
                threads.append(try spawnThread(name: "health-w\(k)") { [self] in workerLoop() })
            }
            if !watched.isEmpty {
                let w = ConnectionWatcher(targets: watched, logger: logger) { [self] checks in watchFired(checks) }
                try w.start()
                lock.withLock { st.watcher = w }
            }
        } catch {
            lock.withLock { st.threads = threads }
            stop()
            throw error
        }
        lock.withLock { st.threads = threads }
    }

    /// The watched connections of `runtimes`, one per distinct host:port, at most
    /// `WatchLimits.maxSockets` (the loader refuses more; this only guards the bound).
    private static func watchedTargets(_ runtimes: [CheckRuntime], logger: Logger) -> [WatchedTarget] {
        var out: [WatchedTarget] = []
        var at: [WatchTarget: Int] = [:]
        for (i, rt) in runtimes.enumerated() where rt.checker != nil {
            guard let t = rt.spec.watchTarget else { continue }
            if let k = at[t] {
                out[k].checks.append(i)
                out[k].maxDelay = min(out[k].maxDelay, rt.spec.interval)
                out[k].connectTimeout = min(out[k].connectTimeout, rt.spec.timeout)
            } else if out.count < WatchLimits.maxSockets {
                at[t] = out.count
                out.append(WatchedTarget(target: t, checks: [i], maxDelay: rt.spec.interval, connectTimeout: rt.spec.timeout))
            } else {
                logger.warning("health check \"\(rt.spec.name)\": not watched, over \(WatchLimits.maxSockets) watched connections")
            }
        }
        return out
    }

    /// A watched connection closed: run its checks now, and while they fail short of `fall`,
    /// again every `WatchLimits.quickProbeSpacing` (see `finishedLocked`). A check in flight
    /// runs once more when it finishes, since it may have started before the close.
    func watchFired(_ checks: [Int]) {
        lock.withLock {
            guard st.started, !st.stopping else { return }
            let now = monotonicSeconds()
            for i in checks {
                let rt = st.runtimes[i]
                rt.quickProbes = rt.spec.fall
                if rt.running { rt.rerun = true } else { scheduleLocked(i, at: now) }
            }
        }
    }

    /// Moves check `i`'s next run to `t`; its old heap entry goes stale and is skipped.
    private func scheduleLocked(_ i: Int, at t: Double) {
        st.runtimes[i].due = t
        st.heap.push(t, i)
        schedCond.signal()
    }

    /// After a result of a check woken by its watched connection: the rerun or the next
    /// quick probe, if any.
    private func finishedLocked(_ i: Int, ok: Bool) {
        let rt = st.runtimes[i]
        if rt.rerun {
            rt.rerun = false
            scheduleLocked(i, at: monotonicSeconds())
        } else if rt.quickProbes > 0 {
            rt.quickProbes -= 1
            if !ok && rt.state.isUsable && rt.quickProbes > 0 {
                scheduleLocked(i, at: monotonicSeconds() + WatchLimits.quickProbeSpacing)
            } else {
                rt.quickProbes = 0
            }
        }
    }

    /// Tells the threads to stop and returns at once, for a process about to exit: a check
    /// in flight is not waited for (its result is dropped).
    public func stopWithoutWaiting() {
        lock.withLock {
            st.stopping = true
            st.watcher?.requestStop()
            schedCond.broadcast()
            workCond.broadcast()
            settleCond.broadcast()
        }
    }

    /// Stops the threads and waits for them; an attempt in flight finishes first (bounded
    /// by its timeout). The monitor can be started again.
    public func stop() {
        let (threads, watcher): ([pthread_t], ConnectionWatcher?) = lock.withLock {
            st.stopping = true
            let t = (st.threads, st.watcher)
            st.threads = []
            st.watcher = nil
            schedCond.broadcast()
            workCond.broadcast()
            settleCond.broadcast()
            return t
        }
        for t in threads { pthread_join(t, nil) }
        // Outside the lock: the watcher's thread takes it to report a closed connection.
        watcher?.stop()
        lock.withLock {
            st.started = false
            st.heap = DueHeap()
            st.queue.removeAll()
            st.queueHead = 0
            for rt in st.runtimes { rt.running = false; rt.rerun = false; rt.quickProbes = 0 }
        }
    }

    /// For a reload: stops applying results (a result in flight is dropped, the new monitor
    /// measures again) and returns every check's state at this instant, which is also what
    /// this monitor last published. The threads wind down on their own; call `stop` to join
    /// them, or `stop` then `start` to resume this monitor if the reload fails after all.
    public func handOver() -> HealthHandOver {
        stopWithoutWaiting()
        return lock.withLock {
            var checks: [String: CheckCarry] = [:]
            for rt in st.runtimes {
                checks[rt.spec.name] = CheckCarry(state: rt.state, settled: rt.settled, pending: rt.pending, pendingCount: rt.pendingCount,
                                                  since: rt.since, sinceWall: rt.sinceWall, last: rt.last, lastRunWall: rt.lastRunWall,
                                                  runs: rt.runs, failures: rt.failures, flippedAt: rt.flippedAt)
            }
            let checked = endpointCheck.indices.map { effectiveLocked($0).1 }
            return HealthHandOver(checks: checks, endpointChecked: checked)
        }
    }

    /// Starts the loop if needed and blocks until every check has a first result or
    /// `timeout` seconds pass. Checks not settled keep their configured initial state.
    /// Returns true when all settled.
    @discardableResult
    public func runInitialRound(timeout: Double) throws(HealthError) -> Bool {
        try start()
        let deadline = monotonicSeconds() + timeout
        return lock.withLock {
            while st.unsettled > 0 && monotonicSeconds() < deadline && !st.stopping {
                settleCond.wait(until: deadline)
            }
            return st.unsettled == 0
        }
    }

    private func schedulerLoop() {
        lock.lock()
        while !st.stopping {
            let now = monotonicSeconds()
            var dispatched = 0
            while let top = st.heap.peek, top.due <= now {
                st.heap.pop()
                let rt = st.runtimes[top.index]
                // A watch event moved this check's run: the entry for its old time is stale.
                guard top.due == rt.due else { continue }
                let interval = rt.spec.interval
                var next = top.due + (rt.runs == 0 && !rt.running ? interval * Double.random(in: 0.5...1.0) : interval)
                if next <= now { next = now + interval - (now - top.due).truncatingRemainder(dividingBy: interval) }
                if !rt.running {
                    // A check still running from its last slot skips this one: a check never
                    // runs twice at once, and a slow target cannot pile up work.
                    rt.running = true
                    st.queue.append(Job(index: top.index, due: top.due))
                    dispatched += 1
                }
                rt.due = next
                st.heap.push(next, top.index)
            }
            if dispatched == 1 { workCond.signal() } else if dispatched > 1 { workCond.broadcast() }
            if expireOverridesLocked(now: now) {
                let snap = publishLocked()
                lock.unlock()
                deliver(snap)
                lock.lock()
                continue
            }
            var wake = st.heap.peek?.due ?? .infinity
            if let e = st.nextExpiry { wake = min(wake, e) }
            schedCond.wait(until: wake)
        }
        lock.unlock()
    }

    private func workerLoop() {
        lock.lock()
        while true {
            while st.queueHead == st.queue.count && !st.stopping { workCond.wait() }
            if st.stopping { break }
            let job = st.popJob()
            let rt = st.runtimes[job.index]
            lock.unlock()
            let start = monotonicSeconds()
            var result = rt.checker!.run(start: start, deadline: start + rt.spec.timeout)
            lock.lock()
            st.recordLateness(start - job.due)
            rt.running = false
            if st.stopping { break }
            let wasSettled = rt.settled
            // A health drill answers the probe as failed; rise/fall and everything after run as usual.
            let drilled = st.drill?.failsProbe(of: job.index, now: monotonicSeconds()) ?? false
            if drilled {
                result = CheckResult(ok: false, reason: "failed by meridian drill --mode health", latency: result.latency)
                st.drill?.noteFailedProbe(job.index, wall: wallNow())
            }
            let changed = applyLocked(rt, result)
            if changed { st.drill?.noteState(job.index, rt.state, wall: wallNow()) }
            finishedLocked(job.index, ok: result.ok)
            if (changed || !wasSettled) && !calcOrder.isEmpty {
                evaluateCalculatedLocked(now: monotonicSeconds())
            }
            // Published when states changed, and also when only the suspect set did (a first
            // failed probe, a flap window running out); publishLocked returns nil otherwise.
            if let snap = publishLocked() {
                lock.unlock()
                deliver(snap)
                lock.lock()
            }
        }
        lock.unlock()
    }

    // MARK: State machine

    /// Applies one result with rise/fall; returns true when the checked state changed.
    private func applyLocked(_ rt: CheckRuntime, _ r: CheckResult) -> Bool {
        rt.last = r
        rt.lastRunWall = wallNow()
        rt.runs += 1
        if !r.ok { rt.failures += 1 }
        let spec = rt.spec
        var target: HealthState
        if !r.ok {
            target = .down
        } else if let d = spec.degradedAbove, r.latency > d {
            target = .degraded(factor: spec.degradedFactor)
        } else if r.weight < 1 {
            target = .degraded(factor: r.weight)
        } else {
            target = .up
        }
        if case .degraded(let f) = target, f <= 0 { target = .down }
        if !rt.settled {
            rt.settled = true
            st.unsettled -= 1
            settleCond.broadcast()
            rt.pending = nil
            rt.pendingCount = 0
            if target != rt.state { transitionLocked(rt, to: target, reason: r.reason, flip: false); return true }
            return false
        }
        if target == rt.state {
            rt.pending = nil
            rt.pendingCount = 0
            return false
        }
        if rt.pending == target { rt.pendingCount += 1 } else { rt.pending = target; rt.pendingCount = 1 }
        // An operator's state file means exactly what it says: no hysteresis.
        let isFile: Bool = { if case .file = spec.kind { return true } else { return false } }()
        let need = isFile ? 1 : (target.weightFactor < rt.state.weightFactor ? spec.fall : spec.rise)
        guard rt.pendingCount >= need else { return false }
        rt.pending = nil
        rt.pendingCount = 0
        transitionLocked(rt, to: target, reason: r.reason)
        return true
    }

    /// `flip` false for a first result setting the state (not a change seen by anyone yet).
    private func transitionLocked(_ rt: CheckRuntime, to new: HealthState, reason: String, flip: Bool = true) {
        let now = monotonicSeconds()
        let old = rt.state
        let lasted = now - rt.since
        rt.state = new
        if flip { rt.flippedAt = now }
        rt.since = now
        rt.sinceWall = wallNow()
        let eps = rt.endpoints.isEmpty ? "no endpoints" : "endpoints " + rt.endpoints.map { endpointNames[$0] ?? String($0) }.joined(separator: ",")
        if flip { st.noteChange(HealthChange(at: rt.sinceWall, subject: "check \(rt.spec.name) (\(eps))", from: "\(old)", to: "\(new)", reason: reason)) }
        logger.notice("health check \"\(rt.spec.name)\" (\(eps)): \(old) -> \(new) after \(DurationText.format(lasted, style: .milliseconds)): \(reason)")
    }

    /// Recomputes calculated checks from their members' checked states (members first).
    @discardableResult
    private func evaluateCalculatedLocked(now: Double) -> Bool {
        var changed = false
        for i in calcOrder {
            let rt = st.runtimes[i]
            guard case .calculated(_, let minimum) = rt.spec.kind else { continue }
            let healthy = rt.members.filter { st.runtimes[$0].state.isUsable }.count
            let allSettled = rt.members.allSatisfy { st.runtimes[$0].settled }
            let target: HealthState = healthy >= minimum ? .up : .down
            let reason = "\(healthy) of \(rt.members.count) healthy, need \(minimum)"
            rt.last = CheckResult(ok: target == .up, reason: reason, latency: 0)
            rt.settled = allSettled
            // Until every member has a first result the configured initial state stands.
            if target != rt.state && allSettled {
                transitionLocked(rt, to: target, reason: reason)
                changed = true
            }
        }
        return changed
    }

    /// Builds the effective states; when they differ from the last published ones, stores a
    /// new snapshot (under the loop lock, so generations are ordered) and returns it.
    private func publishLocked() -> HealthSnapshot? {
        var states = [HealthState]()
        states.reserveCapacity(endpointCheck.count)
        for ep in endpointCheck.indices { states.append(effectiveLocked(ep).0) }
        let suspect = Self.suspect(runtimes: st.runtimes, calcOrder: calcOrder, endpointCheck: endpointCheck, now: monotonicSeconds()) {
            effectiveLocked($0).2 != nil
        }
        guard states != st.published || suspect != st.publishedSuspect else { return nil }
        st.published = states
        st.publishedSuspect = suspect
        st.generation += 1
        let snap = HealthSnapshot(states: states, suspect: suspect, generation: st.generation)
        current.withLock { $0 = snap }
        currentGeneration.store(st.generation, ordering: .releasing)
        return snap
    }

    /// Per endpoint: its check is failing (settled, still usable, last probe failed: `fall`
    /// not reached yet) or flapping (changed state within the last `fall` x `interval`). A
    /// calculated check is suspect when one of its members is. An endpoint under an
    /// override (`overridden`) is not: the operator fixed its answer.
    static func suspect(runtimes: [CheckRuntime], calcOrder: [Int], endpointCheck: [Int?], now: Double,
                        overridden: (Int) -> Bool) -> [Bool] {
        var check = runtimes.map { rt in
            let failing = rt.settled && rt.state.isUsable && rt.last?.ok == false
            let flapping = rt.flippedAt.map { now - $0 < rt.spec.interval * Double(rt.spec.fall) } ?? false
            return failing || flapping
        }
        // Members come before the checks that use them in `calcOrder`.
        for i in calcOrder where runtimes[i].members.contains(where: { check[$0] }) { check[i] = true }
        return endpointCheck.indices.map { ep in !overridden(ep) && (endpointCheck[ep].map { check[$0] } ?? false) }
    }

    private func effectiveLocked(_ ep: Int) -> (HealthState, HealthState, OverrideStatus?) {
        let checked = endpointCheck[ep].map { st.fleet?[$0] ?? st.runtimes[$0].state } ?? .up
        if let o = st.endpointOverrides[ep] { return (o.status.state, checked, o.status) }
        if let dc = endpointDC[ep], let o = st.dcOverrides[dc] { return (o.status.state, checked, o.status) }
        return (checked, checked, nil)
    }

    /// Calls `onChange` outside the loop lock, serialized, with the newest snapshot and never
    /// an older one after a newer.
    private func deliver(_ snap: HealthSnapshot?) {
        guard snap != nil else { return }
        deliverLock.withLock {
            let newest = current.withLock { $0 }
            guard newest.generation > delivered.generation else { return }
            delivered.generation = newest.generation
            onChange(newest)
        }
    }

    // MARK: Overrides

    /// Forces an endpoint or a datacenter's endpoints to `state` on top of their checks,
    /// published at once. `expiresIn` seconds later the automatic state returns. `setAt`
    /// (wall clock, default now) keeps the original time of an override restored from disk
    /// or carried over by a reload.
    public func setOverride(_ target: OverrideTarget, state: HealthState, reason: String, expiresIn: Double? = nil,
                            author: String = "", setAt: Double? = nil) throws(HealthError) {
        switch target {
        case .endpoint(let i):
            guard i >= 0, i < endpointCheck.count else { throw HealthError("override: endpoint \(i) is out of range 0..<\(endpointCheck.count)") }
        case .datacenter(let d):
            guard datacenters.contains(d) else { throw HealthError("override: unknown datacenter \"\(d)\"") }
        }
        if let e = expiresIn, !(e > 0 && e.isFinite) { throw HealthError("override: expiry must be a finite number of seconds > 0") }
        let now = monotonicSeconds(), wall = wallNow()
        let o = Override(status: OverrideStatus(target: target, state: state, reason: reason, author: author, setAt: setAt ?? wall,
                                                expiresAt: expiresIn.map { wall + $0 }),
                         expires: expiresIn.map { now + $0 })
        let snap: HealthSnapshot? = lock.withLock {
            switch target {
            case .endpoint(let i): st.endpointOverrides[i] = o
            case .datacenter(let d): st.dcOverrides[d] = o
            }
            let until = expiresIn.map { " for \(DurationText.format($0, style: .milliseconds))" } ?? ""
            st.noteChange(HealthChange(at: wall, subject: "override \(targetName(target))", from: "", to: "\(state)\(until)", reason: reason))
            logger.notice("health override \(target): forced \(state)\(until): \(logQuoted(reason))")
            schedCond.signal() // the scheduler's next wake may now be this expiry
            return publishLocked()
        }
        deliver(snap)
    }

    // MARK: Fleet view

    /// Fleet mode: the checks' states as the fleet's quorum decided them (by check name; a
    /// check not in `view` keeps its own state), or nil to go back to this instance's own
    /// observations. Publishes a new snapshot when an endpoint's state changes, exactly as a
    /// check result or an override does.
    public func setFleetView(_ view: [String: HealthState]?) {
        let snap: HealthSnapshot? = lock.withLock {
            var byIndex: [Int: HealthState]? = nil
            if let view {
                var m: [Int: HealthState] = [:]
                for (name, state) in view { if let i = nameIndex[name] { m[i] = state } }
                byIndex = m
            }
            guard byIndex != st.fleet else { return nil }
            st.fleet = byIndex
            return publishLocked()
        }
        deliver(snap)
    }

    /// The fleet's states by check name (nil: this instance decides alone).
    public func fleetView() -> [String: HealthState]? {
        lock.withLock {
            st.fleet.map { f in Dictionary(uniqueKeysWithValues: f.map { (st.runtimes[$0.key].spec.name, $0.value) }) }
        }
    }

    /// Removes an override; returns false when there was none.
    @discardableResult
    public func clearOverride(_ target: OverrideTarget) -> Bool {
        let (had, snap): (Bool, HealthSnapshot?) = lock.withLock {
            let removed: Override?
            switch target {
            case .endpoint(let i): removed = st.endpointOverrides.removeValue(forKey: i)
            case .datacenter(let d): removed = st.dcOverrides.removeValue(forKey: d)
            }
            guard removed != nil else { return (false, nil) }
            st.noteChange(HealthChange(at: wallNow(), subject: "override \(targetName(target))", from: "\(removed!.status.state)", to: "cleared", reason: ""))
            logger.notice("health override \(target): cleared, automatic state again")
            return (true, publishLocked())
        }
        deliver(snap)
        return had
    }

    /// Active overrides.
    /// Starts a health drill: until `stopProbeDrill` (or `expiresIn` seconds), every probe of
    /// the checks of `datacenter`'s endpoints is answered as failed, and the first failed
    /// probe and the state changes of each are recorded. Refused when a drill runs, when the
    /// datacenter's endpoints have no probed check, or when one of those checks also serves
    /// endpoints elsewhere (the drill would take them down too).
    public func startProbeDrill(datacenter: String, expiresIn: Double) throws(HealthError) -> ProbeDrillStatus {
        guard datacenters.contains(datacenter) else { throw HealthError("no datacenter \"\(datacenter)\"") }
        lock.lock(); defer { lock.unlock() }
        if let d = st.drill, d.active { throw HealthError("a health drill of \(d.datacenter) is running already") }
        var checks: [Int] = []
        for (i, rt) in st.runtimes.enumerated() where rt.endpoints.contains(where: { endpointDC[$0] == datacenter }) {
            let outside = rt.endpoints.filter { endpointDC[$0] != datacenter }
            if !outside.isEmpty {
                throw HealthError("check \"\(rt.spec.name)\" also serves \(outside.map { endpointNames[$0] ?? String($0) }.joined(separator: ", ")) outside \(datacenter); a health drill would take them down too")
            }
            if rt.checker == nil {
                throw HealthError("check \"\(rt.spec.name)\" is calculated; drill its members' datacenter instead")
            }
            checks.append(i)
        }
        guard !checks.isEmpty else {
            throw HealthError("no endpoint of \(datacenter) has a health check: only an override takes it out (drill without --mode health)")
        }
        let now = monotonicSeconds()
        st.drill = ProbeDrill(datacenter: datacenter, checks: Set(checks), startedWall: wallNow(), expires: now + expiresIn)
        logger.notice("health drill: probes of \(datacenter) answered as failed for at most \(DurationText.format(expiresIn)) (checks \(checks.map { st.runtimes[$0].spec.name }.joined(separator: ",")))")
        return probeDrillLocked()!
    }

    /// Ends the health drill: probes are run for real again. False when none was running.
    @discardableResult
    public func stopProbeDrill() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard st.drill?.active == true else { return false }
        st.drill?.active = false
        st.drill?.stoppedWall = wallNow()
        logger.notice("health drill of \(st.drill!.datacenter) ended: probes run for real again")
        return true
    }

    /// The health drill running or last run, with what it recorded per check.
    public func probeDrill() -> ProbeDrillStatus? {
        lock.lock(); defer { lock.unlock() }
        return probeDrillLocked()
    }

    private func probeDrillLocked() -> ProbeDrillStatus? {
        guard var d = st.drill else { return nil }
        if d.active && monotonicSeconds() >= d.expires { d.active = false; st.drill = d }
        let checks = d.checks.sorted().map { i -> ProbeDrillStatus.Check in
            let rt = st.runtimes[i]
            return ProbeDrillStatus.Check(check: rt.spec.name, endpoints: rt.endpoints.map { endpointNames[$0] ?? String($0) },
                                          state: "\(rt.state)", firstFailedAt: d.firstFailed[i], downAt: d.down[i],
                                          upAt: d.up[i], interval: rt.spec.interval, timeout: rt.spec.timeout,
                                          fall: rt.spec.fall, rise: rt.spec.rise)
        }
        return ProbeDrillStatus(datacenter: d.datacenter, active: d.active, startedAt: d.startedWall,
                                stoppedAt: d.stoppedWall, checks: checks)
    }

    /// Health changes (check state flips, overrides set and cleared) at or after `since`
    /// (Unix time), oldest first; the monitor keeps the latest `HealthChange.kept`.
    public func changes(since: Double) -> [HealthChange] {
        lock.withLock { st.changes.filter { $0.at >= since } }
    }

    private func targetName(_ t: OverrideTarget) -> String {
        switch t {
        case .endpoint(let i): return "endpoint:" + (endpointNames[i] ?? String(i))
        case .datacenter(let d): return "dc:" + d
        }
    }

    public func overrides() -> [OverrideStatus] {
        let snap: HealthSnapshot? = lock.withLock { expireOverridesLocked(now: monotonicSeconds()) ? publishLocked() : nil }
        deliver(snap)
        return lock.withLock { st.allOverrides.map(\.status) }
    }

    private func expireOverridesLocked(now: Double) -> Bool {
        var changed = false
        for (k, o) in st.endpointOverrides where (o.expires ?? .infinity) <= now {
            st.endpointOverrides[k] = nil
            logger.notice("health override \(o.status.target): expired, automatic state again (was forced \(o.status.state): \(o.status.reason))")
            changed = true
        }
        for (k, o) in st.dcOverrides where (o.expires ?? .infinity) <= now {
            st.dcOverrides[k] = nil
            logger.notice("health override \(o.status.target): expired, automatic state again (was forced \(o.status.state): \(o.status.reason))")
            changed = true
        }
        return changed
    }

    // MARK: Status

    /// Every check: state, since when, last result (reason, latency, output), pending change,
    /// and the overrides on its endpoints.
    public func status() -> [CheckStatus] {
        _ = overrides() // expires lapsed overrides first
        return lock.withLock {
            let now = monotonicSeconds()
            return st.runtimes.map { rt in
                let ovs = st.allOverrides.map(\.status).filter { o in
                    switch o.target {
                    case .endpoint(let i): return rt.endpoints.contains(i)
                    case .datacenter(let d): return rt.endpoints.contains { endpointDC[$0] == d }
                    }
                }
                let need = rt.pending.map { $0.weightFactor < rt.state.weightFactor ? rt.spec.fall : rt.spec.rise }
                return CheckStatus(
                    name: rt.spec.name, target: describe(rt.spec.kind), state: rt.state, settled: rt.settled,
                    since: rt.sinceWall, stateAge: now - rt.since, lastResult: rt.last, lastRun: rt.lastRunWall,
                    runs: rt.runs, failures: rt.failures, pending: rt.pending.map { "\($0) \(rt.pendingCount)/\(need ?? 0)" },
                    endpoints: rt.endpoints, overrides: ovs)
            }
        }
    }

    /// Every endpoint: its check, checked and effective state, and its override.
    public func endpointStatus() -> [EndpointStatus] {
        _ = overrides()
        return lock.withLock {
            endpointCheck.indices.map { ep in
                let (eff, checked, o) = effectiveLocked(ep)
                return EndpointStatus(endpoint: ep, check: endpointCheck[ep].map { st.runtimes[$0].spec.name },
                                      datacenter: endpointDC[ep], checked: checked, effective: eff, override: o)
            }
        }
    }

    /// The status of one check by name.
    public func status(check name: String) -> CheckStatus? {
        guard nameIndex[name] != nil else { return nil }
        return status().first { $0.name == name }
    }

    /// Forgets the lateness samples (a benchmark calls it after warm-up).
    public func resetLateness() {
        lock.withLock {
            st.lateness.removeAll(keepingCapacity: true)
            st.latenessNext = 0
        }
    }

    /// How late checks started relative to their due time, over the last 8192 starts.
    public func lateness() -> LatenessStats {
        var v = lock.withLock { st.lateness }
        guard !v.isEmpty else { return LatenessStats(count: 0, p50: 0, p99: 0, max: 0) }
        v.sort()
        let at = { (q: Double) in v[min(v.count - 1, Int(Double(v.count - 1) * q))] }
        return LatenessStats(count: v.count, p50: at(0.5), p99: at(0.99), max: v.last!)
    }
}

/// A readable description of what a check probes.
public func describe(_ kind: CheckSpec.Kind) -> String {
    switch kind {
    case .tcp(let h, let p): return "tcp \(hostPort(h, p))"
    case .http(let h): return "\(h.tls ? "https" : "http") \(h.method) \(hostPort(h.host, h.port))\(h.path)"
    case .dns(let s, let p, let n, let t, let rc, let a): return "dns \(n) \(t) @\(hostPort(s, p)) expect \(rc)\(a.map { " " + $0 } ?? "")"
    case .exec(let c): return "exec \(c.joined(separator: " "))"
    case .file(let p): return "file \(p)"
    case .calculated(let c, let m): return "calculated \(m) of \(c.joined(separator: ","))"
    }
}

// MARK: - Loop internals

struct Job { var index: Int; var due: Double }

struct Override {
    var status: OverrideStatus
    /// Monotonic deadline.
    var expires: Double?
}

/// Per-check state; every field is guarded by the monitor's lock.
final class CheckRuntime {
    let spec: CheckSpec
    let checker: (any Checker)?
    var members: [Int] = []
    var endpoints: [Int] = []
    var state: HealthState
    var since: Double
    var sinceWall: Double
    var settled = false
    var pending: HealthState? = nil
    var pendingCount = 0
    var last: CheckResult? = nil
    var lastRunWall: Double? = nil
    var runs = 0
    var failures = 0
    /// See `CheckCarry.flippedAt`.
    var flippedAt: Double? = nil
    var running = false
    var due = 0.0
    /// Probes left in the quick sequence after a watch event (0: none).
    var quickProbes = 0
    /// A watch event came while the check was running: run it again when it finishes.
    var rerun = false

    init(spec: CheckSpec, checker: (any Checker)?, now: Double, wall: Double) {
        self.spec = spec; self.checker = checker
        self.state = spec.initialState
        self.since = now; self.sinceWall = wall
    }

    func adopt(_ c: CheckCarry) {
        state = c.state; settled = c.settled
        pending = c.pending; pendingCount = c.pendingCount
        since = c.since; sinceWall = c.sinceWall
        last = c.last; lastRunWall = c.lastRunWall
        runs = c.runs; failures = c.failures
        flippedAt = c.flippedAt
    }
}

/// Everything the loop mutates. @unchecked Sendable: every access holds the monitor's `lock`.
final class LoopState: @unchecked Sendable {
    var runtimes: [CheckRuntime]
    var heap = DueHeap()
    /// Jobs waiting for a worker, FIFO from `queueHead` (no O(n) removeFirst in a burst).
    var queue: [Job] = []
    var queueHead = 0
    var endpointOverrides: [Int: Override] = [:]
    var dcOverrides: [String: Override] = [:]
    var started = false
    var stopping = false
    var published: [HealthState] = []
    var publishedSuspect: [Bool] = []
    /// Fleet mode: each check's state as the quorum of live vantages decided it (by check
    /// index); it replaces the check's own state for its endpoints. nil: this instance's own view.
    var fleet: [Int: HealthState]? = nil
    var generation: UInt64 = 0
    var unsettled = 0
    var threads: [pthread_t] = []
    var watcher: ConnectionWatcher?
    var lateness: [Double] = []
    var latenessNext = 0
    /// The health drill in progress or last run (`startProbeDrill`).
    var drill: ProbeDrill?
    /// The latest health changes, oldest first, at most `HealthChange.kept`.
    var changes: [HealthChange] = []

    func noteChange(_ c: HealthChange) {
        if changes.count >= HealthChange.kept { changes.removeFirst(changes.count - HealthChange.kept + 1) }
        changes.append(c)
    }

    init(runtimes: [CheckRuntime]) { self.runtimes = runtimes }

    var allOverrides: [Override] {
        endpointOverrides.sorted { $0.key < $1.key }.map(\.value) + dcOverrides.sorted { $0.key < $1.key }.map(\.value)
    }

    var nextExpiry: Double? {
        (endpointOverrides.values.compactMap(\.expires) + dcOverrides.values.compactMap(\.expires)).min()
    }

    func popJob() -> Job {
        let j = queue[queueHead]
        queueHead += 1
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        } else if queueHead >= 1024 && queueHead * 2 >= queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        return j
    }

    func recordLateness(_ d: Double) {
        if lateness.count < 8192 { lateness.append(d) } else { lateness[latenessNext] = d }
        latenessNext = (latenessNext + 1) % 8192
    }
}

final class DeliveredBox: @unchecked Sendable {
    // Guarded by the monitor's deliverLock.
    var generation: UInt64 = 0
}

/// A binary min-heap of (due time, check index): the scheduler's next wake in O(log n),
/// so 10,000 checks cost no scan per wake.
struct DueHeap {
    private var items: [(due: Double, index: Int)] = []

    var peek: (due: Double, index: Int)? { items.first }

    mutating func push(_ due: Double, _ index: Int) {
        items.append((due, index))
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard items[i].due < items[p].due else { break }
            items.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() {
        guard !items.isEmpty else { return }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l].due < items[m].due { m = l }
            if r < items.count && items[r].due < items[m].due { m = r }
            if m == i { return }
            items.swapAt(i, m)
            i = m
        }
    }
}

// MARK: - Parsing for the CLI and the control API

/// Parses an operator's state: `up`, `down`, `degraded` (factor 0.5), `degraded:0.3`, or a
/// bare weight in 0...1 (0 is down, 1 is up).
///
///     parseHealthState("degraded:0.3")   // .degraded(factor: 0.3)
public func parseHealthState(_ text: String) -> HealthState? {
    let t = text.lowercased()
    switch t {
    case "up": return .up
    case "down": return .down
    case "degraded": return .degraded(factor: 0.5)
    default:
        let num = t.hasPrefix("degraded:") ? String(t.dropFirst(9)) : t
        guard let w = Double(num), w >= 0, w <= 1 else { return nil }
        return w == 0 ? .down : (w == 1 ? .up : .degraded(factor: w))
    }
}

/// A health drill's state, guarded by the monitor's lock.
struct ProbeDrill {
    var datacenter: String
    var checks: Set<Int>
    var startedWall: Double
    /// Monotonic: the drill ends by itself then, if the drill command died.
    var expires: Double
    var active = true
    var stoppedWall: Double? = nil
    var firstFailed: [Int: Double] = [:]
    var down: [Int: Double] = [:]
    var up: [Int: Double] = [:]

    func failsProbe(of check: Int, now: Double) -> Bool { active && now < expires && checks.contains(check) }

    mutating func noteFailedProbe(_ check: Int, wall: Double) {
        if firstFailed[check] == nil { firstFailed[check] = wall }
    }

    /// Records the first move to down while active, and the first move back up after.
    mutating func noteState(_ check: Int, _ state: HealthState, wall: Double) {
        guard checks.contains(check) else { return }
        if active, state == .down, down[check] == nil { down[check] = wall }
        if !active, state == .up, down[check] != nil, up[check] == nil { up[check] = wall }
    }
}

/// What `GET /drill/health` reports: the health drill and, per check of the datacenter,
/// when its first probe was failed, when it went down and (after the drill) up again, as
/// Unix times.
public struct ProbeDrillStatus: Sendable, Codable, Equatable {
    public struct Check: Sendable, Codable, Equatable {
        public var check: String
        public var endpoints: [String]
        public var state: String
        public var firstFailedAt: Double?
        public var downAt: Double?
        public var upAt: Double?
        public var interval: Double
        public var timeout: Double
        public var fall: Int
        public var rise: Int
    }
    public var datacenter: String
    public var active: Bool
    public var startedAt: Double
    public var stoppedAt: Double?
    public var checks: [Check]
}

/// One entry of the health timeline: a check changing state, an override set or cleared.
public struct HealthChange: Sendable, Equatable {
    /// How many the monitor keeps (a reload starts a new monitor, and a new timeline).
    public static let kept = 500
    /// Unix time.
    public var at: Double
    public var subject: String
    public var from: String
    public var to: String
    public var reason: String
}
