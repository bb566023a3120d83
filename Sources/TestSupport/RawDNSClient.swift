#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Platform

/// A raw DNS client over UDP and TCP for packets `dig` cannot send (two questions, two
/// OPT records, compression loops, responses sent as queries). Every call is bounded by
/// a timeout, so a server that drops a packet makes the call return nil, not hang.
///
///     let client = RawDNSClient(host: "127.0.0.1", port: port)
///     let reply = try client.udpExchange(RawQuery(name: "www.example.com.").bytes())
///     reply.map(DNSReply.init)?.rcode   // 0
public struct RawDNSClient: Sendable {
    public let host: String
    public let port: UInt16

    public init(host: String = "127.0.0.1", port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Sends one datagram and waits up to `timeout` for one reply; nil when none came.
    public func udpExchange(_ packet: [UInt8], timeout: Duration = .seconds(2)) throws -> [UInt8]? {
        guard let addr = SocketAddress(host: host, port: port) else { throw SocketError.badAddress(host) }
        let fd = socket(addr.family, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket", errno) }
        defer { close(fd) }
        // connect() makes the kernel drop datagrams from any other source.
        guard addr.withSockaddr({ connect(fd, $0, $1) }) == 0 else { throw SocketError.system("connect", errno) }
        setTimeout(fd, SO_RCVTIMEO, milliseconds: milliseconds(timeout))
        let sent = packet.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == packet.count else { throw SocketError.system("send", errno) }
        var buf = [UInt8](repeating: 0, count: 65535)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            // A timeout, or ECONNREFUSED when nothing listens: both mean "no answer".
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED || errno == EINTR { return nil }
            throw SocketError.system("recv", errno)
        }
        return Array(buf[0..<n])
    }

    /// Opens a TCP connection (bounded by `timeout` for every later read and write).
    public func tcpConnect(timeout: Duration = .seconds(2)) throws -> TCPConnection {
        try TCPConnection(host: host, port: port, timeout: timeout)
    }

    /// One query over TCP with RFC 1035 4.2.2 two-byte length framing.
    public func tcpExchange(_ packet: [UInt8], timeout: Duration = .seconds(2)) throws -> [UInt8]? {
        let c = try tcpConnect(timeout: timeout)
        defer { c.close() }
        try c.sendFramed(packet)
        return try c.receiveFramed()
    }
}

/// A blocking TCP connection whose reads and writes time out. Not thread-safe: one test
/// owns it. `close()` is idempotent and also runs on deinit.
public final class TCPConnection {
    private var fd: Int32

    init(host: String, port: UInt16, timeout: Duration) throws {
        guard let addr = SocketAddress(host: host, port: port) else { throw SocketError.badAddress(host) }
        fd = socket(addr.family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket", errno) }
        let ms = milliseconds(timeout)
        setTimeout(fd, SO_RCVTIMEO, milliseconds: ms)
        setTimeout(fd, SO_SNDTIMEO, milliseconds: ms)
        guard addr.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let e = errno
            sysClose(fd)
            fd = -1
            throw SocketError.system("connect", e)
        }
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { _ = sysClose(fd); fd = -1 }
    }

    /// Writes raw bytes (no framing), for example several framed messages at once or half
    /// a length prefix to simulate a stalled client.
    public func sendRaw(_ bytes: [UInt8]) throws {
        var off = 0
        // Bounded: each pass writes at least one byte or throws.
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError.system("send", errno) }
            off += n
        }
    }

    public func sendFramed(_ message: [UInt8]) throws {
        try sendRaw(Self.frame(message))
    }

    /// Prefixes a message with its two-byte length (RFC 1035 4.2.2).
    public static func frame(_ message: [UInt8]) -> [UInt8] {
        [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
    }

    /// Reads one length-prefixed message; nil on timeout or when the server closed the
    /// connection before a full message arrived.
    public func receiveFramed() throws -> [UInt8]? {
        guard let len = try receiveExactly(2) else { return nil }
        let n = Int(len[0]) << 8 | Int(len[1])
        return try receiveExactly(n)
    }

    /// True when the server has closed the connection (read returns EOF) within the timeout.
    public func isClosedByPeer() -> Bool {
        var b: UInt8 = 0
        let n = recv(fd, &b, 1, 0)
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    private func receiveExactly(_ count: Int) throws -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        // Bounded: each pass reads at least one byte, or returns.
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n == 0 { return nil }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET { return nil }
                throw SocketError.system("recv", errno)
            }
            got += n
        }
        return out
    }
}
