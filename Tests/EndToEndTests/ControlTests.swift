import DNSWire
import Foundation
import Testing
import TestSupport

/// A running `meridian serve` with its control API, on free ports, in a private folder.
struct ControlServer {
    let dns: MeridianProcess
    let control: UInt16
    let folder: URL

    func http(_ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:]) throws -> HTTP.Reply {
        var h = headers
        if json != nil { h["Content-Type"] = "application/json" }
        return try HTTP.request(method, port: control, path: path, headers: h, body: json.map { Array($0.utf8) })
    }

    func answer(_ name: String = "www.ctl.test") async throws -> [String] {
        try await Dig.query(name, "A", port: dns.port).answer.map(\.rdata).sorted()
    }
}

enum ControlFixture {
    static let zone = """
        $ORIGIN ctl.test.
        $TTL 3600
        @    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
             IN NS  ns1
        ns1  IN A   192.0.2.53

        """

    /// `www` fails over from ams to iad. With `checks`, ams-1 has a file check (its state
    /// file says up) so the status view has a failover budget; without, there is no check at
    /// all and overrides still work.
    static func yaml(control: String, token: String? = nil, checks: Bool, extraServer: String = "") -> String {
        var y = """
            server:
              control: "\(control)"

            """
        if let t = token { y += "  control_token: \"\(t)\"\n" }
        y += extraServer
        y += """
            defaults:
              ttl: 30
            zones:
              ctl.test:
                file: ctl.test.zone
                names:
                  www:
                    rto: { target: 20s, enforce: false }   # over its budget on purpose: status reports it
                    policy: { failover: [ams, iad] }
            datacenters:
              ams: { lat: 52.37, lon: 4.90 }
              iad: { lat: 38.95, lon: -77.45 }

            """
        if checks {
            y += """
                checks:
                  state: { type: file, file: ams.state, interval: 1s, timeout: 1s }
                endpoints:
                  ams-1: { v4: 192.0.2.10, dc: ams, check: state }
                  iad-1: { v4: 198.51.100.10, dc: iad }

                """
        } else {
            y += """
                endpoints:
                  ams-1: { v4: 192.0.2.10, dc: ams }
                  iad-1: { v4: 198.51.100.10, dc: iad }

                """
        }
        return y
    }

    static func folder(_ yaml: String) throws -> URL {
        let dir = try makeTemporaryDirectory(prefix: "meridian-control")
        try zone.write(to: dir.appendingPathComponent("ctl.test.zone"), atomically: true, encoding: .utf8)
        try yaml.write(to: dir.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
        try "up\n".write(to: dir.appendingPathComponent("ams.state"), atomically: true, encoding: .utf8)
        return dir
    }
}

/// Starts a server with the control API on loopback for `body`, retrying on port races.
/// `config` replaces the fixture's configuration: it gets the control address to put in
/// `server.control` and returns the whole file (zone `ctl.test` from `ControlFixture.zone`).
func withControl(checks: Bool = false, token: String? = nil, stopsItself: Bool = false, config: ((String) -> String)? = nil,
                 _ body: (ControlServer) async throws -> Void) async throws {
    var started: ControlServer?
    var lastError: Error?
    for _ in 0..<3 where started == nil {
        let dnsPort = try freePort(), controlPort = try freePort()
        let control = "127.0.0.1:\(controlPort)"
        let dir = try ControlFixture.folder(config?(control) ?? ControlFixture.yaml(control: control, token: token, checks: checks))
        do {
            let p = try await MeridianProcess.start(["serve", "--config", dir.appendingPathComponent("meridian.yaml").path,
                                                     "--listen", "127.0.0.1:\(dnsPort)"], port: dnsPort, probeName: "ctl.test.")
            started = ControlServer(dns: p, control: controlPort, folder: dir)
        } catch { lastError = error }
    }
    guard let s = started else { throw lastError ?? SocketError.noFreePort }
    // The control API starts right after DNS answers: wait (bounded) for /healthz.
    var ready = false
    for _ in 0..<100 where !ready {
        if let r = try? HTTP.request("GET", port: s.control, path: "/healthz", headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:]),
           r.status == 200 { ready = true } else { try await Task.sleep(for: .milliseconds(20)) }
    }
    #expect(ready, "control API never answered; log:\n\(s.dns.logText)")
    do { try await body(s) } catch { await s.dns.stop(); throw error }
    if !stopsItself { #expect(s.dns.isRunning, "meridian died; log:\n\(s.dns.logText)") }
    await s.dns.stop()
    try? FileManager.default.removeItem(at: s.folder)
}

/// The Prometheus text format, parsed strictly enough to catch mistakes: every sample
/// belongs to a family declared by `# TYPE` before it, a family's samples are contiguous,
/// label values are quoted, values are numbers.
struct PromText {
    struct Sample: Hashable { var name: String; var labels: [String: String]; var value: Double }
    var types: [String: String] = [:]
    var samples: [Sample] = []
    var errors: [String] = []

    init(_ text: String) {
        var current: String?
        var closed = Set<String>()
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4 else { errors.append("\(n + 1): bad TYPE line"); continue }
                let name = String(parts[2])
                if types[name] != nil { errors.append("\(n + 1): \(name) declared twice") }
                guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else { errors.append("\(n + 1): bad type"); continue }
                types[name] = String(parts[3])
                if let c = current { closed.insert(c) }
                current = name
                continue
            }
            if line.hasPrefix("#") { continue }
            var name = "", labels: [String: String] = [:]
            var rest = Substring(line)
            if let brace = line.firstIndex(of: "{") {
                name = String(line[..<brace])
                guard let close = line.lastIndex(of: "}") else { errors.append("\(n + 1): no closing brace"); continue }
                var body = line[line.index(after: brace)..<close]
                // name="value" pairs; values may contain escaped quotes.
                while !body.isEmpty {
                    guard let eq = body.firstIndex(of: "="), body[body.index(after: eq)...].first == "\"" else { errors.append("\(n + 1): bad label"); break }
                    let key = String(body[..<eq])
                    var i = body.index(eq, offsetBy: 2)
                    var value = ""
                    while i < body.endIndex && body[i] != "\"" {
                        if body[i] == "\\" { i = body.index(after: i) }
                        if i < body.endIndex { value.append(body[i]); i = body.index(after: i) }
                    }
                    labels[key] = value
                    body = i < body.endIndex ? body[body.index(after: i)...] : ""
                    if body.first == "," { body = body.dropFirst() }
                }
                rest = line[line.index(after: close)...]
            } else {
                guard let sp = line.firstIndex(of: " ") else { errors.append("\(n + 1): no value"); continue }
                name = String(line[..<sp])
                rest = line[sp...]
            }
            let valueText = rest.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
            guard let v = Double(valueText) ?? (valueText == "+Inf" ? .infinity : nil) else { errors.append("\(n + 1): bad value \(valueText)"); continue }
            // A histogram's samples are NAME_bucket, NAME_sum and NAME_count of family NAME.
            var family = name
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                let base = String(name.dropLast(suffix.count))
                if types[base] == "histogram" { family = base }
            }
            guard types[family] != nil else { errors.append("\(n + 1): \(name) has no TYPE before it"); continue }
            if current != family || closed.contains(family) { errors.append("\(n + 1): \(name) samples are not contiguous") }
            samples.append(Sample(name: name, labels: labels, value: v))
        }
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in sample.name == name && labels.allSatisfy { k, v in sample.labels[k] == v } }.reduce(0) { $0 + $1.value }
    }
}

@Suite("Control and metrics API", .serialized)
struct ControlTests {
    @Test func metricsParseAndCountersMoveWithQueries() async throws {
        try await withControl { s in
            let before = PromText(try s.http("GET", "/metrics").text)
            #expect(before.errors.isEmpty, "\(before.errors)")
            let n = 40
            let client = RawDNSClient(host: "127.0.0.1", port: s.dns.port)
            let name = try DNSName("www.ctl.test.")
            var answered = 0
            for i in 0..<n {
                let q = DNSWire.QueryBuilder.query(id: UInt16(i), name: name, type: .a)
                if try client.udpExchange(q, timeout: .seconds(2)) != nil { answered += 1 }
            }
            _ = try await Dig.query("nope.ctl.test", "A", port: s.dns.port, options: ["+tcp"])
            let reply = try s.http("GET", "/metrics")
            #expect(reply.status == 200)
            #expect(reply.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            let after = PromText(reply.text)
            #expect(after.errors.isEmpty, "\(after.errors)")
            let udpA = ["protocol": "udp", "qtype": "A", "rcode": "NOERROR"]
            #expect(answered == n)
            #expect(after.value("meridian_dns_responses_total", udpA) - before.value("meridian_dns_responses_total", udpA) >= Double(n))
            #expect(after.value("meridian_dns_responses_total", ["protocol": "tcp", "rcode": "NXDOMAIN"]) >= 1)
            let www = ["name": "www.ctl.test.", "datacenter": "ams"]
            #expect(after.value("meridian_gslb_decisions_total", www) - before.value("meridian_gslb_decisions_total", www) >= Double(n))
            #expect(after.value("meridian_endpoint_health", ["endpoint": "ams-1"]) == 1)
            #expect(after.value("meridian_build_info") == 1)
            #expect(after.value("meridian_reloads_total", ["result": "ok"]) == 1)
            #expect(after.value("meridian_reload_last_success_timestamp_seconds") > 1_600_000_000)
            #expect(after.types["meridian_tcp_connections_open"] == "gauge")
        }
    }

    /// Metric names lint (the rules of coredns:test/metric_naming_test.go and Prometheus'
    /// naming guide): snake_case with the `meridian_` prefix, counters end in `_total`,
    /// nothing else does, and units are spelled out in base units.
    @Test func metricNamesLint() async throws {
        try await withControl(checks: true) { s in
            let p = PromText(try s.http("GET", "/metrics").text)
            #expect(p.errors.isEmpty, "\(p.errors)")
            #expect(p.types.count >= 15)
            for (name, type) in p.types {
                #expect(name.hasPrefix("meridian_"), "\(name)")
                #expect(name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }, "\(name) is not snake_case")
                #expect(!name.contains("__") && !name.hasSuffix("_"), "\(name)")
                #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)")
                for bad in ["_ms", "_millis", "_bytes_total_", "_count"] { #expect(!name.hasSuffix(bad), "\(name)") }
            }
            for sample in p.samples {
                for k in sample.labels.keys { #expect(k.allSatisfy { $0.isLowercase || $0 == "_" }, "label \(k)") }
            }
            #expect(p.types["meridian_health_check_failures_total"] == "counter")
            #expect(p.types["meridian_health_check_latency_seconds"] == "gauge")
        }
    }

    @Test func statusJSONHasTheFields() async throws {
        try await withControl(checks: true) { s in
            let r = try s.http("GET", "/status")
            #expect(r.status == 200 && r.headers["content-type"] == "application/json")
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
            for k in ["version", "config", "loaded_at", "generation", "started_at", "reloads", "endpoints", "names", "overrides"] {
                #expect(obj[k] != nil, "status lacks \(k)")
            }
            let eps = try #require(obj["endpoints"] as? [[String: Any]])
            #expect(eps.map { $0["name"] as? String } == ["ams-1", "iad-1"])
            for e in eps {
                for k in ["name", "datacenter", "state", "checked", "since"] { #expect(e[k] != nil, "endpoint lacks \(k): \(e)") }
            }
            let check = try #require(eps[0]["check"] as? [String: Any])
            for k in ["name", "target", "state", "settled", "last_ok", "last_reason", "last_latency"] { #expect(check[k] != nil, "check lacks \(k)") }
            let names = try #require(obj["names"] as? [[String: Any]])
            let www = try #require(names.first)
            #expect(www["name"] as? String == "www.ctl.test.")
            // file check: interval 1 s + TTL 30 s = 31 s, above the 20 s rto.
            #expect(www["failover_down"] as? Double == 31)
            #expect(www["rto"] as? Double == 20)
            #expect(www["rto_exceeded"] as? Bool == true)
            let reloads = try #require(obj["reloads"] as? [String: Any])
            #expect(reloads["ok"] as? Int == 1 && reloads["failed"] as? Int == 0)
        }
    }

    @Test func overrideOfADatacenterChangesAnswersAtOnceAndDeleteRestores() async throws {
        try await withControl(checks: false) { s in
            #expect(try await s.answer() == ["192.0.2.10"])
            let set = try s.http("POST", "/override", json: #"{"target": "dc:ams", "state": "down", "reason": "maintenance window"}"#)
            #expect(set.status == 200, "\(set.text)")
            let view = try #require(try JSONSerialization.jsonObject(with: Data(set.body)) as? [String: Any])
            #expect(view["target"] as? String == "dc:ams" && view["state"] as? String == "down")
            #expect(view["endpoints"] as? [String] == ["ams-1"])
            #expect(try await s.answer() == ["198.51.100.10"], "the override must apply to the very next query")
            let list = try s.http("GET", "/overrides")
            #expect(list.text.contains("maintenance window"))
            let explain = try s.http("GET", "/explain?name=www.ctl.test&type=A&client=192.0.2.99")
            #expect(explain.status == 200 && explain.text.contains("down: ams-1"), "\(explain.text)")
            let del = try s.http("DELETE", "/override?target=dc:ams")
            #expect(del.status == 200)
            #expect(try await s.answer() == ["192.0.2.10"])
            #expect(try s.http("DELETE", "/override?target=dc:ams").status == 404)
            // Endpoint overrides by name, and the audit log.
            #expect(try s.http("POST", "/override", json: #"{"target": "endpoint:ams-1", "state": "down", "reason": "disk"}"#).status == 200)
            #expect(try await s.answer() == ["198.51.100.10"])
            #expect(try s.http("DELETE", "/override?target=endpoint:ams-1").status == 200)
            #expect(s.dns.logText.contains("override set by 127.0.0.1"), "\(s.dns.logText)")
            #expect(s.dns.logText.contains("override cleared by 127.0.0.1"))
        }
    }

    struct BadOverride: Sendable, CustomStringConvertible {
        var body: String
        var message: String
        var description: String { body }
    }

    static let badOverrides: [BadOverride] = [
        BadOverride(body: #"{"target": "dc:nowhere", "state": "down", "reason": "x"}"#, message: "no datacenter named"),
        BadOverride(body: #"{"target": "endpoint:nope", "state": "down", "reason": "x"}"#, message: "no endpoint named"),
        BadOverride(body: #"{"target": "ams", "state": "down", "reason": "x"}"#, message: "expected endpoint:NAME or dc:NAME"),
        BadOverride(body: #"{"target": "dc:ams", "state": "sideways", "reason": "x"}"#, message: "\"state\" must be"),
        BadOverride(body: #"{"target": "dc:ams", "state": "down"}"#, message: "\"reason\" is required"),
        BadOverride(body: #"{"target": "dc:ams", "state": "down", "reason": "x", "expires_in": -5}"#, message: "expires_in"),
        BadOverride(body: "not json", message: "JSON object"),
    ]

    @Test func badOverridesAreRejectedWithAMessage() async throws {
        try await withControl { s in
            for c in Self.badOverrides {
                let r = try s.http("POST", "/override", json: c.body)
                #expect(r.status == 400 && r.text.contains(c.message), "\(c.body) -> \(r.status) \(r.text)")
            }
            let list = try JSONSerialization.jsonObject(with: Data(try s.http("GET", "/overrides").body)) as? [Any]
            #expect(list?.isEmpty == true, "a rejected override must not be set")
            #expect(try s.http("GET", "/nothing").status == 404)
            #expect(try s.http("PUT", "/metrics").status == 405)
        }
    }

    @Test func overrideWithExpiryRestoresByItself() async throws {
        try await withControl { s in
            let r = try s.http("POST", "/override", json: #"{"target": "dc:ams", "state": "down", "reason": "short", "expires_in": 1}"#)
            #expect(r.status == 200, "\(r.text)")
            #expect(try await s.answer() == ["198.51.100.10"])
            var restored = false
            for _ in 0..<40 where !restored {
                try await Task.sleep(for: .milliseconds(100))
                restored = try await s.answer() == ["192.0.2.10"]
            }
            #expect(restored, "answers did not return to ams within 4 s of a 1 s override")
            #expect(s.dns.logText.contains("expired"))
        }
    }

    /// Overrides survive a reload (they follow the endpoint's name, here moved to another
    /// index); a failed reload shows in metrics and status.
    @Test func overridesSurviveReloadAndReloadOutcomesAreReported() async throws {
        try await withControl { s in
            #expect(try s.http("POST", "/override", json: #"{"target": "endpoint:ams-1", "state": "down", "reason": "rma"}"#).status == 200)
            #expect(try await s.answer() == ["198.51.100.10"])
            let path = s.folder.appendingPathComponent("meridian.yaml")
            let yaml = try String(contentsOf: path, encoding: .utf8)
            // Swap the endpoint order: ams-1 moves from index 0 to 1.
            let swapped = yaml.replacingOccurrences(of: "  ams-1: { v4: 192.0.2.10, dc: ams }\n  iad-1: { v4: 198.51.100.10, dc: iad }\n",
                                                    with: "  iad-1: { v4: 198.51.100.10, dc: iad }\n  ams-1: { v4: 192.0.2.10, dc: ams }\n")
            #expect(swapped != yaml)
            try swapped.write(to: path, atomically: true, encoding: .utf8)
            s.dns.signal(SIGHUP)
            var generation = 0
            for _ in 0..<100 where generation < 1 {
                try await Task.sleep(for: .milliseconds(20))
                let st = try JSONSerialization.jsonObject(with: Data(try s.http("GET", "/status").body)) as? [String: Any]
                generation = st?["generation"] as? Int ?? 0
            }
            #expect(generation == 1, "reload did not happen; log:\n\(s.dns.logText)")
            let list = try JSONSerialization.jsonObject(with: Data(try s.http("GET", "/overrides").body)) as? [[String: Any]]
            #expect(list?.map { $0["target"] as? String } == ["endpoint:ams-1"])
            #expect(try await s.answer() == ["198.51.100.10"])
            // A broken reload: counted as failed, errors in status, old config still served.
            try (swapped + "bogus_key: 1\n").write(to: path, atomically: true, encoding: .utf8)
            s.dns.signal(SIGHUP)
            var failed = 0.0
            for _ in 0..<100 where failed < 1 {
                try await Task.sleep(for: .milliseconds(20))
                failed = PromText(try s.http("GET", "/metrics").text).value("meridian_reloads_total", ["result": "failed"])
            }
            #expect(failed == 1)
            let st = try JSONSerialization.jsonObject(with: Data(try s.http("GET", "/status").body)) as? [String: Any]
            let reloads = st?["reloads"] as? [String: Any]
            #expect(reloads?["ok"] as? Int == 2)
            #expect((reloads?["last_errors"] as? [String])?.first?.contains("bogus_key") == true, "\(String(describing: reloads))")
            #expect(try await s.answer() == ["198.51.100.10"])
        }
    }

    @Test func tokenIsRequiredWhenConfigured() async throws {
        try await withControl(token: "s3cret") { s in
            #expect(try s.http("GET", "/status").status == 401)
            #expect(try s.http("GET", "/healthz").status == 200, "liveness probes need no token")
            #expect(try s.http("POST", "/override", json: #"{"target": "dc:ams", "state": "down", "reason": "x"}"#).status == 401)
            #expect(try s.http("GET", "/metrics", headers: ["Authorization": "Bearer wrong"]).status == 401)
            #expect(try s.http("GET", "/status", headers: ["Authorization": "Bearer s3cret"]).status == 200)
            let out = try await MeridianProcess.run(["status", "--control", "127.0.0.1:\(s.control)"])
            #expect(out.status == 1 && out.stderr.contains("401"), "\(out.combined)")
            let ok = try await MeridianProcess.run(["status", "--control", "127.0.0.1:\(s.control)", "--token", "s3cret"])
            #expect(ok.status == 0, "\(ok.combined)")
        }
    }

    @Test func nonLoopbackControlWithoutTokenIsRefusedAtStart() async throws {
        let dns = try freePort(), ctl = try freePort()
        let dir = try ControlFixture.folder(ControlFixture.yaml(control: "0.0.0.0:\(ctl)", checks: false))
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = try await MeridianProcess.run(["serve", "--config", dir.appendingPathComponent("meridian.yaml").path,
                                                 "--listen", "127.0.0.1:\(dns)"], timeout: .seconds(20))
        #expect(!out.timedOut && out.status != 0, "\(out.combined)")
        #expect(out.stderr.contains("not a loopback address") && out.stderr.contains("control_token"), "\(out.stderr)")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to switch users"))
    func unknownUserIsRefusedAtStartWhenRoot() async throws {
        let dns = try freePort(), ctl = try freePort()
        let dir = try ControlFixture.folder(ControlFixture.yaml(control: "127.0.0.1:\(ctl)", checks: false,
                                                                extraServer: "  user: no-such-user-meridian\n"))
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = try await MeridianProcess.run(["serve", "--config", dir.appendingPathComponent("meridian.yaml").path,
                                                 "--listen", "127.0.0.1:\(dns)"], timeout: .seconds(20))
        #expect(!out.timedOut && out.status == 1, "\(out.combined)")
        #expect(out.stderr.contains("server.user \"no-such-user-meridian\": no such user"), "\(out.stderr)")
    }

    /// Started as root with `server.user: nobody`: after binding, the process runs as nobody
    /// and still answers DNS and the control API.
    @Test(.enabled(if: geteuid() == 0 && getpwnam("nobody") != nil, "needs root and a 'nobody' user"))
    func dropsPrivilegesAfterBindingWhenRoot() async throws {
        let dns = try freePort(), ctl = try freePort()
        let dir = try ControlFixture.folder(ControlFixture.yaml(control: "127.0.0.1:\(ctl)", checks: false,
                                                                extraServer: "  user: nobody\n"))
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = try await MeridianProcess.start(["serve", "--config", dir.appendingPathComponent("meridian.yaml").path,
                                                 "--listen", "127.0.0.1:\(dns)"], port: dns, probeName: "ctl.test.")
        // DNS answers as soon as it is bound; the drop follows the control API's start.
        let nobody = getpwnam("nobody")!.pointee.pw_uid
        var uidLine = "", dropped = false
        for _ in 0..<100 where !dropped {
            let status = (try? String(contentsOfFile: "/proc/\(p.child.pid)/status", encoding: .utf8)) ?? ""
            uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }.map(String.init) ?? ""
            dropped = uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().allSatisfy { UInt32($0) == nobody }
            if !dropped { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(dropped, "\(uidLine); log:\n\(p.logText)")
        #expect(try await Dig.query("www.ctl.test", "A", port: dns).answer.map(\.rdata) == ["192.0.2.10"])
        #expect(try HTTP.request("GET", port: ctl, path: "/healthz").status == 200)
        #expect(await p.stop() == 0)
    }

    @Test func statusCommandPrintsTheTableAndOverrideCommandsWork() async throws {
        try await withControl(checks: true) { s in
            let url = "http://127.0.0.1:\(s.control)"
            let set = try await MeridianProcess.run(["override", "set", "dc:iad", "down", "--reason", "drill", "--expires", "10m", "--control", url])
            #expect(set.status == 0 && set.stdout.contains("override dc:iad down until"), "\(set.combined)")
            let out = try await MeridianProcess.run(["status", "--control", url])
            #expect(out.status == 0, "\(out.combined)")
            let lines = out.stdout.split(separator: "\n").map(String.init)
            let header = try #require(lines.first { $0.hasPrefix("ENDPOINT") }, "\(out.stdout)")
            for col in ["DC", "STATE", "CHECKED", "SINCE", "LAST CHECK", "OVERRIDE"] { #expect(header.contains(col)) }
            let ams = try #require(lines.first { $0.hasPrefix("ams-1") })
            #expect(ams.contains("UP") && ams.contains("state: ok"), "\(ams)")
            let iad = try #require(lines.first { $0.hasPrefix("iad-1") })
            #expect(iad.contains("DOWN") && iad.contains("dc:iad down \"drill\""), "\(iad)")
            #expect(out.stdout.contains("www.ctl.test.") && out.stdout.contains("RTO EXCEEDED"), "\(out.stdout)")
            let json = try await MeridianProcess.run(["status", "--json", "--control", url])
            #expect(json.status == 0 && json.stdout.contains("\"endpoints\""))
            let clear = try await MeridianProcess.run(["override", "clear", "dc:iad", "--control", url])
            #expect(clear.status == 0, "\(clear.combined)")
            let again = try await MeridianProcess.run(["override", "clear", "dc:iad", "--control", url])
            #expect(again.status == 1 && again.stderr.contains("no override on dc:iad"))
        }
        let down = try await MeridianProcess.run(["status", "--control", "127.0.0.1:\(try freePort())"])
        #expect(down.status == 1 && down.stderr.contains("connect"), "\(down.combined)")
    }

    /// SIGTERM while a bounded UDP load runs: exit status 0 within 2 s.
    @Test func sigtermUnderLoadExitsZeroWithinTwoSeconds() async throws {
        try await withControl(stopsItself: true) { s in
            let port = s.dns.port
            let load = Task.detached { () -> Int in
                let client = RawDNSClient(host: "127.0.0.1", port: port)
                let name = try DNSName("www.ctl.test.")
                let end = ContinuousClock.now + .seconds(3)
                var sent = 0
                while ContinuousClock.now < end {
                    let q = DNSWire.QueryBuilder.query(id: UInt16(truncatingIfNeeded: sent), name: name, type: .a)
                    _ = try? client.udpExchange(q, timeout: .milliseconds(200))
                    sent += 1
                }
                return sent
            }
            try await Task.sleep(for: .milliseconds(500))
            let t0 = ContinuousClock.now
            s.dns.signal(SIGTERM)
            let exited = await s.dns.child.waitForExit(timeout: .seconds(2))
            let took = ContinuousClock.now - t0
            #expect(exited, "still running 2 s after SIGTERM")
            #expect(s.dns.child.exitStatus == 0, "exit status \(String(describing: s.dns.child.exitStatus)); log:\n\(s.dns.logText)")
            print("SIGTERM under load: exited in \(took)")
            let sent = try await load.value
            #expect(sent > 10)
            if !exited { await s.dns.stop() }
        }
    }
}
