import Foundation
import Glibc
import Testing
import TestSupport

/// Issue 13: a reload's load runs under SCHED_IDLE, so a query worker on the same CPU takes
/// the CPU from it the moment a packet comes, and a load starved there goes back to the
/// default policy so that the reload still finishes.
@Suite("Reload scheduling", .serialized)
struct ReloadSchedulingTests {
    static let idle: Int32 = 5          // SCHED_IDLE (Linux)

    /// Whether a thread here may leave SCHED_IDLE again (root with CAP_SYS_NICE, or an
    /// RLIMIT_NICE that allows nice 0): the server uses SCHED_IDLE only then.
    static let canLeaveIdle: Bool = {
        let done = DispatchSemaphore(value: 0)
        let ok = Flag()
        let t = Thread {
            var p = sched_param()
            if sched_setscheduler(0, idle, &p) == 0 && sched_setscheduler(0, SCHED_OTHER, &p) == 0 { ok.set() }
            done.signal()
        }
        t.start()
        return done.wait(timeout: .now() + 5) == .success && ok.isSet
    }()

    /// A zone of `count` A records under big.test.
    static func bigZone(_ count: Int) -> String {
        var s = "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"
        s.reserveCapacity(count * 32)
        for i in 0..<count { s += "h\(i) IN A 10.\(i >> 16 & 255).\(i >> 8 & 255).\(i & 255)\n" }
        return s
    }

    /// (thread name, scheduling policy) of every thread of `pid`, from /proc.
    static func threads(_ pid: pid_t) -> [(name: String, policy: Int32)] {
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return [] }
        return tids.compactMap { tid in
            // Field 41 of stat is the policy; fields are counted after the name in parentheses.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            guard rest.count > 38, let policy = Int32(rest[38]) else { return nil }
            return (String(stat[stat.index(after: open)..<close]), policy)
        }
    }

    /// Pins every thread of each process to CPU 0 (`taskset -a -p`).
    static func pinToCPU0(_ pids: [pid_t], taskset: String) async throws {
        for pid in pids {
            let r = try await runCommand(taskset, ["-a", "-p", "-c", "0", "\(pid)"])
            #expect(r.status == 0, "\(r.combined)")
        }
    }

    @Test(.enabled(if: canLeaveIdle, "this process may not leave SCHED_IDLE, so the server does not use it"))
    func theLoadRunsUnderSchedIdleAndTheWorkersDoNot() async throws {
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        try folder.write("big.test.zone", contents: Self.bigZone(40_000))
        try await withMeridian(zones: folder.path) { server in
            server.signal(SIGHUP)
            // Bounded: 10 s of polling; the load thread is `reload-N`, the coordinator `reload`.
            var loadPolicies: Set<Int32> = []
            var workerPolicies: Set<Int32> = []
            let until = Date().addingTimeInterval(10)
            while Date() < until && !server.logText.contains("reload ok") {
                for t in Self.threads(server.child.pid) {
                    if t.name.hasPrefix("reload-") { loadPolicies.insert(t.policy) }
                    if t.name.hasPrefix("dns-udp") { workerPolicies.insert(t.policy) }
                }
                usleep(500)
            }
            #expect(server.logText.contains("reload ok"), "log:\n\(server.logText)")
            #expect(loadPolicies.contains(Self.idle), "the load thread's policies seen: \(loadPolicies)")
            #expect(workerPolicies == [SCHED_OTHER], "the UDP worker's policies seen: \(workerPolicies)")
            let answer = try await Dig.query("h39999.big.test", "A", port: server.port)
            #expect(answer.answer.map(\.rdata) == ["10.0.156.63"])
        }
    }

    /// A moment of starvation does not take the load out of SCHED_IDLE: a busy loop on the
    /// server's CPU for 0.2 s (shorter than `ThreadPriority.starvedChecks` intervals) leaves
    /// the load thread under SCHED_IDLE once it stops. When one starved 40 ms interval was
    /// enough, such a dip put the rest of a reload under SCHED_OTHER, where the query worker
    /// waited milliseconds for the CPU behind it.
    @Test(.enabled(if: canLeaveIdle, "this process may not leave SCHED_IDLE, so the server does not use it"))
    func aMomentOfStarvationKeepsTheLoadIdle() async throws {
        let taskset = try #require(findExecutable("taskset"))
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        try folder.write("big.test.zone", contents: Self.bigZone(300_000))
        try await withMeridian(zones: folder.path) { server in
            try await Self.pinToCPU0([server.child.pid], taskset: taskset)
            server.signal(SIGHUP)
            // Bounded: 10 s for the load thread to show up under SCHED_IDLE.
            let started = await eventually(10) {
                Self.threads(server.child.pid).contains { $0.name.hasPrefix("reload-") && $0.policy == Self.idle }
            }
            try #require(started, "no load thread under SCHED_IDLE; log:\n\(server.logText)")
            let hog = try ChildProcess(path: taskset, arguments: ["-c", "0", "/bin/sh", "-c", "while :; do :; done"])
            usleep(200_000)
            _ = await hog.stop()
            // After the busy loop: the load thread's policy, in order, until the reload is done
            // (30 s). It goes back to SCHED_OTHER when the load ends, before "reload ok"; a
            // thread taken out of SCHED_IDLE during the busy loop would never be idle again.
            var after: [Int32] = []
            let until = Date().addingTimeInterval(30)
            while Date() < until && !server.logText.contains("reload ok") {
                for t in Self.threads(server.child.pid) where t.name.hasPrefix("reload-") {
                    if after.last != t.policy { after.append(t.policy) }
                }
                usleep(1_000)
            }
            #expect(server.logText.contains("reload ok"), "log:\n\(server.logText)")
            try #require(!after.isEmpty, "the reload finished before the busy loop stopped: nothing to check")
            #expect(after.first == Self.idle, "the load thread's policies after the busy loop, in order: \(after)")
        }
    }

    /// The server and a busy loop share one CPU: under SCHED_IDLE alone the load would get
    /// about 0.3% of it (minutes for this zone); put back under SCHED_OTHER once starved, the
    /// reload finishes in seconds.
    @Test(.enabled(if: canLeaveIdle, "this process may not leave SCHED_IDLE, so the server does not use it"))
    func aStarvedReloadStillFinishes() async throws {
        let taskset = try #require(findExecutable("taskset"))
        let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
        defer { folder.remove() }
        try folder.write("big.test.zone", contents: Self.bigZone(40_000))
        let hog = try ChildProcess(path: "/bin/sh", arguments: ["-c", "while :; do :; done"])
        do {
            try await withMeridian(zones: folder.path) { server in
                try await Self.pinToCPU0([server.child.pid, hog.pid], taskset: taskset)
                let t0 = Date()
                server.signal(SIGHUP)
                let done = await eventually(30) { server.logText.contains("reload ok") }
                let seconds = Date().timeIntervalSince(t0)
                print("starved reload: \(String(format: "%.2f", seconds)) s")
                #expect(done, "log:\n\(server.logText)")
                #expect(seconds < 10, "a reload starved on a busy CPU took \(seconds) s")
                #expect(try await Dig.query("h1.big.test", "A", port: server.port).answer.map(\.rdata) == ["10.0.0.1"])
            }
        } catch {
            _ = await hog.stop()
            throw error
        }
        _ = await hog.stop()
    }
}
