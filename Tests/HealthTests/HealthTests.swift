import Config
import Foundation
import Glibc
import Synchronization
import Testing
@testable import Health

// Every test runs checks against real servers on 127.0.0.1 that it starts itself, with
// short intervals, and every wait bounded.

func makeSpec(_ name: String, _ kind: CheckSpec.Kind, interval: Double = 0.2, timeout: Double = 1,
              rise: Int = 2, fall: Int = 3) -> CheckSpec {
    var s = CheckSpec(name: name, kind: kind)
    s.interval = interval
    s.timeout = timeout
    s.rise = rise
    s.fall = fall
    return s
}

/// Runs one check's start-up round and returns its status.
func settle(_ spec: CheckSpec, log: CaptureLog = CaptureLog()) throws -> CheckStatus {
    let m = try HealthMonitor(checks: [spec], endpointChecks: [0: spec.name], endpointCount: 1, logger: log.logger)
    defer { m.stop() }
    let settled = try m.runInitialRound(timeout: 10)
    #expect(settled)
    let s = try #require(m.status(check: spec.name))
    #expect(m.snapshot.state(0) == s.state)
    return s
}

func http(_ port: UInt16, tls: Bool = false, _ edit: (inout CheckSpec.HTTPCheck) -> Void = { _ in }) -> CheckSpec.Kind {
    var h = CheckSpec.HTTPCheck(tls: tls, host: "127.0.0.1", port: port)
    edit(&h)
    return .http(h)
}

// MARK: - TCP

@Test func tcpListenerIsUp() throws {
    let l = TCPListener()
    defer { l.close() }
    let s = try settle(makeSpec("tcp", .tcp(host: "127.0.0.1", port: l.port)))
    #expect(s.state == .up)
    #expect(s.lastResult?.reason.contains("connected") == true)
}

@Test func tcpRefusedIsDownWithReason() throws {
    let p = RefusedPort()
    defer { p.close() }
    let s = try settle(makeSpec("tcp", .tcp(host: "127.0.0.1", port: p.port)))
    #expect(s.state == .down)
    #expect(s.lastResult?.reason.contains("Connection refused") == true, "\(s.lastResult?.reason ?? "")")
}

// MARK: - HTTP

struct HTTPCase: Sendable, CustomStringConvertible {
    var description: String
    var reply: HTTPReply
    var expectStatus: [Int] = [200]
    var expectBody: String? = nil
    var timeout: Double = 1
    var state: HealthState
    var reason: String
}

let httpCases: [HTTPCase] = [
    HTTPCase(description: "right status", reply: HTTPReply(status: 200), state: .up, reason: "HTTP 200"),
    HTTPCase(description: "listed other status", reply: HTTPReply(status: 301), expectStatus: [200, 301], state: .up, reason: "HTTP 301"),
    HTTPCase(description: "wrong status", reply: HTTPReply(status: 503), state: .down, reason: "HTTP 503, expected 200"),
    HTTPCase(description: "body has text", reply: HTTPReply(body: "all healthy here"), expectBody: "healthy", state: .up, reason: "HTTP 200"),
    HTTPCase(description: "chunked body has text", reply: HTTPReply(body: "all healthy here", chunked: true), expectBody: "healthy", state: .up, reason: "HTTP 200"),
    HTTPCase(description: "wrong body", reply: HTTPReply(body: "sick"), expectBody: "healthy", state: .down, reason: "body lacks \"healthy\""),
    HTTPCase(description: "slow response", reply: HTTPReply(delay: 2), timeout: 0.3, state: .down, reason: "during response"),
]

@Test(arguments: httpCases)
func httpCheck(_ c: HTTPCase) throws {
    let server = TinyHTTPServer { _ in c.reply }
    defer { server.stop() }
    let s = try settle(makeSpec("web", http(server.port) { h in
        h.expectStatus = c.expectStatus
        h.expectBody = c.expectBody
    }, timeout: c.timeout))
    #expect(s.state == c.state)
    #expect(s.lastResult?.reason.contains(c.reason) == true, "\(s.lastResult?.reason ?? "nil")")
}

@Test func httpSendsMethodPathHostAndHeaders() throws {
    let server = TinyHTTPServer { _ in HTTPReply() }
    defer { server.stop() }
    let s = try settle(makeSpec("web", http(server.port) { h in
        h.method = "HEAD"
        h.path = "/healthz?deep=1"
        h.hostHeader = "www.example.test"
        h.headers = ["X-Probe": "meridian"]
    }))
    #expect(s.state == .up)
    let req = try #require(server.requests.withLock { $0.first })
    #expect(req.hasPrefix("HEAD /healthz?deep=1 HTTP/1.1\r\n"))
    #expect(req.contains("\r\nHost: www.example.test\r\n"))
    #expect(req.contains("\r\nX-Probe: meridian\r\n"))
}

@Test func slowButPassingIsDegraded() throws {
    let server = TinyHTTPServer { _ in HTTPReply(delay: 0.15) }
    defer { server.stop() }
    var spec = makeSpec("web", http(server.port), timeout: 2)
    spec.degradedAbove = 0.05
    spec.degradedFactor = 0.25
    let s = try settle(spec)
    #expect(s.state == .degraded(factor: 0.25))
}

// MARK: - HTTPS

@Test func httpsVerification() throws {
    let server = try OpenSSLServer()
    defer { server.stop() }
    let cases: [(String, (inout CheckSpec.HTTPCheck) -> Void, HealthState, String)] = [
        ("CA file, IP name", { $0.caFile = server.certFile }, .up, "HTTP 200"),
        ("CA file, SNI localhost", { $0.caFile = server.certFile; $0.serverName = "localhost" }, .up, "HTTP 200"),
        ("CA file, wrong name", { $0.caFile = server.certFile; $0.serverName = "other.example" }, .down, "certificate verification failed"),
        ("no CA", { _ in }, .down, "certificate verification failed"),
        ("verification off", { $0.verifyCertificate = false }, .up, "HTTP 200"),
        ("body check over TLS", { $0.verifyCertificate = false; $0.expectBody = "s_server" }, .up, "HTTP 200"),
    ]
    for (label, edit, state, reason) in cases {
        let log = CaptureLog()
        let s = try settle(makeSpec("tls", http(server.port, tls: true, edit), timeout: 3), log: log)
        #expect(s.state == state, "\(label): \(s.lastResult?.reason ?? "nil")")
        #expect(s.lastResult?.reason.contains(reason) == true, "\(label): \(s.lastResult?.reason ?? "nil")")
        if label == "verification off" {
            #expect(log.all.contains { $0.hasPrefix("warning") && $0.contains("verification is off") })
        }
    }
}

@Test func tlsHandshakeTimeoutIsDown() throws {
    // The listener completes TCP but never answers the ClientHello.
    let l = TCPListener()
    defer { l.close() }
    let s = try settle(makeSpec("tls", http(l.port, tls: true), timeout: 0.3))
    #expect(s.state == .down)
    #expect(s.lastResult?.reason.contains("during tls handshake") == true, "\(s.lastResult?.reason ?? "nil")")
}

@Test func httpsBadCAFileIsALoadError() {
    let spec = makeSpec("tls", http(443, tls: true) { $0.caFile = "/nonexistent/ca.pem" })
    #expect(throws: HealthError.self) {
        _ = try HealthMonitor(checks: [spec], endpointChecks: [:], endpointCount: 0, logger: CaptureLog().logger)
    }
}

// MARK: - DNS

@Test func dnsCheck() throws {
    let ok = UDPResponder(rcode: 0, answer: [192, 0, 2, 1])
    let nx = UDPResponder(rcode: 3, answer: nil)
    defer { ok.stop(); nx.stop() }
    let closed = boundSocket(Int32(SOCK_DGRAM.rawValue))
    Glibc.close(closed.fd)
    let cases: [(UInt16, String, String?, HealthState, String)] = [
        (ok.port, "NOERROR", "192.0.2.1", .up, "answer 192.0.2.1"),
        (ok.port, "NOERROR", nil, .up, "rcode NOERROR"),
        (ok.port, "NOERROR", "192.0.2.9", .down, "no answer 192.0.2.9 (got 192.0.2.1)"),
        (nx.port, "NOERROR", nil, .down, "rcode NXDOMAIN, expected NOERROR"),
        (nx.port, "NXDOMAIN", nil, .up, "rcode NXDOMAIN"),
        (closed.port, "NOERROR", nil, .down, "Connection refused"),
    ]
    for (port, rcode, answer, state, reason) in cases {
        let s = try settle(makeSpec("dns", .dns(server: "127.0.0.1", port: port, name: "www.example.com", type: "A",
                                                 expectRcode: rcode, expectAnswer: answer), timeout: 0.5))
        #expect(s.state == state, "\(rcode) \(answer ?? "-"): \(s.lastResult?.reason ?? "nil")")
        #expect(s.lastResult?.reason.contains(reason) == true, "\(s.lastResult?.reason ?? "nil")")
    }
}

// MARK: - exec

struct ExecCase: Sendable, CustomStringConvertible {
    var command: [String]
    var timeout: Double = 1
    var state: HealthState
    var reason: String
    var output: String? = nil
    var description: String { command.joined(separator: " ") }
}

@Test(arguments: [
    ExecCase(command: ["/bin/true"], state: .up, reason: "exited 0"),
    ExecCase(command: ["/bin/false"], state: .down, reason: "/bin/false exited 1"),
    ExecCase(command: ["/bin/sh", "-c", "echo broken; exit 3"], state: .down, reason: "exited 3: broken", output: "broken\n"),
    ExecCase(command: ["sleep", "5"], timeout: 0.3, state: .down, reason: "timeout after"),
    ExecCase(command: ["/nonexistent/probe"], state: .down, reason: "spawn /nonexistent/probe"),
])
func execCheck(_ c: ExecCase) throws {
    let began = Date()
    let s = try settle(makeSpec("exec", .exec(command: c.command), timeout: c.timeout))
    #expect(s.state == c.state)
    #expect(s.lastResult?.reason.contains(c.reason) == true, "\(s.lastResult?.reason ?? "nil")")
    if let o = c.output { #expect(s.lastResult?.output == o) }
    // The timed-out child was killed, not waited for.
    #expect(Date().timeIntervalSince(began) < 4.5)
}

@Test func execOutputIsBounded() throws {
    let s = try settle(makeSpec("exec", .exec(command: ["/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"])))
    #expect(s.state == .up)
    #expect(s.lastResult?.output?.utf8.count == ExecChecker.maxOutput)
}

// MARK: - file

@Test(arguments: [
    ("up", HealthState.up, "says up"),
    ("down maintenance window", .down, "says down: maintenance window"),
    ("0.5\n", .degraded(factor: 0.5), "weight 0.5"),
    ("0", .down, "weight 0"),
    ("banana", .down, "expected up, down or a weight"),
])
func fileCheck(content: String, state: HealthState, reason: String) throws {
    let path = tempPath("state")
    try content.write(toFile: path, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    let s = try settle(makeSpec("file", .file(path: path)))
    #expect(s.state == state)
    #expect(s.lastResult?.reason.contains(reason) == true, "\(s.lastResult?.reason ?? "nil")")
}

@Test func fileMissingIsDown() throws {
    let s = try settle(makeSpec("file", .file(path: tempPath("absent"))))
    #expect(s.state == .down)
    #expect(s.lastResult?.reason.contains("No such file") == true)
}

@Test func fileIsReReadWhenItChanges() throws {
    let path = tempPath("state")
    try "up".write(toFile: path, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    let m = try HealthMonitor(checks: [makeSpec("f", .file(path: path), interval: 0.05)], endpointChecks: [0: "f"],
                              endpointCount: 1, logger: CaptureLog().logger)
    defer { m.stop() }
    try m.runInitialRound(timeout: 5)
    #expect(m.snapshot.state(0) == .up)
    try "down draining".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(waitUntil(3) { m.snapshot.state(0) == .down })
    try "0.25".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(waitUntil(3) { m.snapshot.state(0) == .degraded(factor: 0.25) })
}

// MARK: - calculated

@Test func calculatedNeedsMinimumHealthy() throws {
    let l = TCPListener()
    let p = RefusedPort()
    defer { l.close(); p.close() }
    let checks = [
        makeSpec("lb", .tcp(host: "127.0.0.1", port: l.port)),
        makeSpec("db", .tcp(host: "127.0.0.1", port: p.port)),
        makeSpec("any", .calculated(checks: ["lb", "db"], minimum: 1)),
        makeSpec("both", .calculated(checks: ["lb", "db"], minimum: 2)),
    ]
    let m = try HealthMonitor(checks: checks, endpointChecks: [0: "any", 1: "both"], endpointCount: 2, logger: CaptureLog().logger)
    defer { m.stop() }
    #expect(try m.runInitialRound(timeout: 5))
    #expect(m.snapshot.states == [.up, .down])
    let both = try #require(m.status(check: "both"))
    #expect(both.lastResult?.reason == "1 of 2 healthy, need 2")
}

@Test(arguments: [
    ([makeSpec("a", .calculated(checks: ["b"], minimum: 1)), makeSpec("b", .calculated(checks: ["a"], minimum: 1))], [Int: String](), "depends on itself"),
    ([makeSpec("a", .calculated(checks: ["nope"], minimum: 1))], [:], "unknown check \"nope\""),
    ([makeSpec("a", .tcp(host: "127.0.0.1", port: 1)), makeSpec("a", .tcp(host: "127.0.0.1", port: 2))], [:], "defined twice"),
    ([makeSpec("a", .tcp(host: "127.0.0.1", port: 1))], [0: "b"], "unknown check \"b\""),
    ([makeSpec("a", .exec(command: []))], [:], "empty command"),
    ([makeSpec("a", .dns(server: "127.0.0.1", port: 53, name: "x.", type: "A", expectRcode: "WHAT", expectAnswer: nil))], [:], "unknown rcode"),
])
func badSetupIsAnError(checks: [CheckSpec], endpoints: [Int: String], message: String) {
    do {
        _ = try HealthMonitor(checks: checks, endpointChecks: endpoints, endpointCount: 1, logger: CaptureLog().logger)
        Issue.record("expected an error containing \(message)")
    } catch {
        #expect(error.message.contains(message), "\(error.message)")
    }
}

// MARK: - Hysteresis

@Test func hysteresisKeepsStateUntilFallAndRiseInARow() throws {
    // Failures in runs shorter than fall = 3, then failing for good, then passing for good.
    let script = [200, 500, 500, 200, 500, 200, 500, 500, 200, 500, 200, 200]
    let mode = Mutex(500)
    let server = TinyHTTPServer { i in HTTPReply(status: i < script.count ? script[i] : mode.withLock { $0 }) }
    defer { server.stop() }
    let changes = Mutex<[HealthSnapshot]>([])
    let log = CaptureLog()
    let m = try HealthMonitor(checks: [makeSpec("web", http(server.port), interval: 0.03, timeout: 1, rise: 2, fall: 3)],
                              endpointChecks: [0: "web"], endpointCount: 1, workers: 2, logger: log.logger) { s in
        changes.withLock { $0.append(s) }
    }
    defer { m.stop() }
    try m.runInitialRound(timeout: 5)
    #expect(waitUntil(10) { m.snapshot.state(0) == .down })
    // Down only on the third failure in a row after the script: request index script.count + 2.
    #expect(server.requestCount >= script.count + 3)
    // Snapshots are also published when only the suspect set changes (a failed probe before
    // fall, the flap window after a change); the states they carry changed once.
    func stateChanges() -> [[HealthState]] {
        changes.withLock { $0.map(\.states) }.reduce(into: []) { out, s in if out.last != s { out.append(s) } }
    }
    #expect(stateChanges() == [[.up], [.down]] || stateChanges() == [[.down]])
    #expect(changes.withLock { $0.contains { $0.states == [.up] && $0.suspect == [true] } }, "failing before fall is suspect")
    #expect(changes.withLock { $0.first { $0.states == [.down] }?.suspect } == [true], "just changed state: flapping")
    let down = log.all.filter { $0.contains("up -> down") }
    #expect(down.count == 1)
    #expect(down.first?.contains("HTTP 500, expected 200") == true)
    #expect(down.first?.contains("\"web\" (endpoints 0)") == true)
    #expect(down.first?.contains(" after ") == true) // how long the old state lasted
    #expect(m.status(check: "web")?.lastResult?.reason == "HTTP 500, expected 200")

    let before = server.requestCount
    mode.withLock { $0 = 200 }
    #expect(waitUntil(10) { m.snapshot.state(0) == .up })
    #expect(server.requestCount - before >= 2)
    #expect(log.all.contains { $0.contains("down -> up") && $0.contains("HTTP 200") })
    #expect(stateChanges().suffix(2) == [[.down], [.up]])
    // The flap window (fall x interval = 90 ms) runs out at a later probe.
    #expect(waitUntil(5) { m.snapshot.suspect == [false] })
}

@Test func initialStateStandsWhenTheFirstRoundDoesNotSettle() throws {
    var spec = makeSpec("slow", .exec(command: ["sleep", "5"]), interval: 10, timeout: 3)
    spec.initialState = .down
    let m = try HealthMonitor(checks: [spec], endpointChecks: [0: "slow"], endpointCount: 1, logger: CaptureLog().logger)
    defer { m.stop() }
    #expect(try m.runInitialRound(timeout: 0.3) == false)
    #expect(m.snapshot.state(0) == .down)
    #expect(m.status(check: "slow")?.settled == false)
}

@Test func sharedCheckRunsOncePerInterval() throws {
    let server = TinyHTTPServer { _ in HTTPReply() }
    defer { server.stop() }
    let m = try HealthMonitor(checks: [makeSpec("web", http(server.port), interval: 0.2)],
                              endpointChecks: [0: "web", 1: "web", 2: "web", 3: "web", 4: "web"],
                              endpointCount: 5, logger: CaptureLog().logger)
    try m.runInitialRound(timeout: 5)
    usleep(1_000_000)
    m.stop()
    // About 6 runs in 1.2 s; five endpoints polling separately would make about 30.
    #expect(server.requestCount <= 9)
    #expect(m.status(check: "web")?.endpoints == [0, 1, 2, 3, 4])
}

// MARK: - Overrides

@Test func overridesApplyAtOnceAndExpire() throws {
    let l = TCPListener()
    defer { l.close() }
    let latest = Mutex<UInt64>(0)
    let log = CaptureLog()
    let m = try HealthMonitor(checks: [makeSpec("tcp", .tcp(host: "127.0.0.1", port: l.port))],
                              endpointChecks: [0: "tcp", 1: "tcp", 2: "tcp"], endpointCount: 3,
                              endpointDatacenters: [0: "ams", 1: "fra", 2: "fra"], logger: log.logger) { s in
        latest.withLock { $0 = s.generation }
    }
    defer { m.stop() }
    try m.runInitialRound(timeout: 5)
    #expect(m.snapshot.states == [.up, .up, .up])

    try m.setOverride(.endpoint(0), state: .down, reason: "drain for deploy", expiresIn: 0.3)
    #expect(m.snapshot.states == [.down, .up, .up]) // at once, no check round needed
    #expect(latest.withLock { $0 } == m.generation)
    let ep = m.endpointStatus()[0]
    #expect(ep.checked == .up && ep.effective == .down && ep.override?.reason == "drain for deploy")
    #expect(m.status(check: "tcp")?.overrides.first?.target == .endpoint(0))
    #expect(waitUntil(3) { m.snapshot.state(0) == .up }) // expiry restores automatic state
    #expect(log.all.contains { $0.contains("endpoint 0: expired") })

    try m.setOverride(.datacenter("fra"), state: .down, reason: "fra maintenance")
    #expect(m.snapshot.states == [.up, .down, .down])
    #expect(m.overrides().map(\.target) == [.datacenter("fra")])
    // An endpoint override beats its datacenter's.
    try m.setOverride(.endpoint(2), state: .up, reason: "canary")
    #expect(m.snapshot.states == [.up, .down, .up])
    #expect(m.clearOverride(.datacenter("fra")))
    #expect(m.clearOverride(.endpoint(2)))
    #expect(m.snapshot.states == [.up, .up, .up])
    #expect(m.clearOverride(.endpoint(2)) == false)

    #expect(throws: HealthError.self) { try m.setOverride(.datacenter("nowhere"), state: .down, reason: "x") }
    #expect(throws: HealthError.self) { try m.setOverride(.endpoint(7), state: .down, reason: "x") }
}

@Test func overrideForcesUpADownEndpoint() throws {
    let p = RefusedPort()
    defer { p.close() }
    let m = try HealthMonitor(checks: [makeSpec("tcp", .tcp(host: "127.0.0.1", port: p.port))],
                              endpointChecks: [0: "tcp"], endpointCount: 1, logger: CaptureLog().logger)
    defer { m.stop() }
    try m.runInitialRound(timeout: 5)
    #expect(m.snapshot.state(0) == .down)
    try m.setOverride(.endpoint(0), state: .up, reason: "check is wrong")
    #expect(m.snapshot.state(0) == .up)
    usleep(300_000)
    #expect(m.snapshot.state(0) == .up) // checks keep failing underneath
    #expect(m.endpointStatus()[0].checked == .down)
}

// MARK: - Failover budget

@Test(arguments: [
    (10.0, 3, 2, 3.0, UInt32(30), 63.0, 50.0),
    (1.0, 2, 1, 0.5, UInt32(5), 7.5, 6.0),
])
func failoverBudgetSums(interval: Double, fall: Int, rise: Int, timeout: Double, ttl: UInt32, down: Double, up: Double) {
    var s = makeSpec("c", .tcp(host: "127.0.0.1", port: 80), interval: interval, timeout: timeout, rise: rise, fall: fall)
    s.interval = interval
    let b = failoverBudget(check: s, ttl: ttl)
    #expect(b.down == down)
    #expect(b.up == up)
    #expect(b.exceeds(rto: down) == nil)
}

@Test func failoverBudgetNamesDominatingParts() {
    let s = makeSpec("c", .tcp(host: "127.0.0.1", port: 80), interval: 10, timeout: 3, rise: 2, fall: 3)
    let b = failoverBudget(check: s, ttl: 300)
    let why = b.exceeds(rto: 60)
    #expect(why == "failover time 333s exceeds rto 60s; dominated by TTL 300s")
    #expect(b.description.hasPrefix("down 333s = interval x fall 30s (10s x 3) + timeout 3s + TTL 300s; dominated by TTL"))
    let short = failoverBudget(check: s, ttl: 5)
    #expect(short.exceeds(rto: 20) == "failover time 38s exceeds rto 20s; dominated by interval x fall 30s")
    // Calculated: the worst member.
    let slow = makeSpec("slow", .tcp(host: "127.0.0.1", port: 80), interval: 30, timeout: 5, rise: 2, fall: 3)
    let calc = makeSpec("calc", .calculated(checks: ["c", "slow"], minimum: 2))
    let cb = failoverBudget(check: calc, ttl: 5, checks: ["c": s, "slow": slow])
    #expect(cb.down == 100)
    #expect(cb.exceeds(rto: 50)?.contains("calc/interval x fall 90s") == true)
}

/// With `ttl_when_failing`, down = max(interval x fall + timeout + short TTL, interval +
/// timeout + TTL): answers given before the first failed probe keep the full TTL.
@Test(arguments: [
    // interval, fall, timeout, ttl, short -> down, the parts that dominate
    (10.0, 3, 3.0, UInt32(30), UInt32(10), 43.0, "interval x fall"),      // both paths 43: the failing-probe path shown
    (10.0, 3, 3.0, UInt32(300), UInt32(10), 313.0, "TTL"),                // a long TTL still dominates: only 20 s saved
    (10.0, 3, 3.0, UInt32(30), UInt32(30), 63.0, "interval x fall"),      // short == ttl: the old formula
    (10.0, 1, 3.0, UInt32(30), UInt32(5), 43.0, "TTL"),                   // fall 1: the first failed probe is the change
    (2.0, 5, 1.0, UInt32(5), UInt32(1), 12.0, "interval x fall"),         // fall dominates: the short TTL counts
])
func failoverBudgetWithTTLWhenFailing(interval: Double, fall: Int, timeout: Double, ttl: UInt32, short: UInt32, down: Double, dominated: String) {
    let s = makeSpec("c", .tcp(host: "127.0.0.1", port: 80), interval: interval, timeout: timeout, rise: 2, fall: fall)
    let b = failoverBudget(check: s, ttl: ttl, ttlWhenFailing: short)
    #expect(b.down == down, "\(b)")
    #expect(FailoverBudget.dominating(b.downParts).first?.name == dominated, "\(b)")
    #expect(b.up == interval * 2 + Double(ttl), "recovery is not shortened")
}

// MARK: - Parsing

/// The one parser of override target text (CLI, control API, drill).
@Test(arguments: [
    ("dc:ams", OverrideTargetName?.some(.init(kind: .datacenter, name: "ams"))), ("datacenter:fra-1", .init(kind: .datacenter, name: "fra-1")),
    ("DC:ams", .init(kind: .datacenter, name: "ams")), ("endpoint:ams-1", .init(kind: .endpoint, name: "ams-1")),
    ("ep:3", .init(kind: .endpoint, name: "3")), ("dc:a:b", .init(kind: .datacenter, name: "a:b")),
    ("ep:", nil), ("dc:", nil), ("pool:x", nil), ("ams", nil), ("", nil), ("datacenter iad", nil),
])
func overrideTargetNameParsing(text: String, target: OverrideTargetName?) {
    #expect(OverrideTargetName(parsing: text) == target)
    if let target { #expect(OverrideTargetName(parsing: target.description) == target, "the canonical form reads back") }
}

@Test func overrideTargetNameCanonicalForm() {
    #expect(OverrideTargetName(parsing: "datacenter:ams")?.description == "dc:ams")
    #expect(OverrideTargetName(parsing: "ep:ams-1")?.description == "endpoint:ams-1")
}

@Test(arguments: [
    ("up", HealthState?.some(.up)), ("DOWN", .down), ("degraded", .degraded(factor: 0.5)),
    ("degraded:0.3", .degraded(factor: 0.3)), ("0.25", .degraded(factor: 0.25)), ("0", .down), ("1", .up),
    ("1.5", nil), ("sideways", nil),
])
func healthStateParsing(text: String, state: HealthState?) {
    #expect(parseHealthState(text) == state)
}
