import Foundation
import Synchronization
import Testing
import TestSupport

/// Hostile and careless input on the control API, against the real binary: huge override
/// expiries (they crashed the server), log injection through reasons, slow clients holding
/// every connection slot, malformed HTTP, and a readable token file.
@Suite("Control API hardening", .serialized)
struct ControlHardeningTests {
    /// The server still answers DNS and `/healthz` after whatever the test did to it.
    static func expectAlive(_ s: ControlServer, _ context: String) async throws {
        #expect(s.dns.isRunning, "\(context): meridian died; log:\n\(s.dns.logText)")
        #expect(try s.http("GET", "/healthz").status == 200, "\(context)")
        #expect(try await s.answer() == ["192.0.2.10"], "\(context)")
    }

    static func overrideBody(reason: String = "test", expires: String? = nil) -> String {
        let r = String(data: try! JSONSerialization.data(withJSONObject: [reason], options: [.fragmentsAllowed]), encoding: .utf8)!.dropFirst().dropLast()
        var b = "{\"target\": \"dc:ams\", \"state\": \"down\", \"reason\": \(r)"
        if let e = expires { b += ", \"expires_in\": \(e)" }
        return b + "}"
    }

    // MARK: 1. expiry

    /// Regression: `expires_in: 1e16` made the server trap (SIGILL) converting the expiry to
    /// an Int for its log line. Every non-finite, non-positive or too-large expiry is a 400.
    @Test func hugeOrInvalidExpiryIsRejectedAndTheServerSurvives() async throws {
        try await withControl { s in
            for e in ["1e16", "1e308", "-1", "0", "-0.0", "31536001", "\"nan\"", "\"600\"", "true", "null1", "1e999"] {
                let r = try s.http("POST", "/override", json: Self.overrideBody(expires: e))
                #expect(r.status == 400, "expires_in \(e): \(r.status) \(r.text)")
                try await Self.expectAlive(s, "after expires_in \(e)")
            }
            #expect((try JSONSerialization.jsonObject(with: Data(try s.http("GET", "/overrides").body)) as? [Any])?.isEmpty == true)
            // The maximum itself (365 days) is accepted.
            let ok = try s.http("POST", "/override", json: Self.overrideBody(expires: "31536000"))
            #expect(ok.status == 200, "\(ok.text)")
            #expect(try s.http("DELETE", "/override?target=dc:ams").status == 200)
            try await Self.expectAlive(s, "after the maximum")
        }
    }

    /// Regression: `meridian override set ... --expires 200000000000d` crashed the server it
    /// talked to. The CLI refuses it before sending anything.
    @Test func cliRefusesAnExpiryAboveTheMaximum() async throws {
        try await withControl { s in
            for e in ["200000000000d", "366d", "1e400s", "9999999999999999999999h"] {
                let out = try await MeridianProcess.run(["override", "set", "dc:ams", "down", "--reason", "x", "--expires", e,
                                                         "--control", "http://127.0.0.1:\(s.control)"])
                #expect(out.status != 0, "--expires \(e) accepted: \(out.combined)")
                #expect(out.stderr.contains("--expires") && out.stderr.contains("365"), "--expires \(e): \(out.combined)")
                try await Self.expectAlive(s, "after --expires \(e)")
            }
            let ok = try await MeridianProcess.run(["override", "set", "dc:ams", "down", "--reason", "x", "--expires", "10m",
                                                    "--control", "http://127.0.0.1:\(s.control)"])
            #expect(ok.status == 0, "\(ok.combined)")
        }
    }

    // MARK: 3. reasons and logs

    /// Regression: a reason was logged raw, so a newline forged a log line and escape codes
    /// reached the terminal; a 60 KB reason was accepted.
    @Test func reasonsWithControlCharactersOrTooLongAreRejected() async throws {
        try await withControl { s in
            let forged = "x\n2030-01-01T00:00:00+0000 critical meridian.control : FORGED"
            for reason in [forged, "red \u{1B}[31m alert", "nul \u{0}", "del \u{7F}", "c1 \u{85}", "tab\there",
                           String(repeating: "a", count: 60_000), String(repeating: "é", count: 300)] {
                let r = try s.http("POST", "/override", json: Self.overrideBody(reason: reason))
                #expect(r.status == 400, "reason \(reason.debugDescription.prefix(40)): \(r.status) \(r.text)")
            }
            #expect(!s.dns.logText.contains("FORGED"))
            #expect(!s.dns.logText.contains("\u{1B}"))
            let reason = "maintenance \"window\" 42 \\ ünïcode"
            let ok = try s.http("POST", "/override", json: Self.overrideBody(reason: reason))
            #expect(ok.status == 200, "\(ok.text)")
            // Logged once, on one line, with the reason intact (quotes and backslashes escaped).
            try await Task.sleep(for: .milliseconds(200))
            let lines = s.dns.logText.split(separator: "\n").filter { $0.contains("override set by") }
            #expect(lines.count == 1, "\(s.dns.logText)")
            #expect(lines.first?.contains(#"maintenance \"window\" 42 \\ ünïcode"#) == true, "\(lines)")
            #expect(try s.http("DELETE", "/override?target=dc:ams").status == 200)
            try await Self.expectAlive(s, "after reasons")
        }
    }

    // MARK: 2. slow clients

    /// Regression: 40 connections sending one byte a second held all 32 slots and `/healthz`
    /// answered 503 to everyone. Now the oldest still-reading connection is evicted for a new
    /// one, so `/healthz` answers at once throughout; every slow connection is closed by the
    /// head deadline (5 s from accept).
    @Test func healthzAnswersDuringASlowlorisAndSlowClientsAreCutAtTheHeadDeadline() async throws {
        try await withControl { s in
            // Five source addresses, 8 connections each: under the per-address limit, over the total.
            let sources = (0..<40).map { "127.0.0.\(2 + $0 % 5)" }
            let slow = try SlowClients(port: s.control, sources: sources)
            defer { slow.closeAll() }
            let probes = Mutex<[(status: Int, ms: Int)]>([])
            let stop = Atomic<Bool>(false)
            let port = s.control
            let prober = Thread {
                for _ in 0..<60 where !stop.load(ordering: .relaxed) {
                    let t0 = ContinuousClock.now
                    let status = (try? HTTP.request("GET", port: port, path: "/healthz", timeout: .seconds(1)))?.status ?? 0
                    let ms = Int((ContinuousClock.now - t0) / .milliseconds(1))
                    probes.withLock { $0.append((status, ms)) }
                    usleep(200_000)
                }
            }
            prober.start()
            slow.trickle(bytes: Array("GET /healthz HTTP/1.1\r\nHost: x\r\n".utf8), every: .seconds(1), for: .seconds(7.5))
            stop.store(true, ordering: .relaxed)
            usleep(1_300_000)
            let results = probes.withLock { $0 }
            #expect(results.count >= 15)
            #expect(results.allSatisfy { $0.status == 200 && $0.ms < 1000 }, "\(results)")
            #expect(slow.openCount == 0, "still open after 7.5 s: \(slow.closedAfter)")
            #expect(slow.closedAfter.allSatisfy { ($0 ?? .seconds(99)) < .seconds(6.5) }, "\(slow.closedAfter)")
            let m = PromText(try s.http("GET", "/metrics").text)
            #expect(m.value("meridian_control_connections_evicted_total") >= 8)
            #expect(m.value("meridian_control_request_timeouts_total", ["phase": "head"]) >= 1)
            // Logged, but rate-limited: dozens of evictions and timeouts, a few lines (one per
            // kind per 10 s).
            let logged = s.dns.logText.split(separator: "\n").filter { $0.contains("warning") && $0.contains("control: ") }
            #expect(!logged.isEmpty && logged.count <= 4, "\(logged.joined(separator: "\n"))")
            try await Self.expectAlive(s, "after the slowloris")
        }
    }

    /// One client address holds at most 8 connections: a ninth evicts that address's oldest
    /// still-reading connection, and never another address's.
    @Test func perAddressConnectionLimit() async throws {
        try await withControl { s in
            let other = try SlowClients(port: s.control, sources: Array(repeating: "127.0.0.2", count: 8))
            defer { other.closeAll() }
            other.watch(milliseconds: 100)
            let greedy = try SlowClients(port: s.control, sources: Array(repeating: "127.0.0.3", count: 12))
            defer { greedy.closeAll() }
            for _ in 0..<15 where greedy.openCount > 8 { greedy.watch(milliseconds: 100) }
            other.watch(milliseconds: 100)
            #expect(greedy.openCount == 8, "\(greedy.closedAfter)")
            #expect(greedy.closedAfter.prefix(4).allSatisfy { $0 != nil }, "the oldest four go first: \(greedy.closedAfter)")
            #expect(greedy.replies.prefix(4).allSatisfy { String(decoding: $0, as: UTF8.self).hasPrefix("HTTP/1.1 503") })
            #expect(other.openCount == 8, "another address lost connections: \(other.closedAfter)")
            let m = PromText(try s.http("GET", "/metrics").text)
            #expect(m.value("meridian_control_connections_evicted_total", ["reason": "per_address_limit"]) >= 4)
            try await Self.expectAlive(s, "after the per-address limit")
        }
    }

    /// A body that stops arriving is cut at the body deadline (5 s after the head) with a 408.
    @Test func aStalledBodyGetsA408AtTheBodyDeadline() async throws {
        try await withControl { s in
            let t0 = ContinuousClock.now
            let r = try HTTP.exchange(Array("POST /override HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"tar".utf8), port: s.control, timeout: .seconds(8))
            let took = ContinuousClock.now - t0
            #expect(r.status == 408, "\(r.status) \(r.text)")
            #expect(took > .seconds(4.5) && took < .seconds(6.5), "\(took)")
            #expect(PromText(try s.http("GET", "/metrics").text).value("meridian_control_request_timeouts_total", ["phase": "body"]) == 1)
        }
    }

    /// The token is checked on the head: a client without it gets its 401 at once and cannot
    /// make the server wait for a body.
    @Test func aRequestWithoutTheTokenIsRefusedBeforeItsBody() async throws {
        try await withControl(token: "s3cret") { s in
            let t0 = ContinuousClock.now
            let r = try HTTP.exchange(Array("POST /override HTTP/1.1\r\nContent-Length: 60000\r\n\r\n".utf8), port: s.control, timeout: .seconds(8))
            #expect(r.status == 401, "\(r.status) \(r.text)")
            #expect(ContinuousClock.now - t0 < .seconds(1))
        }
    }

    // MARK: malformed HTTP

    struct Bad: Sendable, CustomStringConvertible {
        var name: String
        var raw: [UInt8]
        var status: Int
        var description: String { name }
    }

    static let bad: [Bad] = [
        Bad(name: "huge Content-Length", raw: Array("POST /override HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n".utf8), status: 413),
        Bad(name: "Int.max Content-Length", raw: Array("POST /override HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n".utf8), status: 413),
        Bad(name: "negative Content-Length", raw: Array("POST /override HTTP/1.1\r\nContent-Length: -1\r\n\r\n".utf8), status: 400),
        Bad(name: "signed Content-Length", raw: Array("POST /override HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}".utf8), status: 400),
        Bad(name: "non-numeric Content-Length", raw: Array("POST /override HTTP/1.1\r\nContent-Length: ten\r\n\r\n".utf8), status: 400),
        Bad(name: "two Content-Lengths", raw: Array("POST /override HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".utf8), status: 400),
        Bad(name: "chunked", raw: Array("POST /override HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".utf8), status: 411),
        Bad(name: "long header line", raw: Array(("GET /healthz HTTP/1.1\r\nX-Long: " + String(repeating: "a", count: 20_000) + "\r\n\r\n").utf8), status: 431),
        Bad(name: "long request line", raw: Array(("GET /" + String(repeating: "a", count: 20_000) + " HTTP/1.1\r\n\r\n").utf8), status: 431),
        Bad(name: "too many headers", raw: Array(("GET /healthz HTTP/1.1\r\n" + (0..<200).map { "X-H\($0): 1\r\n" }.joined() + "\r\n").utf8), status: 431),
        Bad(name: "non-UTF-8 path", raw: Array("GET /".utf8) + [0xFF, 0xFE] + Array(" HTTP/1.1\r\n\r\n".utf8), status: 400),
        Bad(name: "percent-encoded non-UTF-8 path", raw: Array("GET /%FF%FE HTTP/1.1\r\n\r\n".utf8), status: 404),
        Bad(name: "header without colon", raw: Array("GET /healthz HTTP/1.1\r\nNoColonHere\r\n\r\n".utf8), status: 400),
        Bad(name: "space before colon", raw: Array("GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n".utf8), status: 400),
        Bad(name: "folded header", raw: Array("GET /healthz HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n".utf8), status: 400),
        Bad(name: "control character in a header", raw: Array("GET /healthz HTTP/1.1\r\nX-A: a\u{1B}[31m\r\n\r\n".utf8), status: 400),
        Bad(name: "bare LF", raw: Array("GET /healthz HTTP/1.1\nHost: x\n\n".utf8), status: 400),
        Bad(name: "empty request", raw: Array("\r\n\r\n".utf8), status: 400),
        Bad(name: "HTTP/2 preface", raw: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8), status: 400),
        Bad(name: "NUL in the method", raw: Array("G\u{0}T /healthz HTTP/1.1\r\n\r\n".utf8), status: 400),
    ]

    /// Every malformed request gets its 4xx at once (well before the 5 s head deadline) and a
    /// closed connection (HTTP.exchange returns only once the server closes), and the server
    /// keeps serving. One server for the whole table: each case also checks it is still alive.
    @Test func malformedRequestsGetA4xxAndAClosedConnection() async throws {
        try await withControl { s in
            for c in Self.bad {
                let t0 = ContinuousClock.now
                let r = try HTTP.exchange(c.raw, port: s.control, timeout: .seconds(8))
                #expect(r.status == c.status, "\(c.name): \(r.status) \(r.text)")
                #expect(ContinuousClock.now - t0 < .seconds(2), "\(c.name) took \(ContinuousClock.now - t0)")
                #expect(r.headers["connection"] == "close", "\(c.name)")
                try await Self.expectAlive(s, c.name)
            }
        }
    }

    // MARK: 4. token file

    static func startWithTokenFile(_ setUp: (URL) throws -> Void) async throws -> (ChildProcess, URL) {
        let controlPort = try freePort(), dnsPort = try freePort()
        let tokenPath = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-token-\(UUID().uuidString)")
        let extra = "  control_token_file: \"\(tokenPath.path)\"\n"
        let dir = try ControlFixture.folder(ControlFixture.yaml(control: "127.0.0.1:\(controlPort)", checks: false, extraServer: extra))
        try setUp(tokenPath)
        let child = try ChildProcess(path: try #require(TestPaths.meridianBinary),
                                     arguments: ["serve", "--config", dir.appendingPathComponent("meridian.yaml").path,
                                                 "--listen", "127.0.0.1:\(dnsPort)"])
        return (child, tokenPath)
    }

    static func waitForLog(_ child: ChildProcess, _ text: String) async throws -> Bool {
        for _ in 0..<100 {
            if child.stderrText.contains(text) || !child.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return child.stderrText.contains(text)
    }

    /// Starts a server whose token file holds a token with `mode`; returns its stderr lines
    /// naming the file once the control API is up.
    static func linesNamingTokenFile(mode: mode_t) async throws -> [Substring] {
        let (child, path) = try await Self.startWithTokenFile { p in
            try "s3cret\n".write(to: p, atomically: true, encoding: .utf8)
            chmod(p.path, mode)
        }
        defer { try? FileManager.default.removeItem(at: path) }
        #expect(try await Self.waitForLog(child, "control API on"), "\(child.stderrText)")
        #expect(child.isRunning)
        await child.stop()
        return child.stderrText.split(separator: "\n").filter { $0.contains(path.path) }
    }

    @Test func aGroupOrWorldReadableTokenFileIsWarnedAbout() async throws {
        for mode: mode_t in [0o644, 0o640, 0o604] {
            let lines = try await Self.linesNamingTokenFile(mode: mode)
            let octal = "0" + String(mode, radix: 8)
            #expect(lines.contains { $0.contains("warning") && $0.contains(octal) }, "mode \(octal): \(lines)")
        }
        #expect(try await Self.linesNamingTokenFile(mode: 0o600).isEmpty)
    }

    @Test(arguments: ["empty", "directory"])
    func anEmptyOrNonRegularTokenFileIsRefused(_ kind: String) async throws {
        let (child, path) = try await Self.startWithTokenFile { p in
            if kind == "empty" {
                try "\n".write(to: p, atomically: true, encoding: .utf8)
                chmod(p.path, 0o600)
            } else {
                try FileManager.default.createDirectory(at: p, withIntermediateDirectories: false)
            }
        }
        defer { try? FileManager.default.removeItem(at: path) }
        #expect(await child.waitForExit(timeout: .seconds(10)), "\(child.stderrText)")
        #expect(child.exitStatus != 0)
        #expect(child.stderrText.contains(path.path) && child.stderrText.contains(kind == "empty" ? "empty" : "not a regular file"),
                "\(child.stderrText)")
    }
}
