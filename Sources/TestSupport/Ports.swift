#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Platform

/// Picks a port that is free for both UDP and TCP on 127.0.0.1, so parallel tests and
/// other helpers never collide.
///
/// It tries random ports just below the kernel's ephemeral range first
/// (`/proc/sys/net/ipv4/ip_local_port_range`), checking each by binding it for UDP and TCP.
/// A port handed out by `bind(port 0)` lies inside the ephemeral range, where any client
/// socket of a parallel test (dig, the raw client) can take it between our check and the
/// server's bind: that race was seen here with NSD. Port 0 is the fallback.
/// The port is released before it is returned; servers started on it retry on
/// "address in use" (see `MeridianProcess.serve`, `NSDServer.start`).
///
///     let port = try freePort()
///     let server = try await MeridianProcess.serve(zones: dir, port: port)
public func freePort() throws -> UInt16 {
    let low = ephemeralPortLow()
    let start = max(1024, low - 12000)
    if low > start {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            let p = UInt16(Int.random(in: start..<low, using: &rng))
            if bindsUDPAndTCP(p) { return p }
        }
    }
    // Bounded: the kernel hands out a different ephemeral port each time.
    for _ in 0..<50 {
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard udp >= 0 else { throw SocketError.system("socket", errno) }
        defer { close(udp) }
        let addr = SocketAddress.loopbackV4(port: 0)
        guard addr.withSockaddr({ bind(udp, $0, $1) }) == 0 else { throw SocketError.system("bind", errno) }
        guard let bound = SocketAddress.local(of: udp) else { throw SocketError.system("getsockname", errno) }
        let port = bound.port
        if bindsTCP(port) { return port }
    }
    throw SocketError.noFreePort
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
func ephemeralPortLow() -> Int {
    guard let f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r") else { return 32768 }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 64)
    guard fgets(&buf, 64, f) != nil else { return 32768 }
    let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
}

func bindsTCP(_ port: UInt16) -> Bool {
    let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard tcp >= 0 else { return false }
    defer { close(tcp) }
    return SocketAddress.loopbackV4(port: port).withSockaddr { bind(tcp, $0, $1) } == 0
}

func bindsUDPAndTCP(_ port: UInt16) -> Bool {
    let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard udp >= 0 else { return false }
    defer { close(udp) }
    guard SocketAddress.loopbackV4(port: port).withSockaddr({ bind(udp, $0, $1) }) == 0 else { return false }
    return bindsTCP(port)
}

/// Whether this machine has a usable IPv6 loopback (containers often lack one).
public func hasIPv6Loopback() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    guard let addr = SocketAddress(host: "::1", port: 0) else { return false }
    return addr.withSockaddr { bind(fd, $0, $1) } == 0
}
