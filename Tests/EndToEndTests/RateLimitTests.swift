import DNSWire
import Foundation
import Glibc
import Platform
import Testing
import TestSupport

/// Sends `count` queries from `source` to the server at once, then collects replies until
/// 500 ms pass without one. Returns (full answers, truncated replies, no reply).
func burst(from source: String, to port: UInt16, name: DNSName, count: Int) throws -> (answered: Int, slipped: Int, dropped: Int) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    guard let local = SocketAddress(host: source, port: 0), local.withSockaddr({ bind(fd, $0, $1) }) == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
    let server = SocketAddress.loopbackV4(port: port)
    var tv = timeval(tv_sec: 0, tv_usec: 500_000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    for i in 0..<count {
        let q = DNSWire.QueryBuilder.query(id: UInt16(i), name: name, type: .a)
        _ = q.withUnsafeBytes { b in
            server.withSockaddr { sendto(fd, b.baseAddress, b.count, 0, $0, $1) }
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

/// Issue 7: the health loop, the control API and reloads run apart from the DNS workers,
/// so they keep working while a (bounded) UDP flood saturates them.
@Suite("Isolation under a UDP flood", .serialized)
struct FloodIsolationTests {
    @Test func healthControlAndReloadKeepWorking() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        try dir.write("state", contents: "up\n")
        let control = try freePort()
        try dir.write("meridian.yaml", contents: Fixtures.failoverYAML(checkName: "flag", checkSpec: "{ type: file, file: state, interval: 200ms }",
                                                                   server: "{ control: \"127.0.0.1:\(control)\" }"))
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            let port = server.port
            let stop = Flag()
            // The flood: 4 sockets sending as fast as they can, bounded by 6 s and 3M packets.
            let flood = Task.detached { () -> Int in
                let q = DNSWire.QueryBuilder.query(id: 1, name: try! DNSName("edge.gslb.test."), type: .a)
                var sent = 0
                var fds: [Int32] = []
                let addr = SocketAddress.loopbackV4(port: port)
                for _ in 0..<4 { fds.append(socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)) }
                defer { fds.forEach { close($0) } }
                let deadline = Date().addingTimeInterval(6)
                var buf = [UInt8](repeating: 0, count: 512)
                while !stop.isSet && sent < 3_000_000 && Date() < deadline {
                    for fd in fds {
                        _ = q.withUnsafeBytes { b in
                            addr.withSockaddr { sendto(fd, b.baseAddress, b.count, 0, $0, $1) }
                        }
                        // Drain replies so the socket buffers do not fill.
                        while buf.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
                        sent += 1
                    }
                }
                return sent
            }
            try await Task.sleep(for: .milliseconds(500))
            // Control API: answers promptly.
            let t0 = Date()
            let health = try HTTP.request("GET", port: control, path: "/healthz")
            let status = try HTTP.request("GET", port: control, path: "/status")
            let controlSeconds = Date().timeIntervalSince(t0)
            #expect(health.status == 200 && status.status == 200)
            // Health loop: the state file flips the answer.
            try dir.write("state", contents: "down\n")
            var moved = false
            for _ in 0..<30 where !moved {
                try await Task.sleep(for: .milliseconds(100))
                let r = try await Dig.query("fo.gslb.test", "A", port: port, options: ["+tcp", "+time=1", "+tries=1"])
                moved = r.answer.map(\.rdata) == ["192.0.2.2"]
            }
            // Reload: completes.
            server.signal(SIGHUP)
            var reloaded = false
            for _ in 0..<30 where !reloaded {
                try await Task.sleep(for: .milliseconds(100))
                reloaded = server.logText.contains("reload ok")
            }
            stop.set()
            let sent = await flood.value
            print("flood: \(sent) queries sent; control API answered 2 requests in \(String(format: "%.3f", controlSeconds)) s; health moved the answer: \(moved); reload done: \(reloaded)")
            #expect(sent > 10_000, "the flood ran")
            #expect(controlSeconds < 2)
            #expect(moved, "log:\n\(server.logText)")
            #expect(reloaded, "log:\n\(server.logText)")
        }
    }
}

/// Issue 7: `dig +cookie` gets a server cookie back (RFC 7873 / RFC 9018 format), and sending
/// it back is accepted.
@Suite("DNS Cookies end to end", .serialized)
struct CookieTests {
    @Test func digSeesAServerCookie() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("www.example.com", "A", port: server.port, options: ["+cookie"])
            let line = try #require(r.raw.split(separator: "\n").first { $0.contains("; COOKIE: ") }, "\(r.raw)")
            // 8-byte client cookie + 16-byte server cookie = 48 hex digits, and dig checked
            // that the client half is its own ("good").
            let hex = line.split(separator: " ").dropFirst(2).first.map(String.init) ?? ""
            #expect(hex.count == 48, "\(line)")
            #expect(line.contains("(good)"), "\(line)")
            #expect(String(hex.dropFirst(16).prefix(2)) == "01", "RFC 9018 version 1")
            // Sending the full cookie back is answered normally.
            let again = try await Dig.query("www.example.com", "A", port: server.port, options: ["+cookie=\(hex)"])
            #expect(again.status == "NOERROR" && again.answer.count == 2, "\(again.raw)")
        }
    }
}
