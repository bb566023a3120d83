import DNSWire
import Foundation
import Glibc
import Synchronization
import Testing
import TestSupport

/// A UDP listener on 127.0.0.1 standing in for a secondary: it counts the NOTIFY messages
/// (opcode 4) it gets, with the time of each, and acknowledges them so the sender stops
/// retrying. Bounded: its thread stops after `stop()` or 300 s.
final class DNSNotifyListener: Sendable {
    let port: UInt16
    private let fd: Int32
    private let received = Mutex<[Date]>([])
    private let stopped = Atomic<Bool>(false)

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw POSIXError(.EIO) }
        var bound: UInt16 = 0
        for _ in 0..<5 where bound == 0 {
            let p = try freePort()
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = p.bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if r == 0 { bound = p }
        }
        guard bound != 0 else { close(s); throw POSIXError(.EADDRINUSE) }
        fd = s
        port = bound
        Thread { [self] in self.run() }.start()
    }

    private func run() {
        var buf = [UInt8](repeating: 0, count: 4096)
        let t0 = Date()
        while !stopped.load(ordering: .relaxed) && Date().timeIntervalSince(t0) < 300 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            var from = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buf.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) } }
            }
            guard n >= 12, (buf[2] >> 3) & 0xF == 4, buf[2] & 0x80 == 0 else { continue }
            received.withLock { $0.append(Date()) }
            // The answer: the same header with QR set and no records (RFC 1996 4.7).
            var reply = Array(buf[0..<12])
            reply[2] |= 0x80
            reply[3] = 0
            for i in 4..<12 { reply[i] = 0 }
            _ = withUnsafePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in reply.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a, len) } } }
        }
    }

    var times: [Date] { received.withLock { $0 } }
    var count: Int { times.count }

    func stop() {
        if !stopped.exchange(true, ordering: .relaxed) {
            Thread.sleep(forTimeInterval: 0.15)
            close(fd)
        }
    }
}

/// `gslb_view: healthy`: a health change moves the serial and NOTIFYs the secondaries,
/// damped by `health_notify_interval`; without it a health change sends nothing.
@Suite("NOTIFY on health changes", .serialized)
struct HealthNotifyTests {
    static func config(folder: String, backendPort: UInt16, notify: [String], view: String?) -> String {
        """
        zones:
          gslb.test:
            file: \(folder)/gslb.test.zone
            names:
              www: { ttl: 60, policy: { failover: [primary, backup] } }
        checks:
          be: { type: tcp, host: 127.0.0.1, port: \(backendPort), interval: 200ms, timeout: 200ms, rise: 1, fall: 1 }
        endpoints:
          primary: { v4: 192.0.2.1, check: be }
          backup: { v4: 192.0.2.2 }
        \(TransferFixture.tsigTransfers)
          notify:
        \(notify.map { "    - \($0)" }.joined(separator: "\n"))
        \(view.map { "  gslb_view: \($0)\n  health_notify_interval: 2s" } ?? "")

        """
    }

    static func folder(backendPort: UInt16, notify: [String], view: String?) throws -> String {
        let dir = try makeTemporaryDirectory(prefix: "meridian-hnotify").path
        try TransferFixture.gslbZone.write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
        try config(folder: dir, backendPort: backendPort, notify: notify, view: view)
            .write(toFile: dir + "/meridian.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    @Test("healthy view: the backend dies, NSD serves the moved answer within 5 s; a flap inside the interval is held and still reaches NSD",
          .enabled(if: NSDServer.isAvailable))
    func secondaryFollowsHealth() async throws {
        let backend = try Backend(port: try freePort())
        let listener = try DNSNotifyListener()
        let nsdPort = try freePort()
        let dir = try Self.folder(backendPort: backend.port,
                                  notify: ["{ to: \"127.0.0.1:\(nsdPort)\", key: xfr-key }", "\"127.0.0.1:\(listener.port)\""], view: "healthy")
        defer { try? FileManager.default.removeItem(atPath: dir); backend.stop(); listener.stop() }
        let s = try await TransferFixture.serve(dir)
        try await withSecondary(s) { nsd in
            let sec = try await SecondaryServer.nsd(zones: ["gslb.test."], primaryPort: s.port, key: TransferFixture.key, port: nsdPort)
            nsd = sec
            func www() async -> [String]? { try? await Dig.short("www.gslb.test", "A", port: sec.port) }
            let loaded = await secondsUntil(limit: 20, every: .milliseconds(100)) { await www() == ["www.gslb.test. 60 IN A 192.0.2.1"] }
            #expect(loaded != nil, "NSD never served the primary:\n\(sec.logText)\nmeridian:\n\(s.logText)")
            #expect(await eventually(5) { listener.count >= 1 }, "no NOTIFY at start")
            let before = listener.count

            backend.stop()
            // Detection (interval x fall + timeout = 0.4 s), then NOTIFY and IXFR on loopback.
            let bound = 5.0
            let moved = await secondsUntil(limit: bound + 10, every: .milliseconds(50)) { await www() == ["www.gslb.test. 60 IN A 192.0.2.2"] }
            if let moved { print("backend death to NSD's moved answer: \(String(format: "%.2f", moved)) s (bound \(bound) s)") }
            #expect(moved != nil && moved! <= bound, "NSD did not follow:\n\(sec.logText)\nmeridian:\n\(s.logText)")
            #expect(s.logText.contains("serial moved (health changed)"), "\(s.logText)")
            #expect(listener.count > before)

            // Back up at once: inside the 2 s interval, so the bump is held, then sent.
            let firstBump = try #require(listener.times.last)
            try backend.start()
            let back = await secondsUntil(limit: 15, every: .milliseconds(50)) { await www() == ["www.gslb.test. 60 IN A 192.0.2.1"] }
            #expect(back != nil, "the last change never reached NSD:\n\(s.logText)")
            let second = try #require(listener.times.last)
            print("NOTIFY after the flap came \(String(format: "%.2f", second.timeIntervalSince(firstBump))) s after the first (interval 2 s)")
            #expect(second.timeIntervalSince(firstBump) >= 1.9, "not damped: \(listener.times)")
            #expect(s.logText.contains("held for health_notify_interval"), "\(s.logText)")
        }
    }

    @Test("serial: keep with a healthy view is refused by check with its line and column; the default serves unixtime")
    func keepRefusedWithHealthyView() async throws {
        let dir = try Self.folder(backendPort: 9, notify: ["\"127.0.0.1:9\""], view: "healthy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/meridian.yaml"
        let good = try String(contentsOfFile: path, encoding: .utf8)
        try good.replacingOccurrences(of: "  gslb_view: healthy", with: "  serial: keep\n  gslb_view: healthy")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex { $0.contains("serial: keep") }) + 1
        let out = try await MeridianProcess.run(["check", "--config", path])
        #expect(out.status != 0)
        #expect(out.stderr.contains("meridian.yaml:\(line):11: transfers serial: keep cannot be used for gslb.test., which has GSLB names in the healthy transfer view"), "\(out.combined)")
        try good.write(toFile: path, atomically: true, encoding: .utf8)
        let ok = try await MeridianProcess.run(["check", "--config", path])
        #expect(ok.status == 0, "\(ok.combined)")
    }

    @Test("Without the healthy view the same health change sends no NOTIFY")
    func noNotifyWithoutOptIn() async throws {
        let backend = try Backend(port: try freePort())
        let listener = try DNSNotifyListener()
        let dir = try Self.folder(backendPort: backend.port, notify: ["\"127.0.0.1:\(listener.port)\""], view: nil)
        defer { try? FileManager.default.removeItem(atPath: dir); backend.stop(); listener.stop() }
        let s = try await TransferFixture.serve(dir)
        do {
            #expect(await eventually(5) { listener.count >= 1 }, "no NOTIFY at start")
            try await Task.sleep(for: .milliseconds(500))
            let before = listener.count
            backend.stop()
            let moved = await secondsUntil(limit: 10, every: .milliseconds(50)) {
                (try? await Dig.short("www.gslb.test", "A", port: s.port)) == ["www.gslb.test. 60 IN A 192.0.2.2"]
            }
            #expect(moved != nil, "Meridian's own answer never moved:\n\(s.logText)")
            try await Task.sleep(for: .seconds(3))
            #expect(listener.count == before, "NOTIFY sent on a health change without the opt-in: \(listener.times)\n\(s.logText)")
            #expect(!s.logText.contains("serial moved"), "\(s.logText)")
        } catch {
            await s.stop(); throw error
        }
        await s.stop()
    }
}
