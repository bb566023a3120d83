import CShim
import Foundation
import Health

/// Runs reloads off the signal thread, one at a time, each within a deadline.
///
/// The thread that waits for signals only calls `request()`, which never blocks, so SIGTERM
/// is handled even while a reload is stuck. A coordinator thread runs one reload at a time:
/// requests that arrive during a reload coalesce into one more reload after it. The load
/// itself runs on a thread of its own, because a blocking `open` cannot be interrupted: if it
/// outlives `deadline`, the coordinator abandons it (its result is dropped whenever it
/// comes, `onTimeout` reports it) and is free for the next request. At most
/// `maxAbandoned` abandoned loads may still be running; past that, requests are refused
/// (`onRefused`) rather than piling up blocked threads.
///
///     let r = Reloader(deadline: 60, maxAbandoned: 4, load: { gen in build(gen) },
///                      apply: { result, gen in swap(result) },
///                      onTimeout: { gen in log("reload \(gen) abandoned") }, onRefused: { ... })
///     r.start()
///     r.request()     // from the signal thread
///     r.stop()        // on SIGTERM; does not wait for a reload in progress
final class Reloader<Result: Sendable>: @unchecked Sendable {
    // Every var is guarded by `cond`.
    private let cond = NSCondition()
    private var pending = false
    private var stopped = false
    private var generation: UInt64
    /// The load the coordinator waits for, and its result once it came.
    private var waitingFor: UInt64? = nil
    private var result: Result? = nil
    private var abandoned: Set<UInt64> = []

    private let deadline: Double
    private let maxAbandoned: Int
    private let load: @Sendable (UInt64) -> Result
    private let apply: @Sendable (Result, UInt64) -> Void
    private let onTimeout: @Sendable (UInt64) -> Void
    private let onRefused: @Sendable (Int) -> Void
    private let onLate: @Sendable (UInt64) -> Void

    /// - Parameters:
    ///   - firstGeneration: the generation of the configuration already serving; each reload
    ///     takes the next one.
    ///   - load: builds the new configuration; may block (it runs on its own thread).
    ///   - apply: swaps it in, on the coordinator thread; must not block for long.
    ///   - onTimeout: a load passed the deadline and was abandoned.
    ///   - onRefused: a request was refused because this many abandoned loads still run.
    ///   - onLate: an abandoned load finished; its result was dropped.
    init(firstGeneration: UInt64 = 0, deadline: Double, maxAbandoned: Int,
         load: @escaping @Sendable (UInt64) -> Result, apply: @escaping @Sendable (Result, UInt64) -> Void,
         onTimeout: @escaping @Sendable (UInt64) -> Void, onRefused: @escaping @Sendable (Int) -> Void,
         onLate: @escaping @Sendable (UInt64) -> Void = { _ in }) {
        self.generation = firstGeneration
        self.deadline = deadline; self.maxAbandoned = maxAbandoned
        self.load = load; self.apply = apply
        self.onTimeout = onTimeout; self.onRefused = onRefused; self.onLate = onLate
    }

    func start() {
        let t = Thread { [self] in coordinate() }
        t.name = "reload"
        t.start()
    }

    /// Asks for a reload; returns at once. Requests during a reload make one more reload.
    func request() {
        cond.lock()
        pending = true
        cond.broadcast()
        cond.unlock()
    }

    /// No more reloads: the coordinator exits, and a reload in progress is not applied.
    func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    private func coordinate() {
        cond.lock()
        while true {
            while !pending && !stopped { cond.wait() }
            if stopped { break }
            pending = false
            if abandoned.count >= maxAbandoned {
                let n = abandoned.count
                cond.unlock()
                onRefused(n)
                cond.lock()
                continue
            }
            generation += 1
            let gen = generation
            waitingFor = gen
            result = nil
            // The load runs under SCHED_IDLE, so a query worker on the same CPU takes it over
            // the moment a packet wakes it; if it starves there (busy workers, other
            // processes) it goes back to the default priority (`ThreadPriority.idle`). A nice
            // value alone did not do: at nice 10 a reload starved behind busy workers and
            // other processes (a 70-record zone took up to 0.8 s on a loaded host), and at
            // nice 19 it could pass `deadline` on a saturated server, while the worker still
            // waited for its slices.
            let work = Thread { [self] in
                cshim_name_current_thread("reload-\(gen)")
                finished(gen, ThreadPriority.idle { load(gen) })
            }
            work.name = "reload-\(gen)"
            work.start()
            let until = Date().addingTimeInterval(deadline)
            while result == nil && !stopped && Date() < until { _ = cond.wait(until: until) }
            if stopped { break }
            waitingFor = nil
            if let r = result {
                result = nil
                cond.unlock()
                apply(r, gen)
                cond.lock()
            } else {
                abandoned.insert(gen)
                cond.unlock()
                onTimeout(gen)
                cond.lock()
            }
        }
        waitingFor = nil
        cond.unlock()
    }

    private func finished(_ gen: UInt64, _ r: Result) {
        cond.lock()
        var late = false
        if waitingFor == gen && !stopped {
            result = r
            cond.broadcast()
        } else if abandoned.remove(gen) != nil {
            late = true
        }
        cond.unlock()
        if late { onLate(gen) }
    }
}
