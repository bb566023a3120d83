import Foundation
import Testing
import TestSupport

/// "Whatever `meridian check` accepts, `serve` starts": health-check rules used to be enforced
/// only when `serve` built the health monitor, so these configs passed `check` (exit 0) and
/// then `serve` refused them without a location. Now the loader rejects each of them, and
/// both commands print the same file:line:column.
@Suite("check agrees with serve", .serialized)
struct CheckAgreesWithServeTests {
    struct Case: Sendable, CustomStringConvertible {
        var why: String
        /// Lines under `checks:` (`name: spec`); the first is `c`, which `primary` uses.
        var checks: [String]
        /// The error is at the first occurrence of `marker` under `checks:`.
        var marker: String
        var message: String
        var description: String { why }
    }

    static let cases: [Case] = [
        Case(why: "interval 0", checks: ["c: { type: tcp, host: 127.0.0.1, port: 9, interval: 0 }"],
             marker: "0 }", message: "check c: interval must be more than 0"),
        Case(why: "interval 0 in checks.defaults", checks: ["c: { type: tcp, host: 127.0.0.1, port: 9 }", "defaults: { interval: 0ms }"],
             marker: "0ms", message: "checks.defaults: interval must be more than 0"),
        Case(why: "unknown DNS rcode", checks: ["c: { type: dns, host: 127.0.0.1, port: 9, name: gslb.test, rcode: NOSUCH }"],
             marker: "NOSUCH", message: "check c: unknown rcode \"NOSUCH\""),
        Case(why: "DNS name too long", checks: ["c: { type: dns, host: 127.0.0.1, port: 9, name: \(String(repeating: "a", count: 70)).test }"],
             marker: "aaaa", message: "check c: bad name"),
        Case(why: "missing ca_file", checks: ["c: { type: https, host: 127.0.0.1, port: 9, ca_file: missing-ca.pem }"],
             marker: "missing-ca.pem", message: "check c: ca_file: CA file not found"),
        Case(why: "ca_file that is not a certificate", checks: ["c: { type: https, host: 127.0.0.1, port: 9, ca_file: gslb.test.zone }"],
             marker: "gslb.test.zone", message: "check c: ca_file: CA file holds no PEM certificate"),
        Case(why: "calculated checks in a cycle",
             checks: ["c: { type: calculated, checks: [d] }", "d: { type: calculated, checks: [c] }"],
             marker: "c] }", message: "check d: calculated checks depend on themselves: c -> d -> c"),
        Case(why: "calculated check naming itself", checks: ["c: { type: calculated, checks: [c] }"],
             marker: "c] }", message: "check c: calculated checks depend on themselves: c -> c"),
        Case(why: "exec check without a program", checks: ["c: { type: exec, command: [] }"],
             marker: "[]", message: "check c: command needs a program to run"),
        Case(why: "line break in an HTTP header", checks: ["c: { type: http, host: 127.0.0.1, port: 9, headers: { \"X-A\": \"1\\r\\nX-B: 2\" } }"],
             marker: "\"X-A\"", message: "check c: header \"X-A\" must not contain a line break"),
    ]

    static func config(checks: [String]) -> String {
        let first = checks[0].split(separator: ":", maxSplits: 1).map(String.init)
        return Fixtures.failoverYAML(checkName: first[0], checkSpec: first[1].trimmingCharacters(in: .whitespaces),
                                     primary: "127.0.0.1", otherChecks: Array(checks.dropFirst())) + "\n"
    }

    @Test(arguments: cases)
    func checkAndServeRefuseTheSameConfig(_ c: Case) async throws {
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        let text = Self.config(checks: c.checks)
        try dir.write("meridian.yaml", contents: text)
        let path = dir.path + "/meridian.yaml"
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let checksLine = try #require(lines.firstIndex(of: "checks:"))
        let lineIndex = try #require(lines.indices.first { $0 > checksLine && lines[$0].contains(c.marker) })
        let column = try #require(lines[lineIndex].range(of: c.marker)).lowerBound.utf16Offset(in: lines[lineIndex]) + 1
        try await Self.expectBothRefuse(path: path, location: "\(path):\(lineIndex + 1):\(column): \(c.message)", why: c.why)
    }

    /// `meridian check` exits 1 and `serve` refuses at load (exit 1, not a start; the bound
    /// only keeps a wrong start from hanging), both printing `location`.
    static func expectBothRefuse(path: String, location: String, why: String) async throws {
        let check = try await MeridianProcess.run(["check", "--config", path])
        #expect(check.status == 1, "\(why): meridian check accepted it:\n\(check.combined)")
        #expect(check.stderr.contains(location), "\(why): expected \(location) in:\n\(check.stderr)")
        let port = try freePort()
        let serve = try await MeridianProcess.run(["serve", "--config", path, "--listen", "127.0.0.1:\(port)"], timeout: .seconds(20))
        #expect(!serve.timedOut && serve.status == 1, "\(why): meridian serve: status \(serve.status):\n\(serve.combined)")
        #expect(serve.combined.contains(location), "\(why): expected \(location) in:\n\(serve.combined)")
    }

    /// docs/configuration.md's `both: { type: calculated, checks: [web, smtp], min: 2 }` over
    /// checks without `host:` (templates): for an endpoint with `check: both`, web and smtp
    /// probe that endpoint's address. It used to pass `check`, then `serve` exited with
    /// `calculated check "both" names unknown check "web"`.
    @Test func calculatedCheckOverTemplatesIsPerEndpoint() async throws {
        let web = try Backend(port: try freePort())
        let smtp = try Backend(port: try freePort())
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove(); web.stop(); smtp.stop() }
        let interval = 0.3, timeout = 0.3, fall = 1
        try dir.write("meridian.yaml", contents: Fixtures.failoverYAML(
            checkName: "both", checkSpec: "{ type: calculated, checks: [web, smtp], min: 2 }", primary: "127.0.0.1",
            otherChecks: ["defaults: { interval: \(Int(interval * 1000))ms, timeout: \(Int(timeout * 1000))ms, rise: 1, fall: \(fall) }",
                          "web: { type: tcp, port: \(web.port) }", "smtp: { type: tcp, port: \(smtp.port) }"]))
        let path = dir.path + "/meridian.yaml"
        let check = try await MeridianProcess.run(["check", "--config", path])
        #expect(check.status == 0, "\(check.combined)")

        try await withGSLB(config: path) { server in
            func answer() async -> [String] {
                ((try? await Dig.short("fo.gslb.test", "A", port: server.port)) ?? []).map { String($0.split(separator: " ").last ?? "") }
            }
            #expect(await secondsUntil(limit: 5) { await answer() == ["127.0.0.1"] } != nil, "primary answers while web and smtp listen; log:\n\(server.logText)")

            smtp.stop()
            let bound = interval * Double(fall) + timeout + 1
            let moved = await secondsUntil(limit: bound + 5) { await answer() == ["192.0.2.2"] }
            print("calculated template: answer left the endpoint \(moved.map { String(format: "%.2f", $0) } ?? "never") s after smtp closed (bound \(bound) s)")
            #expect(moved != nil && moved! <= bound, "log:\n\(server.logText)")
            #expect(server.logText.contains("\"both@127.0.0.1\""), "the calculated check runs per endpoint address; log:\n\(server.logText)")
        }
    }

    /// The `server:` block: serve refused these at start (listen addresses, a non-loopback
    /// control API without a token, an unreadable token file) while check passed them.
    static let serverCases: [(why: String, server: String, marker: String, message: String)] = [
        ("listen port out of range", "{ listen: [\"127.0.0.1:99999\"] }", "[\"127", "server.listen:"),
        ("control API on a network address without a token", "{ control: \"0.0.0.0:8053\" }", "\"0.0.0.0",
         "server.control 0.0.0.0:8053 is not a loopback address"),
        ("control token file that does not exist", "{ control_token_file: no-such-token }", "no-such-token",
         "server.control_token_file"),
    ]

    @Test(arguments: serverCases.indices)
    func checkAndServeRefuseTheSameServerBlock(_ i: Int) async throws {
        let c = Self.serverCases[i]
        let dir = try TemporaryZoneFolder(copying: Fixtures.root.appendingPathComponent("gslb").path)
        defer { dir.remove() }
        let text = Fixtures.failoverYAML(checkName: "c", checkSpec: "{ type: tcp, host: 127.0.0.1, port: 9 }", server: c.server)
        try dir.write("meridian.yaml", contents: text)
        let path = dir.path + "/meridian.yaml"
        let first = try #require(text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init))
        let column = try #require(first.range(of: c.marker)).lowerBound.utf16Offset(in: first) + 1
        try await Self.expectBothRefuse(path: path, location: "\(path):1:\(column): \(c.message)", why: c.why)
    }
}
