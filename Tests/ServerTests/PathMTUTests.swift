import Foundation
import Glibc
import Platform
import Server
import Testing

/// True when this process may open a raw IPv4 socket (CAP_NET_RAW), which the DF-bit test
/// needs to see the IP header of an answer.
let rawSocketsAllowed: Bool = {
    let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_UDP))
    guard fd >= 0 else { return false }
    close(fd)
    return true
}()

/// This process's UDP sockets whose local port is `port`, found through /proc/self/fd.
func udpSockets(boundTo port: UInt16) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return entries.compactMap { Int32($0) }.filter { fd in
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_DGRAM.rawValue) else {
            return false
        }
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
        }
        guard r == 0 else { return false }
        // sin_port and sin6_port sit at the same offset, in network order.
        let bound = withUnsafeBytes(of: &storage) { UInt16($0[2]) << 8 | UInt16($0[3]) }
        return bound == port
    }
}

func intOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32? {
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, level, name, &value, &length) == 0 ? value : nil
}

/// UDP answers ignore path MTU information (IP_PMTUDISC_OMIT): a forged ICMP
/// "fragmentation needed" must not make answers leave in fragments.
@Suite struct PathMTUTests {
    @Test func everyUDPSocketOmitsPathMTUDiscovery() throws {
        let listen = ipv6Available ? ["127.0.0.1:0", "[::1]:0"] : ["127.0.0.1:0"]
        let server = try startServer(listen, workers: 2)
        defer { server.stop() }
        for address in server.boundAddresses {
            let fds = udpSockets(boundTo: address.port)
            // One SO_REUSEPORT socket per worker.
            #expect(fds.count == 2, "\(address)")
            for fd in fds {
                if address.address.isV4 {
                    #expect(intOption(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER) == IP_PMTUDISC_OMIT, "\(address)")
                } else {
                    #expect(intOption(fd, Int32(IPPROTO_IPV6), IPV6_MTU_DISCOVER) == IPV6_PMTUDISC_OMIT, "\(address)")
                }
            }
        }
    }

    /// The observable effect on IPv4: answers leave with DF clear. The test first checks that
    /// a socket without the option sends DF set here (the kernel's default), so it fails if
    /// the server loses the option.
    @Test(.enabled(if: rawSocketsAllowed, "raw sockets need CAP_NET_RAW"))
    func ipv4AnswersLeaveWithoutDontFragment() throws {
        let raw = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_UDP))
        try #require(raw >= 0)
        defer { close(raw) }
        let server = try startServer(["127.0.0.1:0"], workers: 1)
        defer { server.stop() }
        let address = server.boundAddresses[0]

        // A query from a plain UDP socket, answered; the raw socket holds both datagrams.
        try #require(Net.udpQuery(address, makeQuery(id: 0x0F0F)) != nil)
        // Control: the plain socket's query carries DF.
        let sent = try #require(capture(raw, sourcePort: nil, destinationPort: address.port))
        #expect(sent & 0x40 != 0, "the kernel's default sets DF, so the check below can tell")

        // The server's answer to that query carries no DF.
        let answered = try #require(capture(raw, sourcePort: address.port, destinationPort: nil))
        #expect(answered & 0x40 == 0)
    }

    /// Reads the raw socket until a UDP datagram on loopback matches the ports; returns the
    /// high byte of its IPv4 flags-and-fragment-offset field (DF is 0x40).
    private func capture(_ raw: Int32, sourcePort: UInt16?, destinationPort: UInt16?) -> UInt8? {
        var buf = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<200 {
            guard Net.wait(raw, POLLIN, ms: 1000) else { return nil }
            let n = buf.withUnsafeMutableBytes { recv(raw, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n >= 28 else { continue }
            let ihl = Int(buf[0] & 0x0F) * 4
            guard n >= ihl + 8 else { continue }
            let src = UInt16(buf[ihl]) << 8 | UInt16(buf[ihl + 1])
            let dst = UInt16(buf[ihl + 2]) << 8 | UInt16(buf[ihl + 3])
            if let s = sourcePort, s != src { continue }
            if let d = destinationPort, d != dst { continue }
            return buf[6]
        }
        return nil
    }
}
