import CShim
import DNSWire
import Glibc
import Logging
import Synchronization

/// Limits for DNS over TCP (RFC 7766). Defaults suit an authoritative server that mostly
/// answers UDP and sees TCP for truncated answers, zone-size checks and some resolvers.
///
///     var limits = TCPLimits()
///     limits.idleTimeout = .seconds(5)
///     limits.maxConnectionsPerClient = 20
public struct TCPLimits: Sendable, Equatable {
    /// Close a connection with nothing to read or write for this long. RFC 7766 section 6.2.3
    /// asks servers to use timeouts "on the order of seconds"; 10 s lets a resolver reuse a
    /// connection for a burst without letting idle clients pin connection slots.
    public var idleTimeout: Duration = .seconds(10)
    /// Longest time from the first byte of a message to its last. Bounds a client that
    /// sends a length prefix and then trickles or stalls (a slowloris).
    public var messageReadTimeout: Duration = .seconds(5)
    /// Open connections across all addresses; past it the newest is accepted and closed
    /// (closing is cheaper for the client to notice than a full backlog).
    public var maxConnections: Int = 1000
    /// Open connections from one client address, so one host cannot take every slot.
    public var maxConnectionsPerClient: Int = 50
    /// Queries answered on one connection before it is closed after the last answer
    /// (RFC 7766 section 6.2.3 lets the server close; the client reconnects).
    public var maxQueriesPerConnection: Int = 1000
    /// Threads running the poll loops. Each has its own SO_REUSEPORT listener per address;
    /// TCP is a small share of DNS traffic, so one is usually enough.
    public var threads: Int = 1

    public init() {}

    public init(idleTimeout: Duration = .seconds(10), messageReadTimeout: Duration = .seconds(5),
                maxConnections: Int = 1000, maxConnectionsPerClient: Int = 50,
                maxQueriesPerConnection: Int = 1000, threads: Int = 1) {
        self.idleTimeout = idleTimeout
        self.messageReadTimeout = messageReadTimeout
        self.maxConnections = maxConnections
        self.maxConnectionsPerClient = maxConnectionsPerClient
        self.maxQueriesPerConnection = maxQueriesPerConnection
        self.threads = threads
    }
}

extension Duration {
    var wholeMilliseconds: Int64 {
        let (s, attos) = components
        return s * 1000 + attos / 1_000_000_000_000_000
    }
}

/// The connection caps, shared by all TCP threads. Taken once per accept and once per
/// close, never per query.
final class TCPAdmission: Sendable {
    private struct State {
        var total = 0
        var perClient: [IPAddress: Int] = [:]
    }
    private let state = Mutex(State())
    let maxTotal: Int
    let maxPerClient: Int

    init(maxTotal: Int, maxPerClient: Int) {
        self.maxTotal = maxTotal; self.maxPerClient = maxPerClient
    }

    func admit(_ client: IPAddress) -> Bool {
        state.withLock { s in
            let mine = s.perClient[client, default: 0]
            guard s.total < maxTotal, mine < maxPerClient else { return false }
            s.total += 1
            s.perClient[client] = mine + 1
            return true
        }
    }

    func release(_ client: IPAddress) {
        state.withLock { s in
            s.total -= 1
            let mine = s.perClient[client, default: 1] - 1
            s.perClient[client] = mine > 0 ? mine : nil
        }
    }

    var open: Int { state.withLock { $0.total } }
}

/// One client connection. Buffers are allocated when the connection opens and grow only
/// when a larger message arrives, so steady-state queries do not allocate.
final class TCPConnection {
    let fd: Int32
    let client: IPAddress
    /// The client's port and the address it connected to (for query logging).
    let port: UInt16
    let local: ListenAddress
    /// Bytes read and not yet consumed, always starting at offset 0.
    var input: UnsafeMutableRawPointer
    var inputCapacity: Int
    var inputLength = 0
    /// Length-prefixed responses not yet written: bytes `outputStart..<outputEnd`.
    var output: UnsafeMutableRawPointer?
    var outputCapacity = 0
    var outputStart = 0
    var outputEnd = 0
    var lastActivity: Int64
    /// When the first byte of the message being read arrived; 0 when between messages.
    var messageStart: Int64 = 0
    var queries = 0
    /// No more reading: the client closed its side, the query cap was hit, or a frame was bad.
    var closeAfterFlush = false
    /// The client sent FIN: nothing more will arrive.
    var peerClosed = false
    /// Answers are out and our FIN is sent; input is read and discarded until the client
    /// closes. Closing with unread input would send RST, which can destroy answers the
    /// client has not read yet (RFC 7766 section 6.2.4 has the server close gracefully).
    var draining = false
    var closed = false
    /// A zone transfer being sent: its messages are produced as the output drains, and
    /// later queries on the connection wait until it is done.
    var transfer: ZoneTransfer?

    /// Room for a typical query with its prefix; grows to 2 + 65535 at most.
    static let initialInput = 1024

    init(fd: Int32, client: IPAddress, port: UInt16, local: ListenAddress, now: Int64) {
        self.fd = fd; self.client = client; self.port = port; self.local = local; self.lastActivity = now
        input = UnsafeMutableRawPointer.allocate(byteCount: Self.initialInput, alignment: 8)
        inputCapacity = Self.initialInput
    }

    deinit {
        input.deallocate()
        output?.deallocate()
    }

    var pendingOutput: Int { outputEnd - outputStart }

    func ensureInput(_ capacity: Int) {
        guard capacity > inputCapacity else { return }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        bigger.copyMemory(from: input, byteCount: inputLength)
        input.deallocate()
        input = bigger
        inputCapacity = capacity
    }

    func appendOutput(_ bytes: UnsafeRawPointer, _ count: Int) {
        if outputStart > 0 && outputStart == outputEnd { outputStart = 0; outputEnd = 0 }
        if outputEnd + count > outputCapacity {
            let live = pendingOutput
            let capacity = max(4096, max(outputCapacity, (live + count) * 2))
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
            if let output, live > 0 { bigger.copyMemory(from: output + outputStart, byteCount: live) }
            output?.deallocate()
            output = bigger
            outputCapacity = capacity
            outputStart = 0
            outputEnd = live
        }
        output!.advanced(by: outputEnd).copyMemory(from: bytes, byteCount: count)
        outputEnd += count
    }
}

/// A poll() loop serving TCP listeners and their connections with non-blocking I/O
/// (RFC 7766): two-byte length framing (section 8), pipelined queries answered in order,
/// partial reads and writes, idle and message-read timeouts, connection caps.
/// A slow client only costs its own buffer, never another client's time.
///
/// Ownership: `run` is called on one thread, which owns every connection; `listeners` and
/// the wake sockets are closed by `DNSServer` after that thread was joined.
final class TCPWorker: @unchecked Sendable {
    let listeners: [(fd: Int32, address: ListenAddress)]
    /// `waker` gets one byte from `stop()` and from a finished signed-view build a transfer
    /// waits for; `wakeRead` is in the poll set.
    let wakeRead: Int32
    private let waker: WakeSocket
    private let limits: TCPLimits
    private let admission: TCPAdmission
    private let counters: TCPCounters
    private let stop: StopFlag
    private let logger: Logger

    /// Stop reading from a connection while this much output waits: a client that
    /// pipelines queries but never reads answers cannot make the server buffer without bound.
    static let outputHighWater = 128 * 1024
    /// Bounds on work per poll round, so one busy client cannot starve the others.
    static let readsPerRound = 4
    static let acceptsPerRound = 64
    /// After accept fails for lack of file descriptors the pending connection stays queued
    /// and the listener stays readable; poll would spin, so stop watching it this long.
    static let acceptPause: Int64 = 100
    /// Longest wait for the client's FIN after ours, before closing anyway.
    static let drainLimit: Int64 = 2000
    /// Longest poll while idle, so the worker lets go of a replaced configuration.
    static let refreshInterval: Int64 = 1000
    private var acceptPausedUntil: Int64 = 0
    /// Where transfer messages are built (2-byte length prefix, then up to 65535 bytes).
    private let transferBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 + 65535, alignment: 8)

    init(listeners: [(fd: Int32, address: ListenAddress)], limits: TCPLimits, admission: TCPAdmission,
         counters: TCPCounters, stop: StopFlag, logger: Logger) throws(SystemError) {
        var pair: [Int32] = [-1, -1]
        let kind = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if socketpair(AF_UNIX, kind, 0, &pair) != 0 {
            throw SystemError("socketpair", errno: errno, context: "TCP wake-up")
        }
        self.wakeRead = pair[0]; self.waker = WakeSocket(pair[1])
        self.listeners = listeners; self.limits = limits; self.admission = admission
        self.counters = counters; self.stop = stop; self.logger = logger
    }

    func wake() { waker.signal() }

    deinit { transferBuffer.deallocate() }

    func closeAll() {
        for l in listeners { closeSocket(l.fd) }
        closeSocket(wakeRead)
        waker.close()
    }

    func run(responder: QueryResponder) {
        // Response scratch: 2-byte length prefix then up to 65535 bytes (RFC 1035 4.2.2).
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 + 65535, alignment: 8)
        defer { scratch.deallocate() }
        let peer = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
        defer { peer.deallocate() }
        var connections: [TCPConnection] = []
        var fds: [pollfd] = []
        connections.reserveCapacity(64)
        fds.reserveCapacity(64)
        let idle = limits.idleTimeout.wholeMilliseconds
        let readLimit = limits.messageReadTimeout.wholeMilliseconds
        let fixed = 1 + listeners.count

        while !stop.isSet {
            fds.removeAll(keepingCapacity: true)
            var now = monotonicMilliseconds()
            var nearest = Int64.max
            let accepting = now >= acceptPausedUntil
            if !accepting { nearest = acceptPausedUntil }
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            for l in listeners { fds.append(pollfd(fd: l.fd, events: accepting ? Int16(POLLIN) : 0, revents: 0)) }
            for c in connections {
                var events: Int16 = 0
                if c.draining || (!c.closeAfterFlush && c.pendingOutput < Self.outputHighWater) { events |= Int16(POLLIN) }
                if c.pendingOutput > 0 { events |= Int16(POLLOUT) }
                fds.append(pollfd(fd: c.fd, events: events, revents: 0))
                nearest = min(nearest, deadline(c, idle: idle, readLimit: readLimit))
            }
            // Idle, it still wakes each second to let go of a configuration a reload replaced.
            responder.refresh()
            let timeout = Int32(clamping: min(max(0, nearest - now), Self.refreshInterval))
            let r = poll(&fds, nfds_t(fds.count), timeout)
            if r < 0 {
                let e = errno
                if e == EINTR { continue }
                logger.error("TCP poll failed, retrying", metadata: ["error": "\(SystemError("poll", errno: e))"])
                usleep(10_000)
                continue
            }
            if fds[0].revents != 0 { drainWake() }
            if stop.isSet { break }
            now = monotonicMilliseconds()

            let existing = connections.count
            for (i, c) in connections.prefix(existing).enumerated() {
                let ev = fds[fixed + i].revents
                if ev == 0 { continue }
                if ev & Int16(POLLOUT) != 0 {
                    flush(c, now: now)
                    // Queries held back while output was over the high-water mark.
                    if !c.closed && c.inputLength >= 2 {
                        answerBuffered(c, responder: responder, scratch: scratch, now: now)
                        flush(c, now: now)
                    }
                }
                if !c.closed && ev & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    readAndAnswer(c, responder: responder, scratch: scratch, now: now)
                }
            }
            for (i, l) in listeners.enumerated() where fds[1 + i].revents != 0 {
                acceptNew(l, into: &connections, peer: peer, now: now)
            }
            waitingTransfers(connections, now: now)
            for c in connections where !c.closed {
                if now >= deadline(c, idle: idle, readLimit: readLimit) {
                    if !c.draining { TCPCounters.bump(counters.timeouts) }
                    close(c)
                }
            }
            if connections.contains(where: { $0.closed }) {
                connections.removeAll(where: { $0.closed })
            }
        }
        for c in connections where !c.closed { close(c) }
    }

    /// When `c` must be closed if nothing happens: the idle timeout counts from the last
    /// byte moved either way; a half-read message also has the message-read limit, unless
    /// the server itself stopped reading because the client is not taking its answers.
    private func deadline(_ c: TCPConnection, idle: Int64, readLimit: Int64) -> Int64 {
        if c.draining { return c.lastActivity + min(idle, Self.drainLimit) }
        var d = c.lastActivity + idle
        if c.messageStart != 0 && c.pendingOutput < Self.outputHighWater { d = min(d, c.messageStart + readLimit) }
        return d
    }

    private func drainWake() {
        var buf = (UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &buf, { recv(wakeRead, $0.baseAddress, $0.count, 0) }) > 0 {}
    }

    private func acceptNew(_ l: (fd: Int32, address: ListenAddress), into connections: inout [TCPConnection],
                           peer: UnsafeMutablePointer<UInt8>, now: Int64) {
        for _ in 0..<Self.acceptsPerRound {
            var family: Int32 = 0
            var port: UInt16 = 0
            let fd = cshim_accept(l.fd, &family, peer, &port)
            if fd < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK { return }
                if e == ECONNABORTED || e == EPROTO { continue }
                // EMFILE and the like: leave the rest in the backlog for a later round.
                acceptPausedUntil = now + Self.acceptPause
                logger.warning("TCP accept failed", metadata: ["error": "\(SystemError("accept4", errno: e, context: "\(l.address), tcp"))"])
                return
            }
            let client = ipAddress(family: family, bytes: peer)
            guard family != 0, admission.admit(client) else {
                TCPCounters.bump(counters.rejected)
                closeSocket(fd)
                continue
            }
            // Responses go out whole; Nagle would hold the second of two pipelined answers.
            _ = cshim_tcp_nodelay(fd)
            TCPCounters.bump(counters.accepted)
            connections.append(TCPConnection(fd: fd, client: client, port: port, local: l.address, now: now))
        }
    }

    private func close(_ c: TCPConnection) {
        guard !c.closed else { return }
        c.closed = true
        closeSocket(c.fd)
        admission.release(c.client)
    }

    private func readAndAnswer(_ c: TCPConnection, responder: QueryResponder,
                               scratch: UnsafeMutableRawBufferPointer, now: Int64) {
        if c.draining {
            drain(c)
            return
        }
        for _ in 0..<Self.readsPerRound {
            if c.closeAfterFlush || c.pendingOutput >= Self.outputHighWater { break }
            if c.inputLength == c.inputCapacity { c.ensureInput(min(2 + 65535, c.inputCapacity * 2)) }
            let space = c.inputCapacity - c.inputLength
            if space == 0 { break }
            let n = recv(c.fd, c.input + c.inputLength, space, 0)
            if n > 0 {
                if c.inputLength == 0 { c.messageStart = now }
                c.inputLength += n
                c.lastActivity = now
                answerBuffered(c, responder: responder, scratch: scratch, now: now)
                if n < space { break }
                continue
            }
            if n == 0 {
                // The client closed its side: answer what is complete, then close (RFC 7766 6.2.4).
                c.closeAfterFlush = true
                c.peerClosed = true
                break
            }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { break }
            close(c)
            return
        }
        flush(c, now: now)
    }

    /// Answers every complete message in the input buffer, in order (RFC 7766 section 7
    /// allows any order; in order is simplest for clients that expect it).
    private func answerBuffered(_ c: TCPConnection, responder: QueryResponder,
                                scratch: UnsafeMutableRawBufferPointer, now: Int64) {
        var pos = 0
        var completed = false
        let base = UnsafeRawPointer(c.input)
        while c.inputLength - pos >= 2 && !c.closeAfterFlush && c.pendingOutput < Self.outputHighWater && c.transfer == nil {
            let length = Int(base.load(fromByteOffset: pos, as: UInt8.self)) << 8
                | Int(base.load(fromByteOffset: pos + 1, as: UInt8.self))
            if length == 0 {
                // A zero-length message cannot hold a DNS header (12 bytes, RFC 1035 4.1.1):
                // the stream is out of sync, so stop reading and close after the answers so far.
                c.closeAfterFlush = true
                pos = c.inputLength
                break
            }
            if c.inputLength - pos < 2 + length {
                c.ensureInput(2 + length)
                break
            }
            completed = true
            TCPCounters.bump(counters.queries)
            let query = UnsafeRawBufferPointer(start: base + pos + 2, count: length)
            if ZoneTransfer.isTransferQuery(query), let x = responder.startTransfer(query: query, client: c.client) {
                c.transfer = x
                // A signed zone's transfer may wait for its view: the build wakes this loop.
                let waker = self.waker
                x.whenViewReady { waker.signal() }
                pos += 2 + length
                c.queries += 1
                if c.queries >= limits.maxQueriesPerConnection { c.closeAfterFlush = true }
                pumpTransfer(c)
                continue
            }
            let out = UnsafeMutableRawBufferPointer(rebasing: scratch[2...])
            let answer = responder.respond(query: query, client: c.client, port: c.port, local: c.local,
                                           transport: .tcp, response: out)
            if answer > 0 && answer <= 65535 {
                scratch[0] = UInt8(truncatingIfNeeded: answer >> 8)
                scratch[1] = UInt8(truncatingIfNeeded: answer)
                c.appendOutput(scratch.baseAddress!, 2 + answer)
                TCPCounters.bump(counters.answered)
            }
            pos += 2 + length
            c.queries += 1
            if c.queries >= limits.maxQueriesPerConnection { c.closeAfterFlush = true }
        }
        if pos > 0 {
            let rest = c.inputLength - pos
            if rest > 0 { c.input.copyMemory(from: c.input + pos, byteCount: rest) }
            c.inputLength = rest
        }
        if c.inputLength == 0 {
            c.messageStart = 0
        } else if completed {
            // The leftover bytes belong to a message that started arriving in this read.
            c.messageStart = now
        }
    }

    private func flush(_ c: TCPConnection, now: Int64) {
        while true {
            while c.pendingOutput > 0, let output = c.output {
                let n = send(c.fd, output + c.outputStart, c.pendingOutput, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    c.outputStart += n
                    c.lastActivity = now
                    continue
                }
                let e = errno
                if n < 0 && e == EINTR { continue }
                if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) { return }
                close(c)
                return
            }
            // Everything queued went out: a transfer in progress adds its next messages.
            guard c.transfer != nil else { break }
            pumpTransfer(c)
            if c.pendingOutput == 0 { break }
        }
        c.outputStart = 0
        c.outputEnd = 0
        if c.closeAfterFlush && c.transfer == nil { beginDrain(c, now: now) }
    }

    /// Transfers waiting for a signed view being built in the background: the connection
    /// counts as active meanwhile (the client is waiting for us, not idle), and its first
    /// messages go out as soon as the view is there.
    private func waitingTransfers(_ connections: [TCPConnection], now: Int64) {
        for c in connections where !c.closed {
            guard let x = c.transfer, c.pendingOutput == 0 else { continue }
            if x.isWaiting {
                c.lastActivity = now
                continue
            }
            pumpTransfer(c)
            flush(c, now: now)
        }
    }

    /// Queues transfer messages until the output reaches the high-water mark or the
    /// transfer is complete (then it is logged and counted).
    private func pumpTransfer(_ c: TCPConnection) {
        let body = UnsafeMutableRawBufferPointer(rebasing: transferBuffer[2...])
        while let x = c.transfer, c.pendingOutput < Self.outputHighWater {
            let n = x.next(into: body)
            // A signed view still being built: the build wakes the loop when it is done,
            // and `waitingTransfers` goes on from here.
            if n < 0 { return }
            guard n > 0 else {
                c.transfer = nil
                finished(x, client: c.client)
                return
            }
            transferBuffer[0] = UInt8(truncatingIfNeeded: n >> 8)
            transferBuffer[1] = UInt8(truncatingIfNeeded: n)
            c.appendOutput(transferBuffer.baseAddress!, 2 + n)
            TCPCounters.bump(counters.answered)
        }
    }

    private func finished(_ x: ZoneTransfer, client: IPAddress) {
        var meta: Logger.Metadata = ["client": "\(client)", "zone": "\(x.zoneName)", "type": "\(x.qtype)"]
        switch x.result {
        case .transferred:
            TCPCounters.bump(counters.transferred)
            meta["records"] = "\(x.records)"
            if x.qtype == .ixfr { meta["ixfr"] = "\(x.style)" }
            meta["ms"] = "\(monotonicMilliseconds() - x.startedAt)"
            logger.info("zone transfer sent", metadata: meta)
            return
        case .refused: TCPCounters.bump(counters.transferRefused)
        case .notAuth: TCPCounters.bump(counters.transferNotAuth)
        case .formErr: TCPCounters.bump(counters.transferFormErr)
        }
        meta["reason"] = "\(x.reason)"
        meta["result"] = "\(x.result.rawValue)"
        logger.warning("zone transfer refused", metadata: meta)
    }

    private func beginDrain(_ c: TCPConnection, now: Int64) {
        guard !c.draining, !c.closed else { return }
        if c.peerClosed || shutdown(c.fd, Int32(SHUT_WR)) != 0 {
            close(c)
            return
        }
        c.draining = true
        c.inputLength = 0
        c.messageStart = 0
        c.lastActivity = now
    }

    /// Discards input until the client's FIN (then closes) or the socket would block.
    private func drain(_ c: TCPConnection) {
        for _ in 0..<Self.readsPerRound {
            let n = recv(c.fd, c.input, c.inputCapacity, 0)
            if n > 0 { continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            close(c)
            return
        }
    }
}

/// The write end of a worker's wake-up socket pair. Safe to signal from any thread at any
/// time: once closed, a late signal (a signed-view build finishing after shutdown) writes
/// nothing, so it can never reach a descriptor number the process has reused.
final class WakeSocket: Sendable {
    private let fd: Mutex<Int32>
    init(_ fd: Int32) { self.fd = Mutex(fd) }

    func signal() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            var b: UInt8 = 1
            // Non-blocking: a full socket already holds a pending wake-up.
            _ = send(fd, &b, 1, Int32(MSG_NOSIGNAL))
        }
    }

    func close() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            closeSocket(fd)
            fd = -1
        }
    }
}
