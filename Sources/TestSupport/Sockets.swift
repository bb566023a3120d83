#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DNSWire
import Platform

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

extension SocketAddress {
    /// Parses an address literal (`127.0.0.1`, `::1`); nil for anything else.
    public init?(host: String, port: UInt16) {
        guard let ip = IPAddress(host) else { return nil }
        self.init(isV4: ip.isV4, hi: ip.hi, lo: ip.lo, port: port)
    }

    public static func loopbackV4(port: UInt16) -> SocketAddress {
        SocketAddress(isV4: true, hi: 0x7F00_0001 << 32, lo: 0, port: port)
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
