import Glibc

/// An IPv4, IPv6 or Unix socket address, the one place an address becomes a `sockaddr_in`,
/// `sockaddr_in6` or `sockaddr_un` (health checks, the GeoIP lookup, the drill, the control client, the
/// tests' clients). A value type with no allocation: `withSockaddr` hands the C pointer to
/// a non-escaping closure.
///
/// The address is given as `DNSWire.IPAddress` stores it (this module sits below DNSWire
/// and knows only the standard library and Glibc): `hi` holds the first 8 bytes big-end
/// first (an IPv4 address in its top 32 bits), `lo` the last 8.
///
///     let a = SocketAddress(isV4: ip.isV4, hi: ip.hi, lo: ip.lo, port: 53)
///     let fd = socket(a.family, Int32(SOCK_DGRAM.rawValue), 0)
///     let rc = a.withSockaddr { connect(fd, $0, $1) }
public struct SocketAddress: Sendable {
    private var storage = sockaddr_storage()
    /// The length of the `sockaddr_in` or `sockaddr_in6` (or what `init(copying:)` was given).
    public private(set) var length: socklen_t = 0

    /// `AF_INET` or `AF_INET6`.
    public var family: Int32 { Int32(storage.ss_family) }

    public init(isV4: Bool, hi: UInt64, lo: UInt64, port: UInt16) {
        if isV4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = UInt32(truncatingIfNeeded: hi >> 32).bigEndian
            store(sin)
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                for i in 0..<8 {
                    raw[i] = UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i)))
                    raw[8 + i] = UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i)))
                }
            }
            store(sin6)
        }
    }

    /// A copy of `length` bytes at `address` (from getaddrinfo, getsockname, accept); nil
    /// when they do not fit a `sockaddr_storage`.
    public init?(copying address: UnsafePointer<sockaddr>, length: socklen_t) {
        guard Int(length) <= MemoryLayout<sockaddr_storage>.size else { return nil }
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(length))) }
        self.length = length
    }

    /// An `AF_UNIX` address, the one place a path becomes a `sockaddr_un` (the service
    /// manager's notify socket, the dnstap collector, the tests' listeners). A path that
    /// starts with `@` names an abstract socket (the `@` becomes the leading NUL and no NUL
    /// ends it, as systemd's `$NOTIFY_SOCKET` has it). Nil when the path is empty or does
    /// not fit `sun_path` with its terminating NUL.
    ///
    ///     let a = SocketAddress(unixPath: "/run/dnstap.sock")!
    ///     let rc = a.withSockaddr { connect(fd, $0, $1) }
    public init?(unixPath: String) {
        var path = Array(unixPath.utf8)
        guard !path.isEmpty else { return nil }
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let abstract = path[0] == UInt8(ascii: "@")
        if abstract { path[0] = 0 }
        guard path.count < MemoryLayout.size(ofValue: sun.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &sun.sun_path) { raw in
            for (i, b) in path.enumerated() { raw[i] = b }
        }
        store(sun)
        length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (abstract ? 0 : 1))
    }

    /// The local address `fd` is bound to (getsockname), nil on error (errno is set).
    public static func local(of fd: Int32) -> SocketAddress? {
        var out = SocketAddress(isV4: true, hi: 0, lo: 0, port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &out.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        out.length = len
        return out
    }

    /// The port, in host order (0 for a family other than IPv4 and IPv6).
    public var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET: return UInt16(bigEndian: raw.load(fromByteOffset: MemoryLayout<sockaddr_in>.offset(of: \.sin_port)!, as: UInt16.self))
            case AF_INET6: return UInt16(bigEndian: raw.load(fromByteOffset: MemoryLayout<sockaddr_in6>.offset(of: \.sin6_port)!, as: UInt16.self))
            default: return 0
            }
        }
    }

    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }

    private mutating func store<S>(_ s: S) {
        withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: s) { dst.copyMemory(from: $0) } }
        length = socklen_t(MemoryLayout<S>.size)
    }
}
