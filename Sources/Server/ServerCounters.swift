import Synchronization

/// A point-in-time copy of the socket layer's counters, for metrics and tests.
///
///     let c = server.counters
///     print(c.udpReceived, c.udpSent, c.tcpOpen)
public struct ServerCounters: Sendable, Equatable {
    /// UDP datagrams read from the sockets.
    public var udpReceived: UInt64 = 0
    /// UDP responses the kernel accepted.
    public var udpSent: UInt64 = 0
    /// UDP queries not answered: the responder returned 0, the datagram was truncated on
    /// receive, or the kernel refused the response.
    public var udpDropped: UInt64 = 0
    /// Socket errors on UDP receive or send (each one is logged, the worker carries on).
    public var udpErrors: UInt64 = 0
    /// TCP connections accepted and kept.
    public var tcpAccepted: UInt64 = 0
    /// TCP connections accepted and closed at once because a connection cap was reached.
    public var tcpRejected: UInt64 = 0
    /// TCP connections open now.
    public var tcpOpen: Int = 0
    /// Complete TCP query messages read.
    public var tcpQueries: UInt64 = 0
    /// TCP responses queued for sending.
    public var tcpAnswered: UInt64 = 0
    /// TCP connections closed by the idle or message-read timeout.
    public var tcpTimeouts: UInt64 = 0
    /// Zone transfer requests (AXFR, IXFR) by how they ended: transferred, refused,
    /// notauth (TSIG errors), formerr.
    public var transfers: [String: UInt64] = [:]

    public init() {}
}

/// Counters owned by one UDP worker thread. Only that thread writes them, so an update is a
/// relaxed load and store (no locked instruction, no cache-line sharing between workers);
/// readers on other threads see a recent value.
final class UDPWorkerCounters: Sendable {
    let received = Atomic<UInt64>(0)
    let sent = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)

    @inline(__always) static func bump(_ a: borrowing Atomic<UInt64>, _ n: UInt64) {
        a.store(a.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }
}

/// TCP counters, shared by the few TCP threads; updates are per connection or per message,
/// so an atomic add is cheap enough.
final class TCPCounters: Sendable {
    let accepted = Atomic<UInt64>(0)
    let rejected = Atomic<UInt64>(0)
    let queries = Atomic<UInt64>(0)
    let answered = Atomic<UInt64>(0)
    let timeouts = Atomic<UInt64>(0)
    let transferred = Atomic<UInt64>(0)
    let transferRefused = Atomic<UInt64>(0)
    let transferNotAuth = Atomic<UInt64>(0)
    let transferFormErr = Atomic<UInt64>(0)

    @inline(__always) static func bump(_ a: borrowing Atomic<UInt64>) {
        a.wrappingAdd(1, ordering: .relaxed)
    }
}
