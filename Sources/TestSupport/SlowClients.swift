#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Platform

/// TCP clients that hold server connections open by sending very slowly (slowloris), for
/// black-box tests of connection limits and deadlines. Each connection can come from its
/// own loopback source address (Linux routes all of 127.0.0.0/8 to `lo`), so per-address
/// limits can be exercised from one machine.
///
///     let slow = try SlowClients(port: controlPort, sources: Array(repeating: "127.0.0.2", count: 8))
///     defer { slow.closeAll() }
///     slow.trickle(bytes: Array("GET / HTTP/1.1\r\n".utf8), every: .seconds(1), for: .seconds(7))
///     print(slow.closedAfter)   // when the server closed each connection, nil while open
///
/// Not thread-safe: drive it from one thread.
public final class SlowClients {
    private var fds: [Int32]
    private let opened: ContinuousClock.Instant
    /// Per connection, in opening order: how long after opening the server closed it
    /// (EOF, reset, or a reply followed by EOF), nil while it is still open.
    public private(set) var closedAfter: [Duration?]
    /// Per connection: the bytes the server sent before closing (an error reply, say).
    public private(set) var replies: [[UInt8]]

    /// Connects one client per entry of `sources` (a loopback IPv4 source address each), in order.
    public init(host: String = "127.0.0.1", port: UInt16, sources: [String]) throws {
        guard let server = SocketAddress(host: host, port: port) else { throw SocketError.badAddress(host) }
        fds = []
        closedAfter = []
        replies = []
        opened = .now
        for src in sources {
            guard let local = SocketAddress(host: src, port: 0) else { closeAll(); throw SocketError.badAddress(src) }
            let fd = socket(server.family, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { closeAll(); throw SocketError.system("socket", errno) }
            setTimeout(fd, SO_SNDTIMEO, milliseconds: 2000)
            guard local.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
                let e = errno; sysClose(fd); closeAll(); throw SocketError.system("bind \(src)", e)
            }
            guard server.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
                let e = errno; sysClose(fd); closeAll(); throw SocketError.system("connect", e)
            }
            fds.append(fd)
            closedAfter.append(nil)
            replies.append([])
        }
    }

    deinit { closeAll() }

    public var openCount: Int { closedAfter.filter { $0 == nil }.count }

    /// Sends the next byte of `bytes` on every open connection each `every`, and watches for
    /// the server closing them, for `duration` or until all are closed (or `until` says stop,
    /// checked at each tick). Bounded by `duration`.
    public func trickle(bytes: [UInt8], every: Duration, for duration: Duration, until: () -> Bool = { false }) {
        let end = opened + duration
        var next = ContinuousClock.now
        var index = 0
        while ContinuousClock.now < end && openCount > 0 && !until() {
            if ContinuousClock.now >= next, !bytes.isEmpty {
                let b = bytes[index % bytes.count]
                index += 1
                for (i, fd) in fds.enumerated() where closedAfter[i] == nil {
                    var byte = b
                    if send(fd, &byte, 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) < 0 && errno != EAGAIN { markClosed(i) }
                }
                next = next + every
            }
            watch(milliseconds: max(1, min(milliseconds(next - ContinuousClock.now), milliseconds(end - ContinuousClock.now))))
        }
    }

    /// Waits up to `milliseconds` for the server to close or answer connections.
    public func watch(milliseconds ms: Int) {
        let open = fds.indices.filter { closedAfter[$0] == nil }
        guard !open.isEmpty else { return }
        var pfds = open.map { pollfd(fd: fds[$0], events: Int16(POLLIN), revents: 0) }
        guard poll(&pfds, nfds_t(pfds.count), Int32(ms)) > 0 else { return }
        var buf = [UInt8](repeating: 0, count: 4096)
        for (k, p) in pfds.enumerated() where p.revents != 0 {
            let i = open[k]
            let n = buf.withUnsafeMutableBytes { recv(fds[i], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { replies[i] += buf[0..<n] } else if n == 0 || errno != EAGAIN { markClosed(i) }
        }
    }

    private func markClosed(_ i: Int) {
        closedAfter[i] = ContinuousClock.now - opened
    }

    public func closeAll() {
        for fd in fds where fd >= 0 { sysClose(fd) }
        fds = fds.map { _ in -1 }
    }
}
