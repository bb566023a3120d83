import DNSWire
import Foundation
import Glibc
import Testing
import TestSupport

/// Sends `count` queries from `source` to the server at once, then collects replies until
/// 500 ms pass without one. Returns (full answers, truncated replies, no reply).
func burst(from source: String, to port: UInt16, name: DNSName, count: Int) throws -> (answered: Int, slipped: Int, dropped: Int) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    func sockaddrOf(_ host: String, _ p: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = p.bigEndian
        a.sin_addr.s_addr = inet_addr(host)
        return a
    }
    var local = sockaddrOf(source, 0)
    let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
    var server = sockaddrOf("127.0.0.1", port)
    var tv = timeval(tv_sec: 0, tv_usec: 500_000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    for i in 0..<count {
        let q = DNSWire.QueryBuilder.query(id: UInt16(i), name: name, type: .a)
        _ = q.withUnsafeBytes { b in
            withUnsafePointer(to: &server) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            } }
        }
    }
    var answered = 0, slipped = 0, replies = 0
    var buf = [UInt8](repeating: 0, count: 4096)
    while replies < count {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        replies += 1
        guard let m = try? Message(decoding: Array(buf[0..<n])) else { continue }
        if m.has(HeaderFlags.tc) && m.answers.isEmpty { slipped += 1 } else if !m.answers.isEmpty { answered += 1 }
    }
    return (answered, slipped, count - replies)
}

/// Issue 7: response rate limiting against the real binary.
@Suite("Response rate limiting", .serialized)
struct RateLimitTests {
    @Test func burstFromOneAddressIsLimitedAndSlippedWhileAnotherIsAnswered() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        try dir.write("meridian.yaml", contents: """
            server:
              rrl: { rate: 10, slip: 2, ipv4_prefix: 32, allow: [127.0.0.3/32] }
            zones:
              gslb.test: { file: gslb.test.zone }
            """)
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            let name = try DNSName("edge.gslb.test.")
            // Give the readiness probe's second time to pass so the burst starts a fresh second.
            try await Task.sleep(for: .milliseconds(1100))
            let a = try burst(from: "127.0.0.1", to: server.port, name: name, count: 60)
            let b = try burst(from: "127.0.0.2", to: server.port, name: name, count: 8)
            let allowed = try burst(from: "127.0.0.3", to: server.port, name: name, count: 60)
            print("rrl burst of 60 from one address: \(a.answered) answered, \(a.slipped) slipped (TC=1), \(a.dropped) dropped; other address: \(b.answered)/8 answered; allowlisted: \(allowed.answered)/60")
            // 10 per second answered (a burst can straddle a second boundary: at most 2 seconds' worth).
            #expect(a.answered >= 10 && a.answered <= 20, "\(a)")
            // Every second limited response slips, the others are dropped.
            #expect(a.slipped >= 15 && a.dropped >= 15, "\(a)")
            #expect(b.answered == 8, "another client is answered normally: \(b)")
            #expect(allowed.answered == 60, "allowlisted network: \(allowed)")
        }
    }
}
