#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DNSWire

/// Errors of the test-side socket helpers, with the syscall name and errno kept.
public enum SocketError: Error, CustomStringConvertible, Sendable {
    case system(String, Int32)
    case badAddress(String)
    case noFreePort
    case closed
    public var description: String {
        switch self {
        case .system(let call, let e): return "\(call): \(String(cString: strerror(e))) (errno \(e))"
        case .badAddress(let a): return "bad address \(a)"
        case .noFreePort: return "no free port found on 127.0.0.1"
        case .closed: return "connection closed by peer"
        }
    }
}

/// An IPv4 or IPv6 socket address built from text (`127.0.0.1`, `::1`).
public struct SocketAddress: Sendable {
    var storage: sockaddr_storage
    public let family: Int32

    public static func loopbackV4(port: UInt16) -> SocketAddress {
        SocketAddress(host: "127.0.0.1", port: port)!
    }

    public init?(host: String, port: UInt16) {
        var st = sockaddr_storage()
        guard let ip = IPAddress(host) else { return nil }
        if ip.isV4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = ip.v4Value.bigEndian
            withUnsafeMutableBytes(of: &st) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            family = AF_INET
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            let b = ip.bytes
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { for i in 0..<16 { $0[i] = b[i] } }
            withUnsafeMutableBytes(of: &st) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            family = AF_INET6
        }
        storage = st
    }

    var length: socklen_t {
        socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var st = storage
        let len = length
        return withUnsafePointer(to: &st) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, len) } }
    }
}

func setTimeout(_ fd: Int32, _ option: Int32, milliseconds: Int) {
    var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: Int((milliseconds % 1000) * 1000))
    _ = setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
}

func milliseconds(_ d: Duration) -> Int {
    let c = d.components
    return max(1, Int(c.seconds) * 1000 + Int(c.attoseconds / 1_000_000_000_000_000))
}

/// `close(2)` under another name, for types that have their own `close()` method.
@discardableResult func sysClose(_ fd: Int32) -> Int32 { close(fd) }
