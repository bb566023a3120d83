import CShim
import DNSWire
import Glibc
import Logging
import Synchronization

/// Set once by `DNSServer.stop()`, read by every worker loop.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

/// One UDP worker thread: one SO_REUSEPORT socket per listen address, one responder, one
/// batch of preallocated buffers. It reads a batch with recvmmsg, answers each query into its
/// own send slot and sends the answers with sendmmsg. With one address it blocks in
/// recvmmsg; with several it waits in poll() and then reads each ready socket.
///
/// Ownership: `run` is called on exactly one thread; the sockets and `batch` are closed and
/// freed by `DNSServer` only after that thread was joined. That is why `@unchecked Sendable`
/// is safe.
final class UDPWorker: @unchecked Sendable {
    /// Queries are small; a datagram larger than this is dropped (MSG_TRUNC) rather than
    /// answered from a partial read. 4096 is the largest EDNS buffer size in common use.
    static let receiveBufferSize: Int32 = 4096
    /// A response may be as large as a UDP payload; the responder itself keeps to the size
    /// the client negotiated (RFC 6891 section 6.2.5) or 512 (RFC 1035 section 4.2.1).
    static let sendBufferSize: Int32 = 65535
    /// Datagrams per recvmmsg. About 4% less CPU at ~31 than at 1 (measured here, SWIFT-NOTES).
    static let batchSize: Int32 = 32
    /// How long the worker waits before it checks the stop flag, in case `shutdown` did not
    /// wake it (SO_RCVTIMEO with one socket, the poll timeout with several). Bounds `stop()`.
    static let wakeInterval: Int32 = 250

    let sockets: [(fd: Int32, address: ListenAddress)]
    let batch: OpaquePointer
    let counters = UDPWorkerCounters()
    private let stop: StopFlag
    private let logger: Logger
    private var errorCount: UInt64 = 0

    init(sockets: [(fd: Int32, address: ListenAddress)], stop: StopFlag, logger: Logger) throws(SystemError) {
        guard let b = cshim_batch_new(Self.batchSize, Self.receiveBufferSize, Self.sendBufferSize) else {
            throw SystemError("malloc", errno: ENOMEM, context: "UDP batch")
        }
        self.sockets = sockets; self.batch = b; self.stop = stop; self.logger = logger
    }

    func free() { cshim_batch_free(batch) }

    func run(responder: QueryResponder) {
        if sockets.count == 1 {
            while !stop.isSet {
                serve(0, nonblocking: false, responder: responder)
                responder.refresh()
            }
            return
        }
        var fds = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        while !stop.isSet {
            let r = poll(&fds, nfds_t(fds.count), Self.wakeInterval)
            if r < 0 {
                let e = errno
                if e != EINTR { noteError(SystemError("poll", errno: e, context: "udp")) }
                continue
            }
            responder.refresh()
            if r == 0 || stop.isSet { continue }
            for i in fds.indices where fds[i].revents != 0 {
                serve(i, nonblocking: true, responder: responder)
            }
        }
    }

    /// Reads one batch from socket `index`, answers it and sends the answers.
    @inline(__always)
    private func serve(_ index: Int, nonblocking: Bool, responder: QueryResponder) {
        let fd = sockets[index].fd
        let n = cshim_batch_recv(batch, fd, nonblocking ? 1 : 0)
        if n < 0 {
            let e = errno
            // EAGAIN is the SO_RCVTIMEO tick that lets the loop see the stop flag, or a
            // datagram poll() announced that failed its checksum.
            if e == EINTR || e == EAGAIN || e == EWOULDBLOCK || stop.isSet { return }
            noteError(SystemError("recvmmsg", errno: e, context: "\(sockets[index].address), udp"))
            // A persistent error (ENOMEM, ENOBUFS) must not turn into a busy loop.
            usleep(1000)
            return
        }
        if n == 0 { return }
        UDPWorkerCounters.bump(counters.received, UInt64(n))
        let txCapacity = Int(cshim_batch_tx_capacity(batch))
        // Send slot j's buffer is `txCapacity` bytes at `txBase + j * txStride` (cshim.h).
        let txBase = cshim_batch_tx_buffer(batch, 0)!
        let txStride = Int(cshim_batch_tx_stride(batch))
        let local = sockets[index].address
        var replies: Int32 = 0
        var dropped: UInt64 = 0
        for i in 0..<n {
            // One C call per datagram: its bytes, length and sender (nil: dropped).
            var length: Int32 = 0, family: Int32 = 0, hi: UInt64 = 0, lo: UInt64 = 0, port: UInt16 = 0
            guard let data = cshim_batch_rx_slot(batch, i, &length, &family, &hi, &lo, &port) else {
                dropped += 1
                continue
            }
            let client = ipAddress(family: family, hi: hi, lo: lo)
            let query = UnsafeRawBufferPointer(start: data, count: Int(length))
            let out = UnsafeMutableRawBufferPointer(start: txBase + Int(replies) &* txStride, count: txCapacity)
            let answer = responder.respond(query: query, client: client, port: port, local: local,
                                           transport: .udp, response: out)
            if answer > 0 && answer <= txCapacity {
                cshim_batch_set_reply(batch, replies, i, Int32(answer))
                replies += 1
            } else {
                dropped += 1
            }
        }
        if replies > 0 {
            var firstErrno: Int32 = 0
            let sent = cshim_batch_send(batch, fd, replies, &firstErrno)
            UDPWorkerCounters.bump(counters.sent, UInt64(sent))
            dropped += UInt64(replies - sent)
            if firstErrno != 0 {
                noteError(SystemError("sendmmsg", errno: firstErrno, context: "\(sockets[index].address), udp"))
            }
        }
        if dropped > 0 { UDPWorkerCounters.bump(counters.dropped, dropped) }
    }

    /// Counts every error and logs the 1st, 2nd, 4th, 8th... so a flood of errors cannot
    /// flood the log, while a new problem is still seen at once.
    private func noteError(_ error: SystemError) {
        errorCount += 1
        UDPWorkerCounters.bump(counters.errors, 1)
        if errorCount & (errorCount - 1) == 0 {
            logger.warning("UDP socket error, continuing", metadata: ["error": "\(error)", "count": "\(errorCount)"])
        }
    }
}
