import DNSWire
import Glibc
import Platform
import Server

/// Plain blocking-with-deadline socket clients for the tests: real sockets on loopback,
/// every wait bounded by poll().
enum Net {
    /// A sockaddr for `address`, passed to `body` with its length.
    static func withSockaddr<R>(_ address: ListenAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        address.socketAddress.withSockaddr(body)
    }

    static func family(_ a: ListenAddress) -> Int32 { a.address.isV4 ? AF_INET : AF_INET6 }

    /// Waits up to `ms` for `events` on `fd`; true when ready.
    static func wait(_ fd: Int32, _ events: Int32, ms: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(events), revents: 0)
        while true {
            let r = poll(&p, 1, ms)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }

    /// Sends one UDP query and returns the first reply, or nil after `ms`.
    static func udpQuery(_ to: ListenAddress, _ query: [UInt8], ms: Int32 = 1000) -> [UInt8]? {
        let fd = socket(family(to), Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let sent = withSockaddr(to) { sa, len in
            query.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) }
        }
        guard sent == query.count, wait(fd, POLLIN, ms: ms) else { return nil }
        var buf = [UInt8](repeating: 0, count: 65535)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n >= 0 ? Array(buf[0..<n]) : nil
    }
}

/// A TCP client connection; closes its socket on deinit.
final class TCPClient {
    let fd: Int32

    init?(_ to: ListenAddress) {
        fd = socket(Net.family(to), Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        let r = Net.withSockaddr(to) { connect(fd, $0, $1) }
        if r != 0 { close(fd); return nil }
    }

    deinit { close(fd) }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Reads exactly `count` bytes within `ms`, or nil (timeout, EOF or error).
    func read(_ count: Int, ms: Int32 = 1000) -> [UInt8]? {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: count)
        let deadline = ContinuousClock.now + .milliseconds(Int(ms))
        while out.count < count {
            let left = deadline - ContinuousClock.now
            guard left > .zero, Net.wait(fd, POLLIN, ms: Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)) else { return nil }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            if n <= 0 { return nil }
            out += buf[0..<n]
        }
        return out
    }

    /// Reads one length-prefixed DNS message.
    func readMessage(ms: Int32 = 1000) -> [UInt8]? {
        guard let prefix = read(2, ms: ms) else { return nil }
        return read(Int(prefix[0]) << 8 | Int(prefix[1]), ms: ms)
    }

    /// True when the server closes the connection (EOF or reset) within `ms`, reading and
    /// discarding anything sent before.
    func closedByServer(ms: Int32) -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + .milliseconds(Int(ms))
        for _ in 0..<10_000 {
            let left = deadline - ContinuousClock.now
            guard left > .zero, Net.wait(fd, POLLIN, ms: Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)) else { return false }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return true }
        }
        return false
    }
}

/// A minimal DNS query: header with `id`, RD set, one question `example.com. IN A`.
func makeQuery(id: UInt16) -> [UInt8] {
    var q: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
    q += [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0]
    q += [0, 1, 0, 1]
    return q
}

func framed(_ m: [UInt8]) -> [UInt8] { [UInt8(m.count >> 8), UInt8(m.count & 0xFF)] + m }

func messageID(_ m: [UInt8]) -> UInt16 { UInt16(m[0]) << 8 | UInt16(m[1]) }
