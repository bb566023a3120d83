import Config
import DNSWire
import Glibc
import Platform

// Small POSIX helpers for the health loop: clocks, a mutex with condition variables,
// threads, and sockets with deadlines. Every blocking call here is bounded by a deadline
// on the monotonic clock, so a dead peer can hold a worker only as long as its timeout.

/// Seconds since the Unix epoch, for status views only.
func wallNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

/// A pthread mutex with condition variables on the monotonic clock. `Synchronization.Mutex`
/// has no condition variable, and the loop needs to sleep until the next due check.
/// Safe to share: the pthread objects live at stable heap addresses and are used only
/// through pthread calls.
final class Lock: @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }
    @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A condition variable bound to a `Lock`; `wait` must be called with the lock held.
final class Condition: @unchecked Sendable {
    let cond: UnsafeMutablePointer<pthread_cond_t>
    let lock: Lock
    init(_ lock: Lock) {
        self.lock = lock
        cond = .allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }
    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }
    func wait() { pthread_cond_wait(cond, lock.mutex) }
    /// Waits until signalled or until `deadline` (monotonic seconds); spurious wake-ups are
    /// possible, so callers re-check their predicate.
    func wait(until deadline: Double) {
        // Beyond 10^12 s (31,700 years) is "never"; it also keeps Int(deadline) from trapping.
        guard deadline.isFinite, deadline < 1e12 else { wait(); return }
        var ts = timespec()
        let whole = deadline.rounded(.down)
        ts.tv_sec = Int(whole)
        ts.tv_nsec = Int((deadline - whole) * 1e9)
        pthread_cond_timedwait(cond, lock.mutex, &ts)
    }
    func signal() { pthread_cond_signal(cond) }
    func broadcast() { pthread_cond_broadcast(cond) }
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Starts a named OS thread (the health loop must never run on the DNS workers or on a
/// cooperative-pool thread, where a blocking check would starve other tasks).
func spawnThread(name: String, _ body: @escaping @Sendable () -> Void) throws(HealthError) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { p in
        let b = Unmanaged<ThreadBody>.fromOpaque(p!).takeRetainedValue()
        b.body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw HealthError("pthread_create: \(errnoText(rc))")
    }
    return t
}

/// Resolves `host` (an address literal or a name) to its first address. Name lookups block,
/// which is why checks run on the health pool and never on the DNS workers.
func resolveAddress(host: String, port: UInt16, datagram: Bool) -> Result<SocketAddress, CheckFailure> {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV
    var res: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &res)
    guard rc == 0, let first = res else {
        return .failure(CheckFailure(phase: "resolve", "resolve \(host): \(String(cString: gai_strerror(rc)))"))
    }
    defer { freeaddrinfo(res) }
    guard let ai = first.pointee.ai_addr, let out = SocketAddress(copying: ai, length: first.pointee.ai_addrlen) else {
        return .failure(CheckFailure(phase: "resolve", "resolve \(host): no usable address"))
    }
    return .success(out)
}

/// Why one check attempt failed: the phase it was in (for "timeout during tls handshake")
/// and a message naming the syscall or the protocol rule.
struct CheckFailure: Error, Sendable {
    var phase: String
    var message: String
    init(phase: String, _ message: String) { self.phase = phase; self.message = message }
    static func timeout(_ phase: String, after t: Double) -> CheckFailure {
        CheckFailure(phase: phase, "timeout after \(DurationText.format(t, style: .milliseconds)) during \(phase)")
    }
}

enum WaitOutcome { case ready, timeout, failed(Int32) }

/// Polls one descriptor until `events` are ready or `deadline` passes; retries EINTR.
func waitFor(_ fd: Int32, events: Int16, deadline: Double) -> WaitOutcome {
    while true {
        let left = deadline - monotonicSeconds()
        if left <= 0 { return .timeout }
        var p = pollfd(fd: fd, events: events, revents: 0)
        let rc = poll(&p, 1, Int32(min(left * 1000, 3_600_000).rounded(.up)))
        if rc > 0 { return .ready }
        if rc == 0 { continue }
        if errno == EINTR { continue }
        return .failed(errno)
    }
}

/// Opens a non-blocking TCP connection, waiting at most until `deadline`
/// (states: socket -> connecting -> connected, as gdnsd's tcp_connect does).
func connectTCP(_ addr: SocketAddress, source: SocketAddress? = nil, deadline: Double, start: Double, label: String) -> Result<Int32, CheckFailure> {
    let fd: Int32
    switch startConnect(addr, source: source, label: label) {
    case .failure(let f): return .failure(f)
    case .success(let (s, done)):
        if done { return .success(s) }
        fd = s
    }
    switch waitFor(fd, events: Int16(POLLOUT), deadline: deadline) {
    case .timeout:
        close(fd)
        return .failure(.timeout("connect", after: monotonicSeconds() - start))
    case .failed(let e):
        close(fd)
        return .failure(CheckFailure(phase: "connect", "poll: \(errnoText(e))"))
    case .ready:
        if let f = connectError(fd, label: label) {
            close(fd)
            return .failure(f)
        }
        return .success(fd)
    }
}

/// The first step of a non-blocking connect: a close-on-exec socket and `connect`. Returns
/// the socket and whether it is already connected; otherwise the caller waits for POLLOUT
/// and asks `connectError`. On failure the socket is closed.
func startConnect(_ addr: SocketAddress, source: SocketAddress? = nil, label: String) -> Result<(fd: Int32, connected: Bool), CheckFailure> {
    let fd = socket(addr.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return .failure(CheckFailure(phase: "connect", "socket: \(errnoText(errno))")) }
    if let f = bindSource(fd, source, to: addr) { close(fd); return .failure(f) }
    let rc = addr.withSockaddr { connect(fd, $0, $1) }
    if rc == 0 { return .success((fd, true)) }
    let e = errno
    if e == EINPROGRESS { return .success((fd, false)) }
    close(fd)
    return .failure(CheckFailure(phase: "connect", "connect \(label): \(errnoText(e))"))
}

/// A check's `source:` as a socket address (port 0), nil for none; the loader validated it.
func sourceAddress(_ text: String?) -> SocketAddress? {
    guard let text, let ip = IPAddress(text) else { return nil }
    return SocketAddress(isV4: ip.isV4, hi: ip.hi, lo: ip.lo, port: 0)
}

/// Binds `fd` to the check's source address before it connects (nil: nothing to do, or the
/// failure: a source of the other family than the target, or one this host does not have).
func bindSource(_ fd: Int32, _ source: SocketAddress?, to target: SocketAddress) -> CheckFailure? {
    guard let source else { return nil }
    guard source.family == target.family else {
        return CheckFailure(phase: "connect", "source address is not of the target's address family")
    }
    guard source.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
        return CheckFailure(phase: "connect", "bind source: \(errnoText(errno))")
    }
    return nil
}

/// The outcome of a connect that `poll` reported writable (SO_ERROR), nil when connected.
func connectError(_ fd: Int32, label: String) -> CheckFailure? {
    var err: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { err = errno }
    return err == 0 ? nil : CheckFailure(phase: "connect", "connect \(label): \(errnoText(err))")
}

/// "host:port", with brackets around an IPv6 literal.
func hostPort(_ host: String, _ port: UInt16) -> String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
}

/// The first address of `host` for a TCP connection, or why there is none (the fleet's
/// etcd client resolves its endpoints with it, on its own thread).
public func resolveTCPAddress(host: String, port: UInt16) -> Result<SocketAddress, HealthError> {
    switch resolveAddress(host: host, port: port, datagram: false) {
    case .success(let a): return .success(a)
    case .failure(let f): return .failure(HealthError(f.message))
    }
}
