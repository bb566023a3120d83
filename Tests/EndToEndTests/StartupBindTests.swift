#if canImport(Glibc)
import Glibc
#endif
import DNSWire
import Foundation
import Platform
import Testing
import TestSupport

/// `serve` binds its DNS sockets once it knows the addresses, before it reads the zones: a
/// query that arrives during a long zone load waits in the socket's queue and is answered
/// when the workers start (as NSD and Knot do), and a port in use stops the start before
/// any zone is read.
@Suite("Start-up: sockets bound before the zones load", .serialized)
struct StartupBindTests {
    /// A folder with one zone of `hosts` A records: long enough to load that the test sees
    /// the load in progress.
    static func bigZone(hosts: Int) throws -> String {
        let dir = try makeTemporaryDirectory(prefix: "startup-bind").path
        var text = "$ORIGIN big.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n"
        text.reserveCapacity(hosts * 32)
        for i in 0..<hosts { text += "h\(i) A 10.\(i >> 16 & 255).\(i >> 8 & 255).\(i & 255)\n" }
        try text.write(toFile: dir + "/big.test.zone", atomically: true, encoding: .utf8)
        return dir
    }

    /// Whether something holds UDP `port` on 127.0.0.1 (a bind without SO_REUSEPORT fails).
    static func udpPortTaken(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return SocketAddress.loopbackV4(port: port).withSockaddr { bind(fd, $0, $1) } != 0 && errno == EADDRINUSE
    }

    @Test func aQueryDuringTheZoneLoadIsAnsweredWhenTheServerStarts() async throws {
        guard let bin = TestPaths.meridianBinary else { Issue.record("no meridian binary"); return }
        let hosts = 150_000
        let dir = try Self.bigZone(hosts: hosts)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try makeTemporaryDirectory(prefix: "startup-bind-state").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let port = try freePort()
        let child = try ChildProcess(path: bin, arguments: ["serve", "--zones", dir, "--listen", "127.0.0.1:\(port)", "--workers", "1",
                                                            "--log-level", "info", "--state-dir", state])
        defer { Task { await child.stop(grace: .seconds(2)) } }
        // Bounded: 30 s in 1 ms steps.
        let deadline = ContinuousClock.now + .seconds(30)
        while !Self.udpPortTaken(port) && child.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(Self.udpPortTaken(port), "the port was never bound: \(child.stderrText)")
        // Bound while the zone is still being read: it is logged once loaded.
        let logAtBind = child.stderrText
        #expect(!logAtBind.contains("loaded zone"), "the zone was loaded before the socket was bound:\n\(logAtBind)")
        // One datagram, no retry: it waits in the socket's queue until the workers start.
        let last = "h\(hosts - 1).big.test."
        let reply = try RawDNSClient(port: port).udpExchange(RawQuery(name: last, type: .a).bytes(), timeout: .seconds(60)).map(DNSReply.init)
        #expect(reply?.rcode == 0)
        #expect(reply?.ancount == 1)
        #expect(child.stderrText.contains("loaded zone big.test.: \(hosts + 3) records"))
    }

    @Test func aPortInUseStopsTheStartBeforeTheZonesAreRead() async throws {
        let dir = try Self.bigZone(hosts: 10)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freePort()
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(SocketAddress.loopbackV4(port: port).withSockaddr { bind(fd, $0, $1) } == 0)
        let out = try await MeridianProcess.run(["serve", "--zones", dir, "--listen", "127.0.0.1:\(port)", "--log-level", "info"])
        #expect(out.status == 1)
        #expect(out.combined.contains("cannot listen"), "\(out.combined)")
        #expect(!out.combined.contains("loaded zone"), "the zones were read before the bind failed:\n\(out.combined)")
    }
}
