import DNSWire
import Glibc
import Synchronization
import Testing
import Zones

@testable import Server

/// A transfer of a signed zone that arrives before the zone's signed view is built waits for
/// it; the build wakes the waiting TCP worker when it finishes (no polling).
@Suite("Signed transfer wake-up")
struct SignedTransferWaitTests {
    private func zone() throws -> Zone {
        func name(_ t: String) throws -> DNSName { try DNSName(t) }
        let soa = try name("ns.example.").wire + name("h.example.").wire + [UInt8](repeating: 0, count: 19) + [60]
        return try Zone(origin: try name("example."), records: [
            ResourceRecord(name: try name("example."), type: .soa, ttl: 60, rdata: soa),
            ResourceRecord(name: try name("example."), type: .ns, ttl: 60, rdata: try name("ns.example.").wire),
        ])
    }

    @Test func waitersRunOnceWhenTheBuildFinishesAndLateOnesAtOnce() throws {
        let z = try zone()
        let build = SignedTransferBuild(zone: z, router: nil)
        let calls = Atomic<Int>(0)
        build.whenReady { calls.add(1, ordering: .relaxed) }
        build.whenReady { calls.add(1, ordering: .relaxed) }
        #expect(calls.load(ordering: .relaxed) == 0)
        #expect(build.view == nil)
        build.finish(SignedTransferView(zone: z, router: nil, records: [], refreshAt: 100, builtAt: 0, milliseconds: 1))
        #expect(calls.load(ordering: .relaxed) == 2)
        #expect(build.view != nil)
        // Registered after the view is there: called right away, and only that one.
        build.whenReady { calls.add(10, ordering: .relaxed) }
        #expect(calls.load(ordering: .relaxed) == 12)
    }

    @Test func aWakeSocketWakesThePollAndIgnoresSignalsAfterClose() throws {
        var pair: [Int32] = [-1, -1]
        let kind = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #expect(socketpair(AF_UNIX, kind, 0, &pair) == 0)
        defer { Glibc.close(pair[0]) }
        let waker = WakeSocket(pair[1])
        waker.signal()
        var p = pollfd(fd: pair[0], events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 1000) == 1)
        var buf = [UInt8](repeating: 0, count: 8)
        #expect(recv(pair[0], &buf, buf.count, 0) == 1)
        waker.close()
        // A build finishing after the worker shut down: nothing is written anywhere, and the
        // reading end sees the closed peer, not a byte.
        waker.signal()
        waker.close()
        #expect(recv(pair[0], &buf, buf.count, 0) == 0)
    }
}
