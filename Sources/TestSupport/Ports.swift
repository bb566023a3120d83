#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Picks a port that is free for both UDP and TCP on 127.0.0.1, as the rules for tests
/// ask (bind port 0, read the kernel's choice back), so parallel tests never collide.
///
/// The port is released before it is returned; another process could take it in the
/// meantime, which is rare enough on loopback that a server failing to bind is reported
/// as an ordinary start failure.
///
///     let port = try freePort()
///     let server = try await MeridianProcess.start(zones: dir, port: port)
public func freePort() throws -> UInt16 {
    // Bounded: the kernel hands out a different ephemeral port each time.
    for _ in 0..<50 {
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard udp >= 0 else { throw SocketError.system("socket", errno) }
        defer { close(udp) }
        var addr = SocketAddress.loopbackV4(port: 0)
        guard addr.withSockaddr({ bind(udp, $0, $1) }) == 0 else { throw SocketError.system("bind", errno) }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(udp, $0, &len) }
        }
        guard r == 0 else { throw SocketError.system("getsockname", errno) }
        let port = UInt16(bigEndian: bound.sin_port)

        let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard tcp >= 0 else { throw SocketError.system("socket", errno) }
        defer { close(tcp) }
        addr = SocketAddress.loopbackV4(port: port)
        if addr.withSockaddr({ bind(tcp, $0, $1) }) == 0 { return port }
    }
    throw SocketError.noFreePort
}

/// Whether this machine has a usable IPv6 loopback (containers often lack one).
public func hasIPv6Loopback() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    guard let addr = SocketAddress(host: "::1", port: 0) else { return false }
    return addr.withSockaddr { bind(fd, $0, $1) } == 0
}
