import CShim
import Config
import Glibc
import Logging
import Platform
import Synchronization

/// One watched connection: where it goes, the checks it wakes, and its pacing.
struct WatchedTarget: Sendable {
    var target: WatchTarget
    /// Runtime indices of the checks that probe this host:port with `watch: true`.
    var checks: [Int]
    /// The longest reconnect delay: the shortest interval of those checks.
    var maxDelay: Double
    /// How long a connect may take: the shortest timeout of those checks.
    var connectTimeout: Double
}

/// Keeps one idle TCP connection open to each watched target and reports, through
/// `onClosed`, the checks of a target whose connection the peer closed.
///
/// When a backend's process dies, its kernel closes the process's sockets at once (FIN, or
/// RST for unread data), so the idle connection becomes readable with end-of-stream or an
/// error long before the next probe is due. A silent network failure closes nothing; it is
/// still found by the probes, through interval and timeout.
///
/// One thread runs one `poll` over every watched socket and a wake-up pipe. Per target it
/// is a small state machine: idle (reconnect at `nextAttempt`) -> connecting (non-blocking
/// connect, bounded by the checks' timeout) -> open (POLLIN | POLLRDHUP). From open, end of
/// stream, an error, a hang-up or any data (nothing is ever sent, so a byte on the idle
/// connection is unexpected, e.g. a server's "408" before it closes) counts as closed.
/// Closing and failed connects back off (`WatchLimits`). The thread owns every watched
/// socket and closes them all when it ends; `stop` joins it, so a stopped watcher holds no
/// descriptor but its pipe, which `stop` closes too.
///
///     let w = ConnectionWatcher(targets: targets, logger: logger) { checks in monitor.watchFired(checks) }
///     try w.start()
///     w.stop()
final class ConnectionWatcher: @unchecked Sendable {
    // @unchecked: `thread` and the pipe are set by `start` and read by `stop`, both called
    // by the monitor under its own rules (start before stop, never concurrently); the loop's
    // state lives on the watcher thread only.
    private let targets: [WatchedTarget]
    private let logger: Logger
    private let onClosed: @Sendable ([Int]) -> Void
    private let stopping = Atomic<Bool>(false)
    private var pipeFDs: [Int32] = [-1, -1]
    private var thread: pthread_t?

    init(targets: [WatchedTarget], logger: Logger, onClosed: @escaping @Sendable ([Int]) -> Void) {
        self.targets = targets
        self.logger = logger
        self.onClosed = onClosed
    }

    func start() throws(HealthError) {
        var fds: [Int32] = [-1, -1]
        guard cshim_pipe_cloexec(&fds) == 0 else { throw HealthError("watch: pipe2: \(errnoText(errno))") }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        pipeFDs = fds
        raiseDescriptorLimit(for: targets.count)
        do throws(HealthError) {
            let readEnd = fds[0]
            thread = try spawnThread(name: "health-watch") { [self] in loop(wake: readEnd) }
        } catch {
            for fd in fds { close(fd) }
            pipeFDs = [-1, -1]
            throw error
        }
    }

    /// Asks the thread to end (it closes its sockets on the way out) without waiting.
    func requestStop() {
        stopping.store(true, ordering: .releasing)
        if pipeFDs[1] >= 0 {
            var b: UInt8 = 1
            _ = write(pipeFDs[1], &b, 1)
        }
    }

    /// Ends the thread, waits for it, and closes the pipe.
    func stop() {
        requestStop()
        if let t = thread { pthread_join(t, nil) }
        thread = nil
        for fd in pipeFDs where fd >= 0 { close(fd) }
        pipeFDs = [-1, -1]
    }

    private struct Conn {
        var fd: Int32 = -1
        var connecting = false
        /// Monotonic: the connect's deadline while connecting, when it opened while open.
        var since = 0.0
        var nextAttempt: Double
        var delay = WatchLimits.firstReconnectDelay
    }

    private func loop(wake: Int32) {
        let start = monotonicSeconds()
        // First connects spread over up to 1 s, as the monitor spreads first probes.
        var conns = targets.map { Conn(nextAttempt: start + Double.random(in: 0..<1) * min($0.maxDelay, 1)) }
        var fds: [pollfd] = []
        var owners: [Int] = []
        fds.reserveCapacity(targets.count + 1)
        owners.reserveCapacity(targets.count)
        // Each pass handles due connects, timers and ready sockets; it ends on stop.
        while !stopping.load(ordering: .acquiring) {
            var now = monotonicSeconds()
            var wakeAt = Double.infinity
            for i in conns.indices {
                if conns[i].fd < 0 && conns[i].nextAttempt <= now { open(i, &conns, now: now) }
                if conns[i].connecting && conns[i].since <= now { failed(i, &conns, now: now, why: "connect timed out") }
                if conns[i].fd < 0 { wakeAt = min(wakeAt, conns[i].nextAttempt) }
                else if conns[i].connecting { wakeAt = min(wakeAt, conns[i].since) }
            }
            fds.removeAll(keepingCapacity: true)
            owners.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0))
            for i in conns.indices where conns[i].fd >= 0 {
                let events = conns[i].connecting ? Int16(POLLOUT) : Int16(POLLIN) | pollReadHangUp
                fds.append(pollfd(fd: conns[i].fd, events: events, revents: 0))
                owners.append(i)
            }
            let waitMs = wakeAt.isFinite ? Int32(max(0, min((wakeAt - now) * 1000, 3_600_000)).rounded(.up)) : -1
            let rc = poll(&fds, nfds_t(fds.count), waitMs)
            if rc < 0 {
                if errno == EINTR { continue }
                logger.error("health watch: poll: \(errnoText(errno)); watched connections stop")
                break
            }
            if rc == 0 { continue }
            if fds[0].revents != 0 { drain(wake) }
            now = monotonicSeconds()
            for k in 1..<fds.count where fds[k].revents != 0 {
                let i = owners[k - 1]
                if conns[i].connecting {
                    if let f = connectError(conns[i].fd, label: targets[i].target.description) {
                        failed(i, &conns, now: now, why: f.message)
                    } else {
                        conns[i].connecting = false
                        conns[i].since = now
                    }
                } else if let why = closedReason(conns[i].fd, revents: fds[k].revents) {
                    closed(i, &conns, now: now, why: why)
                }
            }
        }
        for c in conns where c.fd >= 0 { close(c.fd) }
    }

    private func open(_ i: Int, _ conns: inout [Conn], now: Double) {
        let t = targets[i].target
        let addr: SocketAddress
        // A name is looked up here, on the watcher thread (an address literal never blocks).
        switch resolveAddress(host: t.host, port: t.port, datagram: false) {
        case .failure(let f): failed(i, &conns, now: now, why: f.message); return
        case .success(let a): addr = a
        }
        switch startConnect(addr, source: sourceAddress(t.source), label: t.description) {
        case .failure(let f): failed(i, &conns, now: now, why: f.message)
        case .success(let (fd, connected)):
            conns[i].fd = fd
            conns[i].connecting = !connected
            conns[i].since = connected ? now : now + targets[i].connectTimeout
        }
    }

    /// A connect that did not complete: try again later, each time later.
    private func failed(_ i: Int, _ conns: inout [Conn], now: Double, why: String) {
        if conns[i].fd >= 0 { close(conns[i].fd) }
        conns[i].fd = -1
        conns[i].connecting = false
        conns[i].nextAttempt = now + conns[i].delay
        conns[i].delay = min(conns[i].delay * 2, max(targets[i].maxDelay, WatchLimits.firstReconnectDelay))
        logger.debug("health watch \(targets[i].target): \(why); next attempt in \(DurationText.format(conns[i].nextAttempt - now, style: .milliseconds))")
    }

    /// An open connection the peer closed: wake its checks, then reconnect with backoff
    /// (from the start of the sequence when it had stayed open for an interval).
    private func closed(_ i: Int, _ conns: inout [Conn], now: Double, why: String) {
        if now - conns[i].since >= targets[i].maxDelay { conns[i].delay = WatchLimits.firstReconnectDelay }
        logger.info("health watch \(targets[i].target): \(why); probing now")
        failed(i, &conns, now: now, why: why)
        onClosed(targets[i].checks)
    }

    private func drain(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 64)
        // Bounded: the pipe holds at most a few bytes (one per stop request).
        for _ in 0..<16 where read(fd, &buf, buf.count) > 0 {}
    }
}

/// POLLRDHUP (Linux 2.6.17): the peer shut down its side. Glibc exports it only under
/// _GNU_SOURCE, so its value from <bits/poll.h>.
private let pollReadHangUp = Int16(0x2000)

/// Why an idle watched connection with `revents` counts as closed, or nil when it is still
/// open (a spurious wake-up).
private func closedReason(_ fd: Int32, revents: Int16) -> String? {
    var b: UInt8 = 0
    let n = recv(fd, &b, 1, Int32(MSG_DONTWAIT))
    if n == 0 { return "connection closed by the peer" }
    if n > 0 { return "unexpected data on the idle connection" }
    let e = errno
    if e != EAGAIN && e != EINTR { return "connection failed: \(errnoText(e))" }
    if revents & (Int16(POLLHUP) | Int16(POLLERR) | pollReadHangUp) != 0 { return "connection hung up" }
    return nil
}

/// Raises the soft limit on open descriptors so `watched` sockets fit twice over (the old
/// and the new monitor's during a reload) beside the server's own; never lowers it, never
/// above the hard limit.
private func raiseDescriptorLimit(for watched: Int) {
    var lim = rlimit()
    guard watched > 0, getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return }
    let wanted = rlim_t(2 * watched + 1024)
    guard lim.rlim_cur < wanted else { return }
    lim.rlim_cur = min(wanted, lim.rlim_max)
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
}
