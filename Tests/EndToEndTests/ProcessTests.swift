import DNSWire
import Foundation
import Glibc
import Platform
import Testing
import TestSupport

/// The server's process management against the real binary: health state across reload
/// bursts, exec-check children, privileges, early signals, and reloads that block.
enum ProcessFixtures {
    /// A GSLB config whose primary is checked by `checkSpec` (see `Fixtures.failoverYAML`),
    /// written into a copy of the gslb fixture folder.
    static func folder(checkSpec: String, server: String? = nil) throws -> TemporaryZoneFolder {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        try dir.write("meridian.yaml", contents: Fixtures.failoverYAML(checkName: "be", checkSpec: checkSpec, server: server))
        return dir
    }

    /// The first A address answered for fo.gslb.test, or nil (no answer, timeout).
    static func answer(_ client: RawDNSClient, id: UInt16) -> String? {
        let q = DNSWire.QueryBuilder.query(id: id, name: try! DNSName("fo.gslb.test."), type: .a)
        guard let r = try? client.udpExchange(q, timeout: .seconds(1)), let m = try? Message(decoding: r) else { return nil }
        return m.answers.first.flatMap { IPAddress(bytes: $0.rdata)?.description }
    }

    /// pids whose whole command line is `command` (pgrep -f with anchors).
    static func pids(_ command: String) async throws -> [String] {
        let out = try await runCommand(findExecutable("pgrep") ?? "/usr/bin/pgrep", ["-f", "^\(command)$"], timeout: .seconds(5))
        return out.stdout.split(separator: "\n").map(String.init)
    }

    /// A zone of `records` A records, big enough that loading it takes a while (about 1.4 s
    /// per 100,000 records in a debug build here).
    static func bigZone(records: Int) -> String {
        var s = "$ORIGIN gslb.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n  IN NS ns1\nns1 IN A 192.0.2.53\n"
        s.reserveCapacity(records * 30)
        for i in 0..<records { s += "h\(i) IN A 10.\((i >> 16) & 255).\((i >> 8) & 255).\(i & 255)\n" }
        return s
    }

    static func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }
}

/// Item 1: a reload carries every check's state, settled or not; two SIGHUPs 0.3 s apart and
/// a burst of 50 never send an answer to an endpoint whose check says down.
@Suite("Health across reload bursts", .serialized)
struct ReloadBurstHealthTests {
    @Test func downEndpointGetsNoAnswerThroughReloadBursts() async throws {
        // Nothing listens on this port: the primary's check fails (connection refused).
        let closedPort = try freePort()
        let dir = try ProcessFixtures.folder(checkSpec: "{ type: tcp, host: 127.0.0.1, port: \(closedPort), interval: 2s, timeout: 1s, rise: 2, fall: 2 }")
        defer { dir.remove() }
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            let client = RawDNSClient(host: "127.0.0.1", port: server.port)
            #expect(ProcessFixtures.answer(client, id: 1) == "192.0.2.2", "the start-up round found the primary down; log:\n\(server.logText)")
            let port = server.port
            let stop = Flag()
            let loader = Task.detached { () -> (sent: Int, toDown: Int) in
                let c = RawDNSClient(host: "127.0.0.1", port: port)
                var sent = 0, toDown = 0
                // Bounded: at most 100,000 queries and 60 s.
                let deadline = Date().addingTimeInterval(60)
                while sent < 100_000 && Date() < deadline && !stop.isSet {
                    sent += 1
                    if ProcessFixtures.answer(c, id: UInt16(truncatingIfNeeded: sent)) == "192.0.2.1" { toDown += 1 }
                }
                return (sent, toDown)
            }
            server.signal(SIGHUP)
            try await Task.sleep(for: .milliseconds(300))
            server.signal(SIGHUP)
            try await Task.sleep(for: .seconds(1))
            for _ in 0..<50 {
                server.signal(SIGHUP)
                try await Task.sleep(for: .milliseconds(20))
            }
            // Let the last reloads finish and the new monitors run (bounded: 50 x 100 ms).
            var last = -1
            for _ in 0..<50 {
                try await Task.sleep(for: .milliseconds(100))
                let n = ProcessFixtures.count("reload ok", in: server.logText)
                if n == last { break }
                last = n
            }
            try await Task.sleep(for: .seconds(1))
            stop.set()
            let r = await loader.value
            print("reload burst: \(r.sent) queries, \(r.toDown) answered with the down endpoint, \(last) reloads")
            #expect(r.sent > 100)
            #expect(last >= 3, "reloads happened; log:\n\(server.logText)")
            #expect(r.toDown == 0, "no answer may point to the endpoint that is down")
        }
    }
}

/// Item 2: exec-check children die with their check, see a minimal environment and no
/// inherited descriptors.
@Suite("Exec check processes", .serialized)
struct ExecCheckProcessTests {
    @Test func backgroundAndSetsidChildrenDoNotOutliveTheirCheck() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        try dir.write("meridian.yaml", contents: Fixtures.failoverNamePreamble + """
            checks:
              bg: { type: exec, command: [/bin/sh, -c, "sleep 1002 & exit 0"], interval: 500ms, timeout: 2s }
              escaped: { type: exec, command: [/bin/sh, -c, "setsid sleep 1003 & sleep 0.2; exit 0"], interval: 500ms, timeout: 2s }
            endpoints:
              primary: { v4: 192.0.2.1, check: bg }
              backup: { v4: 192.0.2.2, check: escaped }
            """)
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            // A few rounds (500 ms apart), then the sweep (1 s) has had time to run.
            try await Task.sleep(for: .seconds(3))
            let bg = try await ProcessFixtures.pids("sleep 1002")
            let escaped = try await ProcessFixtures.pids("sleep 1003")
            // A check in flight may own one right now; more means they pile up.
            #expect(bg.count <= 1, "background children outlive their check: \(bg)")
            #expect(escaped.count <= 1, "setsid children outlive their check: \(escaped); log:\n\(server.logText)")
        }
        // withGSLB stopped meridian with SIGTERM: nothing of its checks may be left.
        try await Task.sleep(for: .milliseconds(500))
        let bg = try await ProcessFixtures.pids("sleep 1002")
        let escaped = try await ProcessFixtures.pids("sleep 1003")
        #expect(bg.isEmpty && escaped.isEmpty, "left after meridian stopped: \(bg) \(escaped)")
        for p in bg + escaped { kill(pid_t(p) ?? 0, SIGKILL) }
    }

    @Test func execChildGetsMinimalEnvironmentAndOnlyStandardDescriptors() async throws {
        // A variable the server's environment carries (it inherits the test runner's).
        setenv("MERIDIAN_TEST_SECRET", "do-not-leak", 1)
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        let out = dir.path
        try dir.write("meridian.yaml", contents: Fixtures.failoverNamePreamble + """
            checks:
              env: { type: exec, command: [env], interval: 10s }
              fds: { type: exec, command: [/bin/sh, -c, "ls /proc/self/fd > \(out)/fds.txt"], interval: 300ms }
              envfile: { type: exec, command: [/bin/sh, -c, "env > \(out)/env.txt"], interval: 10s }
            endpoints:
              primary: { v4: 192.0.2.1, check: fds }
              backup: { v4: 192.0.2.2, check: envfile }
              third: { v4: 192.0.2.3, check: env }
            """)
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            try await Task.sleep(for: .seconds(1))
            let env = try dir.read("env.txt")
            let names = Set(env.split(separator: "\n").map { String($0.split(separator: "=").first ?? "") })
            // dash adds PWD of its own; everything else must come from Meridian's fixed list.
            #expect(env.contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"), "env:\n\(env)")
            #expect(names.isSubset(of: ["PATH", "PWD", "OLDPWD", "SHLVL", "_"]), "env:\n\(env)")
            #expect(!env.contains("do-not-leak"))
            let fds = Set(try dir.read("fds.txt").split(separator: "\n").map(String.init))
            // 0, 1 and 2, plus the descriptor ls opened to list the folder.
            #expect(fds.isSubset(of: ["0", "1", "2", "3"]), "inherited descriptors: \(fds.sorted())")
            _ = server
        }
        unsetenv("MERIDIAN_TEST_SECRET")
    }
}

/// Item 3: with server.user set, the first round of checks already runs as that user.
@Suite("Privileges before health checks", .serialized)
struct PrivilegeOrderTests {
    static var canDrop: Bool { getuid() == 0 && getpwnam("nobody") != nil }

    @Test(.enabled(if: PrivilegeOrderTests.canDrop, "needs root and a user named nobody"))
    func firstHealthRoundRunsAsTheConfiguredUser() async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        let shared = try makeTemporaryDirectory(prefix: "meridian-uid")
        defer { try? FileManager.default.removeItem(at: shared) }
        chmod(shared.path, 0o1777)
        // The config and zone must be readable by nobody for later reloads; the first load is as root.
        chmod(dir.path, 0o755)
        let file = shared.appendingPathComponent("uids").path
        try dir.write("meridian.yaml", contents: Fixtures.failoverYAML(checkName: "who",
            checkSpec: "{ type: exec, command: [/bin/sh, -c, \"id -u >> \(file)\"], interval: 300ms }",
            server: "{ user: nobody }"))
        try await withGSLB(config: dir.path + "/meridian.yaml") { server in
            try await Task.sleep(for: .seconds(1))
            let lines = (try? String(contentsOfFile: file, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
            let nobody = String(getpwnam("nobody")!.pointee.pw_uid)
            #expect(!lines.isEmpty, "the check ran; log:\n\(server.logText)")
            #expect(lines.allSatisfy { $0 == nobody }, "uids written by the check, first round included: \(lines)")
        }
    }
}

/// Item 4: signals right after start are queued or handled; one-shot commands die on SIGTERM.
@Suite("Early signals", .serialized)
struct EarlySignalTests {
    /// Whether `pid` blocks SIGHUP (bit 0 of SigBlk in /proc/PID/status).
    static func blocksHangup(_ pid: pid_t) -> Bool {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("SigBlk:") }),
              let mask = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) else { return false }
        return mask & 1 != 0
    }

    /// From the moment the process blocks SIGHUP (a C constructor, before the Swift runtime
    /// and `main`), a SIGHUP is queued for the signal thread: the server never dies of it
    /// (exit 129) and reloads once it runs. What comes before that constructor (the dynamic
    /// loader) cannot be covered from inside the process.
    @Test func hangupRightAfterStartIsQueuedNotFatal() async throws {
        let bin = try #require(TestPaths.meridianBinary)
        for attempt in 0..<20 {
            let port = try freePort()
            let child = try ChildProcess(path: bin, arguments: ["serve", "--zones", Fixtures.zones, "--listen", "127.0.0.1:\(port)"])
            // Bounded: 2 s for the constructor to run.
            let until = Date().addingTimeInterval(2)
            while !Self.blocksHangup(child.pid) && child.isRunning && Date() < until { usleep(100) }
            usleep(useconds_t(attempt % 11) * 1000)
            child.signal(SIGHUP)
            do {
                try await waitUntilAnswering(host: "127.0.0.1", port: port, child: child, what: "meridian serve", probeName: "example.com.")
            } catch {
                Issue.record("attempt \(attempt): \(error)")
            }
            #expect(child.isRunning, "attempt \(attempt): exit status \(child.exitStatus.map(String.init) ?? "-")")
            var reloaded = false
            for _ in 0..<100 where !reloaded && child.isRunning {
                reloaded = child.stderrText.contains("reload ok")
                if !reloaded { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(reloaded, "attempt \(attempt): the early SIGHUP was handled as a reload; log:\n\(child.stderrText)")
            await child.stop()
            if !child.stderrText.contains("reload ok") { break }
        }
    }

    /// The service manager's readiness protocol (systemd `Type=notify`): `READY=1` arrives
    /// once a SIGHUP is a reload, so a SIGHUP sent the moment it arrives (what systemd's
    /// ExecReload does after start) reloads and never kills; each reload is framed by
    /// `RELOADING=1` and `READY=1`, and SIGTERM says `STOPPING=1`. Without the notification a
    /// supervisor has no safe moment to send the first SIGHUP (the dynamic loader runs before
    /// any code of Meridian's can block it).
    @Test func readyNotificationMeansSighupIsAReload() async throws {
        let bin = try #require(TestPaths.meridianBinary)
        let dir = try makeTemporaryDirectory(prefix: "meridian-notify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socketPath = dir.appendingPathComponent("notify").path
        let listener = try NotifyListener(path: socketPath)
        defer { listener.close() }
        for attempt in 0..<5 {
            let port = try freePort()
            let child = try ChildProcess(path: bin, arguments: ["serve", "--zones", Fixtures.zones, "--listen", "127.0.0.1:\(port)"],
                                         environment: ["NOTIFY_SOCKET": socketPath])
            let ready = listener.next(timeout: 20)
            child.signal(SIGHUP)
            #expect(ready?.contains("READY=1") == true && ready?.contains("MAINPID=\(child.pid)") == true,
                    "attempt \(attempt): first notification \(ready ?? "none"); log:\n\(child.stderrText)")
            let reloading = listener.next(timeout: 10)
            let readyAgain = listener.next(timeout: 10)
            #expect(reloading?.hasPrefix("RELOADING=1") == true, "attempt \(attempt): \(reloading ?? "none")")
            #expect(readyAgain?.contains("READY=1") == true && readyAgain?.contains("reload 1 ok") == true, "attempt \(attempt): \(readyAgain ?? "none")")
            #expect(child.isRunning, "attempt \(attempt): exit status \(child.exitStatus.map(String.init) ?? "-"); log:\n\(child.stderrText)")
            #expect(child.stderrText.contains("reload ok"), "attempt \(attempt): log:\n\(child.stderrText)")
            let answer = try await Dig.short("www.example.com.", port: port)
            #expect(!answer.isEmpty, "attempt \(attempt): answering after the early reload")
            child.signal(SIGTERM)
            let stopping = listener.next(timeout: 10)
            #expect(stopping == "STOPPING=1", "attempt \(attempt): \(stopping ?? "none")")
            await child.stop()
        }
    }

    /// systemd itself accepts the shipped unit (with the built binary in place of the
    /// installed one): `systemd-analyze verify` reports no problem.
    @Test(.enabled(if: findExecutable("systemd-analyze") != nil, "systemd-analyze is not installed"))
    func systemdAcceptsTheUnit() async throws {
        let bin = try #require(TestPaths.meridianBinary)
        let dir = try makeTemporaryDirectory(prefix: "meridian-unit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let unit = try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("deploy/systemd/meridian.service"), encoding: .utf8)
        let path = dir.appendingPathComponent("meridian.service").path
        try unit.replacingOccurrences(of: "/usr/local/bin/meridian", with: bin).write(toFile: path, atomically: true, encoding: .utf8)
        let out = try await runCommand(findExecutable("systemd-analyze")!, ["verify", path], timeout: .seconds(30))
        #expect(out.status == 0 && out.stderr.isEmpty && out.stdout.isEmpty, "systemd-analyze verify: \(out.status)\n\(out.stdout)\(out.stderr)")
    }

    /// `meridian check` on a zone that takes about a second: SIGTERM ends it at once.
    @Test func checkDiesOnSigterm() async throws {
        let dir = try makeTemporaryDirectory(prefix: "meridian-bigcheck")
        defer { try? FileManager.default.removeItem(at: dir) }
        try ProcessFixtures.bigZone(records: 150_000).write(toFile: dir.appendingPathComponent("gslb.test.zone").path, atomically: true, encoding: .utf8)
        let child = try ChildProcess(path: try #require(TestPaths.meridianBinary), arguments: ["check", "--zones", dir.path])
        try await Task.sleep(for: .milliseconds(300))
        #expect(child.isRunning, "the check should still be loading after 300 ms")
        let t0 = Date()
        child.signal(SIGTERM)
        let ended = await child.waitForExit(timeout: .seconds(2))
        if !ended { child.signal(SIGKILL); _ = await child.waitForExit(timeout: .seconds(5)) }
        #expect(ended, "meridian check ignored SIGTERM")
        #expect(child.exitStatus == 128 + SIGTERM, "exit status \(child.exitStatus.map(String.init) ?? "-") after \(Date().timeIntervalSince(t0)) s")
    }
}

/// Item 5: reloads run off the signal thread.
@Suite("Reloads off the signal thread", .serialized)
struct ReloadThreadTests {
    /// A zone file replaced by a FIFO blocks `open` (or, once loaders refuse non-regular files,
    /// fails at once): either way SIGTERM must stop the server within 2 s.
    @Test func sigtermDuringABlockedReloadStopsTheServer() async throws {
        let dir = try ProcessFixtures.folder(checkSpec: "{ type: file, file: state, interval: 1s }")
        defer { dir.remove() }
        try dir.write("state", contents: "up\n")
        let port = try freePort()
        let server = try await MeridianProcess.start(["serve", "--config", dir.path + "/meridian.yaml", "--listen", "127.0.0.1:\(port)"],
                                                     port: port, probeName: "gslb.test.")
        let zone = dir.path + "/gslb.test.zone"
        unlink(zone)
        #expect(mkfifo(zone, 0o644) == 0)
        server.signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(300))
        #expect(server.isRunning)
        let t0 = Date()
        server.signal(SIGTERM)
        let ended = await server.child.waitForExit(timeout: .seconds(2))
        print("SIGTERM during a FIFO reload: stopped after \(Date().timeIntervalSince(t0)) s")
        #expect(ended, "SIGTERM was not handled during the reload; log:\n\(server.logText)")
        await server.stop(grace: .milliseconds(100))
    }

    /// Two SIGHUPs while a slow reload runs coalesce into exactly one more reload.
    @Test func hangupsDuringAReloadCoalesceIntoOne() async throws {
        let dir = try ProcessFixtures.folder(checkSpec: "{ type: file, file: state, interval: 1s }")
        defer { dir.remove() }
        try dir.write("state", contents: "up\n")
        try dir.write("gslb.test.zone", contents: ProcessFixtures.bigZone(records: 150_000))
        let port = try freePort()
        let server = try await MeridianProcess.start(["serve", "--config", dir.path + "/meridian.yaml", "--listen", "127.0.0.1:\(port)"],
                                                     port: port, probeName: "gslb.test.", readyTimeout: .seconds(30))
        defer { Task { await server.stop() } }
        server.signal(SIGHUP)
        var started = false
        for _ in 0..<200 where !started {
            started = server.logText.contains("reload 1 started")
            if !started { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(started, "log:\n\(server.logText)")
        server.signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(50))
        server.signal(SIGHUP)
        #expect(!server.logText.contains("reload ok"), "the first reload was over before the extra SIGHUPs: make the zone bigger")
        // Bounded: 30 s for the two reloads, then as long again for a third that must not come.
        var done = false
        let t0 = Date()
        while !done && Date().timeIntervalSince(t0) < 30 {
            done = ProcessFixtures.count("reload ok", in: server.logText) >= 2
            if !done { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(done, "log:\n\(server.logText)")
        try await Task.sleep(for: .seconds(3))
        let log = server.logText
        #expect(ProcessFixtures.count("reload ok", in: log) == 2, "log:\n\(log)")
        #expect(!log.contains("reload 3 started"), "log:\n\(log)")
        await server.stop()
    }
}

/// The receiving end of `$NOTIFY_SOCKET`: an AF_UNIX datagram socket, as systemd binds it.
final class NotifyListener {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        guard let address = SocketAddress(unixPath: path) else { Glibc.close(fd); throw POSIXError(.ENAMETOOLONG) }
        let r = address.withSockaddr { bind(fd, $0, $1) }
        guard r == 0 else { Glibc.close(fd); throw POSIXError(.EADDRINUSE) }
    }

    /// The next datagram as text, or nil after `timeout` seconds.
    func next(timeout: Double) -> String? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    func close() { Glibc.close(fd) }
}
