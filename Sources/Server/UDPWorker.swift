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

/// One UDP socket served by one thread: recvmmsg a batch, answer each query into its own
/// send slot, sendmmsg the answers. All buffers live in the C batch, allocated once.
///
/// Ownership: `run` is called on exactly one thread; `fd` and `batch` are closed and freed
/// by `DNSServer` only after that thread was joined. That is why `@unchecked Sendable` is safe.
final class UDPWorker: @unchecked Sendable {
    /// Queries are small; a datagram larger than this is dropped (MSG_TRUNC) rather than
    /// answered from a partial read. 4096 is the largest EDNS buffer size in common use.
    static let receiveBufferSize: Int32 = 4096
    /// A response may be as large as a UDP payload; the responder itself keeps to the size
    /// the client negotiated (RFC 6891 section 6.2.5) or 512 (RFC 1035 section 4.2.1).
    static let sendBufferSize: Int32 = 65535
    /// Datagrams per recvmmsg. About 4% less CPU at ~31 than at 1 (measured here, SWIFT-NOTES).
    static let batchSize: Int32 = 32

    let fd: Int32
    let batch: OpaquePointer
    let listen: ListenAddress
    let counters = UDPWorkerCounters()
    private let stop: StopFlag
    private let logger: Logger

    init(fd: Int32, listen: ListenAddress, stop: StopFlag, logger: Logger) throws(SystemError) {
        guard let b = cshim_batch_new(Self.batchSize, Self.receiveBufferSize, Self.sendBufferSize) else {
            throw SystemError("malloc", errno: ENOMEM, context: "UDP batch for \(listen)")
        }
        self.fd = fd; self.batch = b; self.listen = listen; self.stop = stop; self.logger = logger
    }

    func free() { cshim_batch_free(batch) }

    func run(responder: QueryResponder) {
        let peer = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
        defer { peer.deallocate() }
        let txCapacity = Int(cshim_batch_tx_capacity(batch))
        var errorCount: UInt64 = 0
        while !stop.isSet {
            let n = cshim_batch_recv(batch, fd)
            if n < 0 {
                let e = errno
                // EAGAIN is the SO_RCVTIMEO tick that lets the loop see the stop flag.
                if e == EINTR || e == EAGAIN || e == EWOULDBLOCK { continue }
                if stop.isSet { break }
                errorCount += 1
                UDPWorkerCounters.bump(counters.errors, 1)
                logRateLimited(SystemError("recvmmsg", errno: e, context: "\(listen), udp"), errorCount)
                // A persistent error (ENOMEM, ENOBUFS) must not turn into a busy loop.
                usleep(1000)
                continue
            }
            if n == 0 { continue }
            UDPWorkerCounters.bump(counters.received, UInt64(n))
            var replies: Int32 = 0
            var dropped: UInt64 = 0
            for i in 0..<n {
                if cshim_batch_rx_truncated(batch, i) != 0 { dropped += 1; continue }
                let family = cshim_batch_rx_peer(batch, i, peer, nil)
                if family == 0 { dropped += 1; continue }
                let client = ipAddress(family: family, bytes: peer)
                let query = UnsafeRawBufferPointer(start: cshim_batch_rx_buffer(batch, i),
                                                   count: Int(cshim_batch_rx_length(batch, i)))
                let out = UnsafeMutableRawBufferPointer(start: cshim_batch_tx_buffer(batch, replies),
                                                        count: txCapacity)
                let length = responder.respond(query: query, client: client, transport: .udp, response: out)
                if length > 0 && length <= txCapacity {
                    cshim_batch_set_reply(batch, replies, i, Int32(length))
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
                    errorCount += 1
                    UDPWorkerCounters.bump(counters.errors, 1)
                    logRateLimited(SystemError("sendmmsg", errno: firstErrno, context: "\(listen), udp"), errorCount)
                }
            }
            if dropped > 0 { UDPWorkerCounters.bump(counters.dropped, dropped) }
        }
    }

    /// Logs the 1st, 2nd, 4th, 8th... error, so a flood of ICMP-triggered errors cannot
    /// flood the log, while a new problem is still seen at once.
    private func logRateLimited(_ error: SystemError, _ count: UInt64) {
        if count & (count - 1) == 0 {
            logger.warning("UDP socket error, continuing", metadata: ["error": "\(error)", "count": "\(count)"])
        }
    }
}
