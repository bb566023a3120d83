import DNSWire
import Foundation
import Glibc
import Platform
import Testing
import TestSupport

/// A TCP listener on 127.0.0.1 that a health check probes; `stop()` kills the "backend".
final class Backend: @unchecked Sendable {
    let port: UInt16
    private var fd: Int32 = -1

    init(port: UInt16) throws {
        self.port = port
        try start()
    }

    func start() throws {
        // CLOEXEC: the meridian child must not inherit (and keep alive) this listener.
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let r = SocketAddress.loopbackV4(port: port).withSockaddr { bind(s, $0, $1) }
        guard r == 0, listen(s, 128) == 0 else { close(s); throw POSIXError(.EADDRINUSE) }
        fd = s
    }

    func stop() {
        if fd >= 0 { close(fd); fd = -1 }
    }

    deinit { stop() }
}

/// Issue 4's end-to-end bound: a backend dies while a client polls every 100 ms; the answer
/// leaves it within interval x fall + timeout + 1 s and comes back within interval x rise + 1 s.
@Suite("Health failover end to end", .serialized)
struct FailoverTests {
    @Test func answerLeavesADeadBackendAndComesBack() async throws {
        let backendPort = try freePort()
        let backend = try Backend(port: backendPort)
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove(); backend.stop() }
        let interval = 0.5, timeout = 0.5, fall = 2, rise = 2
        try dir.write("meridian.yaml", contents: Fixtures.failoverYAML(
            checkName: "be", checkSpec: "{ type: tcp, host: 127.0.0.1, port: \(backendPort), interval: \(Int(interval * 1000))ms, timeout: \(Int(timeout * 1000))ms, rise: \(rise), fall: \(fall) }"))
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            let probe = try FirstAddress(port: server.port, name: "fo.gslb.test.")
            func answer() -> String? { probe.next() }
            #expect(answer() == "192.0.2.1", "the primary answers while its backend is up")

            backend.stop()
            let downBound = interval * Double(fall) + timeout + 1
            let failover = await secondsUntil(limit: downBound + 5) { answer() == "192.0.2.2" }
            print("failover: answer left the dead backend after \(failover.map { String(format: "%.2f", $0) } ?? "never") s (bound \(downBound) s)")
            #expect(failover != nil && failover! <= downBound, "log:\n\(server.logText)")

            try backend.start()
            let upBound = interval * Double(rise) + 1
            let recovery = await secondsUntil(limit: upBound + 5) { answer() == "192.0.2.1" }
            print("recovery: answer came back after \(recovery.map { String(format: "%.2f", $0) } ?? "never") s (bound \(upBound) s)")
            #expect(recovery != nil && recovery! <= upBound, "log:\n\(server.logText)")
            #expect(server.logText.contains("up -> down") && server.logText.contains("down -> up"))
        }
    }
}

/// Failover order with endpoints marked down through state files (file checks, re-read
/// when they change): each tier is skipped while it is down, in order.
@Suite("Failover order", .serialized)
struct FailoverOrderTests {
    @Test func tiersAreTriedInOrder() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        for s in ["one", "two", "three"] { try dir.write(s, contents: "up\n") }
        try dir.write("meridian.yaml", contents: """
            defaults: { ttl: 1 }
            zones:
              gslb.test:
                file: gslb.test.zone
                names:
                  tiers: { policy: { failover: [first, second, third] }, when_all_down: nodata }
            checks:
              defaults: { interval: 200ms }
              one: { type: file, file: one }
              two: { type: file, file: two }
              three: { type: file, file: three }
            endpoints:
              first: { v4: 192.0.2.1, check: one }
              second: { v4: 192.0.2.2, check: two }
              third: { v4: 192.0.2.3, check: three }
            """)
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            func answers() async throws -> [String] {
                try await Dig.query("tiers.gslb.test", "A", port: server.port).answer.map(\.rdata)
            }
            func waitFor(_ want: [String]) async throws -> Bool {
                for _ in 0..<50 {
                    if try await answers() == want { return true }
                    try await Task.sleep(for: .milliseconds(100))
                }
                return false
            }
            #expect(try await answers() == ["192.0.2.1"])
            try dir.write("one", contents: "down maintenance\n")
            #expect(try await waitFor(["192.0.2.2"]), "log:\n\(server.logText)")
            try dir.write("two", contents: "down\n")
            #expect(try await waitFor(["192.0.2.3"]))
            try dir.write("three", contents: "down\n")
            // when_all_down: nodata -> an empty NOERROR answer.
            #expect(try await waitFor([]))
            let r = try await Dig.query("tiers.gslb.test", "A", port: server.port)
            #expect(r.status == "NOERROR" && r.answer.isEmpty)
            try dir.write("two", contents: "up\n")
            #expect(try await waitFor(["192.0.2.2"]))
            #expect(server.logText.contains("state file says down: maintenance"), "the reason is logged")
        }
    }
}
