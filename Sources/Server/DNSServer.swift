import CShim
import DNSWire
import Glibc
import Logging
import Synchronization

/// Serves DNS over UDP and TCP on a set of addresses with plain POSIX sockets.
///
/// UDP: `workers` threads, each with its own responder, preallocated batch buffers and its
/// own SO_REUSEPORT socket per address (the kernel spreads clients by 4-tuple hash).
/// TCP: `limits.threads` poll loops (see `TCPLimits`). UDP and TCP share one port per address.
///
///     let server = DNSServer(listen: [try ListenAddress("127.0.0.1:0")], workers: 2,
///                            responderFactory: { MyResponder() }, limits: TCPLimits(),
///                            logger: Logger(label: "dns"))
///     try server.start()
///     print(server.boundAddresses)   // [127.0.0.1:40123]: the port the kernel picked
///     server.stop()
public final class DNSServer: Sendable {
    public let listen: [ListenAddress]
    public let workers: Int
    public let limits: TCPLimits
    private let responderFactory: @Sendable () -> QueryResponder
    private let logger: Logger
    private let stopFlag = StopFlag()
    private let tcpCounters = TCPCounters()
    private let admission: TCPAdmission

    /// Everything `start` created, torn down by `stop`. The threads never touch this.
    private struct Running: @unchecked Sendable {
        var bound: [ListenAddress] = []
        var udp: [UDPWorker] = []
        var tcp: [TCPWorker] = []
        var threads: [JoinableThread] = []
        var socketsBound = false
        var started = false
        var stopped = false
    }
    private let running = Mutex(Running())

    /// - Parameters:
    ///   - workers: UDP threads; 0 or less means one per core.
    ///   - responderFactory: called once on each worker thread; each responder is used by
    ///     that thread only.
    public init(listen: [ListenAddress], workers: Int,
                responderFactory: @escaping @Sendable () -> QueryResponder,
                limits: TCPLimits = TCPLimits(), logger: Logger) {
        self.listen = listen
        self.workers = workers > 0 ? workers : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        self.responderFactory = responderFactory
        self.limits = limits
        self.logger = logger
        self.admission = TCPAdmission(maxTotal: max(1, limits.maxConnections),
                                      maxPerClient: max(1, limits.maxConnectionsPerClient))
    }

    /// The addresses with the ports actually bound (differs from `listen` for port 0).
    /// Empty before `bind` or `start`.
    public var boundAddresses: [ListenAddress] { running.withLock { $0.bound } }

    public var counters: ServerCounters {
        var c = ServerCounters()
        let udp = running.withLock { $0.udp }
        for w in udp {
            c.udpReceived &+= w.counters.received.load(ordering: .relaxed)
            c.udpSent &+= w.counters.sent.load(ordering: .relaxed)
            c.udpDropped &+= w.counters.dropped.load(ordering: .relaxed)
            c.udpErrors &+= w.counters.errors.load(ordering: .relaxed)
        }
        c.tcpAccepted = tcpCounters.accepted.load(ordering: .relaxed)
        c.tcpRejected = tcpCounters.rejected.load(ordering: .relaxed)
        c.tcpQueries = tcpCounters.queries.load(ordering: .relaxed)
        c.tcpAnswered = tcpCounters.answered.load(ordering: .relaxed)
        c.tcpTimeouts = tcpCounters.timeouts.load(ordering: .relaxed)
        c.transfers = [
            "transferred": tcpCounters.transferred.load(ordering: .relaxed),
            "refused": tcpCounters.transferRefused.load(ordering: .relaxed),
            "notauth": tcpCounters.transferNotAuth.load(ordering: .relaxed),
            "formerr": tcpCounters.transferFormErr.load(ordering: .relaxed),
        ]
        c.tcpOpen = admission.open
        return c
    }

    /// Binds every socket without starting a thread, so a server started as root can bind
    /// port 53, drop its privileges and run its first health round before it answers.
    /// On failure nothing stays open and the error names the syscall, errno and address.
    /// `start` calls it when it was not called first. Call at most once.
    public func bind() throws(SystemError) {
        try running.withLock { (r: inout Running) throws(SystemError) in try bindLocked(&r) }
    }

    private func bindLocked(_ r: inout Running) throws(SystemError) {
        precondition(!r.socketsBound, "DNSServer.bind() called twice")
        r.socketsBound = true
        var udpSockets: [[(fd: Int32, address: ListenAddress)]] = Array(repeating: [], count: workers)
        var tcpSockets: [[(fd: Int32, address: ListenAddress)]] = Array(repeating: [], count: max(1, limits.threads))
        do throws(SystemError) {
            for address in listen {
                let (udp, tcp, bound) = try bindAddress(address)
                for (i, fd) in udp.enumerated() { udpSockets[i].append((fd, bound)) }
                for (i, fd) in tcp.enumerated() { tcpSockets[i].append((fd, bound)) }
                r.bound.append(bound)
            }
            for list in udpSockets {
                r.udp.append(try UDPWorker(sockets: list, stop: stopFlag, logger: logger))
            }
            for list in tcpSockets {
                r.tcp.append(try TCPWorker(listeners: list, limits: limits, admission: admission,
                                           counters: tcpCounters, stop: stopFlag, logger: logger))
            }
        } catch {
            let owned = Set(r.udp.flatMap { $0.sockets.map(\.fd) }).union(r.tcp.flatMap { $0.listeners.map(\.fd) })
            for list in udpSockets + tcpSockets { for s in list where !owned.contains(s.fd) { closeSocket(s.fd) } }
            release(&r)
            r.bound = []
            throw error
        }
    }

    /// Binds every socket (unless `bind` did), then starts the threads. On any failure
    /// nothing stays open and the error names the syscall, errno and address. Call once.
    public func start() throws(SystemError) {
        try running.withLock { (r: inout Running) throws(SystemError) in
            precondition(!r.started, "DNSServer.start() called twice")
            if !r.socketsBound { try bindLocked(&r) }
            r.started = true
            let factory = responderFactory
            do throws(SystemError) {
                for (i, w) in r.udp.enumerated() {
                    r.threads.append(try JoinableThread(name: "dns-udp-\(i)") { w.run(responder: factory()) })
                }
                for (i, w) in r.tcp.enumerated() {
                    r.threads.append(try JoinableThread(name: "dns-tcp-\(i)") { w.run(responder: factory()) })
                }
            } catch {
                stopLocked(&r)
                throw error
            }
            logger.info("DNS server listening", metadata: [
                "addresses": "\(r.bound.map(\.description).joined(separator: " "))",
                "udpWorkers": "\(workers)", "tcpThreads": "\(r.tcp.count)",
            ])
        }
    }

    /// Wakes every thread, joins them and closes every socket. Returns within about
    /// `UDPWorker.wakeInterval` (250 ms) even if a wake-up is lost. Safe to call more than once.
    public func stop() {
        running.withLock { stopLocked(&$0) }
    }

    private func stopLocked(_ r: inout Running) {
        guard r.socketsBound, !r.stopped else { return }
        r.stopped = true
        stopFlag.set()
        // shutdown wakes a thread blocked in recvmmsg on Linux (ENOTCONN for UDP is expected).
        for w in r.udp { for s in w.sockets { _ = shutdown(s.fd, Int32(SHUT_RDWR)) } }
        for w in r.tcp { w.wake() }
        for t in r.threads { t.join() }
        r.threads.removeAll()
        release(&r)
    }

    private func release(_ r: inout Running) {
        for w in r.udp {
            for s in w.sockets { closeSocket(s.fd) }
            w.free()
        }
        for w in r.tcp { w.closeAll() }
        r.tcp.removeAll()
        // The UDP workers stay in `r.udp` so `counters` still reports totals after stop.
        r.stopped = true
    }

    // MARK: binding

    /// Binds `workers` UDP sockets and `limits.threads` TCP listeners on one address and port.
    /// With port 0 the first UDP socket picks the port and the rest follow it; if TCP cannot
    /// have the same port (another program has it), everything is closed and retried.
    private func bindAddress(_ address: ListenAddress) throws(SystemError) -> ([Int32], [Int32], ListenAddress) {
        let attempts = address.port == 0 ? 8 : 1
        var lastError = SystemError("bind", errno: EADDRINUSE, context: "\(address)")
        for _ in 0..<attempts {
            var udp: [Int32] = []
            var tcp: [Int32] = []
            do throws(SystemError) {
                var port = address.port
                for _ in 0..<workers {
                    let fd = try makeSocket(ListenAddress(address: address.address, port: port), tcp: false)
                    udp.append(fd)
                    if port == 0 {
                        let p = cshim_local_port(fd)
                        if p < 0 { throw SystemError("getsockname", errno: errno, context: "\(address), udp") }
                        port = UInt16(p)
                    }
                }
                let bound = ListenAddress(address: address.address, port: port)
                for _ in 0..<max(1, limits.threads) {
                    tcp.append(try makeSocket(bound, tcp: true))
                }
                return (udp, tcp, bound)
            } catch {
                for fd in udp + tcp { closeSocket(fd) }
                lastError = error
                if !(address.port == 0 && error.errno == EADDRINUSE) { throw error }
            }
        }
        throw lastError
    }

    private func makeSocket(_ address: ListenAddress, tcp: Bool) throws(SystemError) -> Int32 {
        let proto = tcp ? "tcp" : "udp"
        let context = "\(address), \(proto)"
        let v6 = address.address.isV6
        let family = v6 ? AF_INET6 : AF_INET
        let type = (tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue))
            | Int32(SOCK_CLOEXEC.rawValue) | (tcp ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fd = try retryingEINTR("socket", context: context) { socket(family, type, 0) }
        do throws(SystemError) {
            try setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", context: context)
            if tcp {
                // Restart without waiting out TIME_WAIT connections of the previous process.
                try setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", context: context)
            }
            // A UDP socket bound to a wildcard address must answer from the address each query
            // was sent to, so it asks for that address (PKTINFO) and sends it back as the source.
            // A socket bound to one address already answers from it: skipping the control
            // messages there saves kernel work on every datagram received and sent.
            let wildcard = address.address.hi == 0 && address.address.lo == 0
            if v6 {
                // Keep IPv6 sockets IPv6-only so "0.0.0.0" and "[::]" can both be listed.
                try setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY", context: context)
                if !tcp && wildcard {
                    try setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO", context: context)
                }
            } else if !tcp && wildcard {
                try setIntOption(fd, Int32(IPPROTO_IP), IP_PKTINFO, 1, "IP_PKTINFO", context: context)
            }
            if !tcp {
                // Never trust path MTU information for UDP answers (Linux 3.15's OMIT, made
                // for DNS servers): a forged ICMP "fragmentation needed" could otherwise lower
                // the path MTU to a client and make larger answers leave in fragments, which
                // fragment-spoofing cache poisoning needs (RFC 9715 describes the attacks).
                // With OMIT the kernel sends DF=0 and fragments only above the interface MTU,
                // as gdnsd and BIND set it. Answers fit the size the client offered (at most
                // 1232 by default). The cost: a kernel-chosen IP ID per answer (~2% CPU here).
                if v6 {
                    try setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_MTU_DISCOVER, IPV6_PMTUDISC_OMIT,
                                     "IPV6_MTU_DISCOVER", context: context)
                } else {
                    try setIntOption(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, IP_PMTUDISC_OMIT,
                                     "IP_MTU_DISCOVER", context: context)
                }
            }
            if !tcp && cshim_set_rcvtimeo(fd, UDPWorker.wakeInterval) != 0 {
                throw SystemError("setsockopt(SO_RCVTIMEO)", errno: errno, context: context)
            }
            let bytes = address.address.bytes
            let r = bytes.withUnsafeBufferPointer { cshim_bind(fd, v6 ? 6 : 4, $0.baseAddress, address.port) }
            if r != 0 { throw SystemError("bind", errno: errno, context: context) }
            if tcp {
                // The kernel caps the backlog at net.core.somaxconn.
                if Glibc.listen(fd, 1024) != 0 { throw SystemError("listen", errno: errno, context: context) }
            }
            return fd
        } catch {
            closeSocket(fd)
            throw error
        }
    }
}
