import Foundation
import Testing
import TestSupport

/// A config with two datacenters and no health checks (every endpoint up), written to a
/// temporary folder with free ports for DNS and the control API.
///
/// `www`: clients in 10.1.0.0/16 (label `east`) get iad, everyone else ams.
/// `api`: iad, then ams. Dropping iad moves `www` for east and `api` for everyone.
struct DrillSetup {
    let folder: URL
    let config: String
    let dnsPort: UInt16
    let controlPort: UInt16
    let token: String?

    /// `iadCheck`: a check spec for iad-1 (named `probe`), for health drills.
    init(rto: String = "30s", ttl: Int = 2, token: String? = nil, iadCheck: String? = nil) throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-drill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        dnsPort = try freePort()
        var c = try freePort()
        while c == dnsPort { c = try freePort() }
        controlPort = c
        self.token = token
        let zone = """
        $ORIGIN drill.test.
        $TTL 3600
        @    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
             IN NS  ns1
        ns1  IN A   192.0.2.53

        """
        let yaml = """
        server:
          listen: ["127.0.0.1:\(dnsPort)"]
          control: 127.0.0.1:\(controlPort)\(token.map { "\n  control_token: \($0)" } ?? "")
          workers: 1
        defaults:
          ttl: \(ttl)
        zones:
          drill.test:
            file: drill.test.zone
            names:
              www:
                rto: \(rto)
                policy:
                  geo:
                    east: iad
                    default: ams
              api:
                rto: \(rto)
                policy: { failover: [iad, ams] }
        geo:
          cidr:
            10.1.0.0/16: east
            10.2.0.0/16: ams
        datacenters:
          ams: { lat: 52.37, lon: 4.90 }
          iad: { lat: 38.95, lon: -77.45 }
        endpoints:
          ams-1: { v4: 192.0.2.10, dc: ams }
          iad-1: { v4: 198.51.100.10, dc: iad\(iadCheck == nil ? "" : ", check: probe") }
        \(iadCheck.map { "checks:\n  probe: \($0)\n" } ?? "")
        """
        try zone.write(to: folder.appendingPathComponent("drill.test.zone"), atomically: true, encoding: .utf8)
        config = folder.appendingPathComponent("meridian.yaml").path
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
    }

    var control: String { "http://127.0.0.1:\(controlPort)" }
    var server: String { "127.0.0.1:\(dnsPort)" }

    /// Runs `meridian serve` on this config for `body`, then stops it.
    func withServer(_ body: (MeridianProcess) async throws -> Void) async throws {
        let s = try await MeridianProcess.start(["serve", "--config", config], port: dnsPort, probeName: "drill.test.")
        defer { try? FileManager.default.removeItem(at: folder) }
        do { try await body(s) } catch { await s.stop(); throw error }
        #expect(s.isRunning, "meridian died; log:\n\(s.logText)")
        await s.stop()
    }

    /// `GET /overrides` through curl (exit status checked).
    func overrides() async throws -> String {
        let auth = token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []
        let r = try await runCommand("/usr/bin/curl", ["-fsS"] + auth + ["\(control)/overrides"], timeout: .seconds(10))
        #expect(r.status == 0, "curl /overrides: \(r.combined)")
        return r.stdout
    }
}

/// `meridian drill` and `meridian runbook` against the real server and control API.
@Suite("drill and runbook", .serialized)
struct DrillTests {
    @Test func drillMeasuresEveryVantageRestoresAndPasses() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { server in
            let r = try await MeridianProcess.run(["drill", "--down", "iad", "--config", setup.config, "--json",
                                                   "--vantage", "10.1.0.0/16", "--vantage", "10.2.0.0/16", "--timeout", "10s"],
                                                  timeout: .seconds(60))
            #expect(r.status == 0, "drill failed:\n\(r.combined)\nserver log:\n\(server.logText)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
            let pairs = try #require(json["pairs"] as? [[String: Any]])
            // 2 names x 2 vantages.
            #expect(pairs.count == 4)
            let affected = pairs.filter { $0["in_datacenter_before"] as? Bool == true }
            // www from east, api from both: three pairs pointed into iad.
            #expect(affected.count == 3, "\(pairs)")
            for p in affected {
                #expect(p["moved_in_s"] is Double, "no time for \(p["name"] ?? "") from \(p["vantage"] ?? ""): \(p)")
                #expect(p["returned_in_s"] is Double, "\(p)")
                let after = p["after"] as? [String: Any]
                #expect(after?["datacenters"] as? [String] == ["ams"], "\(p)")
                #expect(p["verdict"] as? String == "ok")
            }
            #expect(json["restored"] as? Bool == true)
            #expect(json["returned"] as? Bool == true)
            // After it, the override is gone and the answers point back into iad.
            let overrides = try await setup.overrides()
            #expect(!overrides.contains("dc:iad"), "override left behind: \(overrides)")
            let back = try await Dig.query("api.drill.test", "A", port: setup.dnsPort)
            #expect(back.answer.map(\.rdata) == ["198.51.100.10"], "\(back.raw)")
            let east = try await Dig.query("www.drill.test", "A", port: setup.dnsPort, options: ["+subnet=10.1.2.0/24"])
            #expect(east.answer.map(\.rdata) == ["198.51.100.10"], "\(east.raw)")
        }
    }

    /// `--fleet` against a server alone is a usage error that says why, and changes nothing.
    @Test func fleetDrillOfAServerAloneIsRefused() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { _ in
            let r = try await MeridianProcess.run(["drill", "--fleet", "--down", "iad", "--config", setup.config, "--timeout", "5s"],
                                                  timeout: .seconds(30))
            #expect(r.status == 2, "\(r.combined)")
            #expect(r.stderr.contains("is not in a fleet"), "\(r.combined)")
            let both = try await MeridianProcess.run(["drill", "--fleet", "--server", "127.0.0.1:\(setup.dnsPort)", "--down", "iad",
                                                      "--config", setup.config], timeout: .seconds(30))
            #expect(both.status == 2 && both.stderr.contains("--server and --fleet"), "\(both.combined)")
            let left = try await setup.overrides()
            #expect(!left.contains("dc:iad"), "\(left)")
        }
    }

    @Test func tableOutputNamesTheWorstCase() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { _ in
            let r = try await MeridianProcess.run(["drill", "--down", "iad", "--config", setup.config, "--timeout", "10s"],
                                                  timeout: .seconds(60))
            #expect(r.status == 0, "\(r.combined)")
            #expect(r.stdout.contains("WORST CASE") && r.stdout.contains("result: PASS"), "\(r.stdout)")
            // Default vantages: the CIDR map's two targets and 0.0.0.0/0.
            for v in ["10.1.0.0/16", "10.2.0.0/16", "0.0.0.0/0"] { #expect(r.stdout.contains(v), "\(v) missing:\n\(r.stdout)") }
        }
    }

    /// rto 1s with TTL 30: resolvers may hold the old answer 30 s, so the worst case
    /// exceeds the rto however fast the server moves (accepted with `enforce: false`, or
    /// the server would refuse the config).
    @Test func impossibleRTOExitsNonZeroAndStillRestores() async throws {
        let setup = try DrillSetup(rto: "{ target: 1s, enforce: false }", ttl: 30)
        try await setup.withServer { _ in
            let r = try await MeridianProcess.run(["drill", "--down", "iad", "--config", setup.config, "--timeout", "10s"],
                                                  timeout: .seconds(60))
            #expect(r.status == 1, "\(r.combined)")
            #expect(r.stdout.contains("EXCEEDS RTO"), "\(r.stdout)")
            let overrides = try await setup.overrides()
            #expect(!overrides.contains("dc:iad"), "override left behind: \(overrides)")
        }
    }

    /// An operator's override on the datacenter is left alone: the drill refuses to start.
    @Test func existingOverrideIsNotTouched() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { _ in
            let set = try await runCommand("/usr/bin/curl", ["-fsS", "-X", "POST", "-d",
                                                             #"{"target": "dc:iad", "state": "down", "reason": "real work"}"#,
                                                             "\(setup.control)/override"], timeout: .seconds(10))
            #expect(set.status == 0, "\(set.combined)")
            let r = try await MeridianProcess.run(["drill", "--down", "iad", "--config", setup.config, "--timeout", "5s"],
                                                  timeout: .seconds(30))
            #expect(r.status == 1, "\(r.combined)")
            #expect(r.stdout.contains("already active") && r.stdout.contains("nothing was forced"), "\(r.stdout)")
            let overrides = try await setup.overrides()
            #expect(overrides.contains("real work"), "the operator's override was removed: \(overrides)")
        }
    }

    /// Ctrl-C while the datacenter is held down: the drill clears the override before it exits.
    @Test func interruptRestores() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { _ in
            let bin = try #require(TestPaths.meridianBinary)
            let drill = try ChildProcess(path: bin, arguments: ["drill", "--down", "iad", "--config", setup.config, "--for", "5m", "--timeout", "10s"])
            // Bounded: 100 polls of 100 ms for the override to appear.
            var forced = false
            for _ in 0..<100 where !forced {
                try await Task.sleep(for: .milliseconds(100))
                forced = try await setup.overrides().contains("dc:iad") && drill.stderrText.contains("holding")
            }
            #expect(forced, "the drill never forced iad down: \(drill.stdoutText)\(drill.stderrText)")
            drill.signal(SIGINT)
            let exited = await drill.waitForExit(timeout: .seconds(20))
            if !exited { await drill.stop() }
            #expect(exited, "the drill did not stop on SIGINT")
            #expect(drill.exitStatus == 1, "\(drill.stdoutText)\(drill.stderrText)")
            #expect(drill.stdoutText.contains("interrupted"), "\(drill.stdoutText)")
            let overrides = try await setup.overrides()
            #expect(!overrides.contains("dc:iad"), "override left behind after SIGINT: \(overrides)")
        }
    }

    @Test("usage and config errors exit 2", arguments: [
        ["--down", "nowhere"],
        ["--down", "iad", "--vantage", "10.1.0.1/16"],
        ["--down", "iad", "--poll", "fast"],
        ["--down", "iad", "--control", "https://127.0.0.1:1"],
        ["--down", "iad", "--no-such-flag"],
        ["--timeout", "10s"],
        ["--config-missing"],
    ])
    func usageErrors(_ extra: [String]) async throws {
        let setup = try DrillSetup()
        defer { try? FileManager.default.removeItem(at: setup.folder) }
        let args = extra == ["--config-missing"] ? ["drill", "--down", "iad", "--config", setup.folder.appendingPathComponent("none.yaml").path]
                                                  : ["drill", "--config", setup.config] + extra
        let r = try await MeridianProcess.run(args, timeout: .seconds(20))
        #expect(r.status == 2, "\(args): \(r.combined)")
    }

    @Test func drillAgainstAServerWithoutControlFailsWithoutForcing() async throws {
        let setup = try DrillSetup()
        defer { try? FileManager.default.removeItem(at: setup.folder) }
        // Nothing listens on the control port: the drill stops before forcing anything.
        let r = try await MeridianProcess.run(["drill", "--down", "iad", "--config", setup.config, "--timeout", "2s"],
                                              timeout: .seconds(20))
        #expect(r.status == 1, "\(r.combined)")
        #expect(r.stdout.contains("nothing was forced") && r.stdout.contains("Connection refused"), "\(r.combined)")
    }

    /// Every command of a generated runbook, in order, as written: exit 0, and each dig
    /// prints the answer its `# expect` comment names. With a token in the config too.
    @Test(arguments: [nil, "s3cret-token"] as [String?])
    func everyRunbookCommandRuns(token: String?) async throws {
        let setup = try DrillSetup(token: token)
        try await setup.withServer { server in
            let gen = try await MeridianProcess.run(["runbook", "--config", setup.config, "--datacenter", "iad"], timeout: .seconds(20))
            #expect(gen.status == 0, "\(gen.combined)")
            let commands = DrillTests.commands(inMarkdown: gen.stdout)
            #expect(commands.count >= 10, "too few commands:\n\(gen.stdout)")
            #expect(commands.contains { $0.hasPrefix("dig ") } && commands.contains { $0.contains("meridian drill") })
            let bin = try #require(TestPaths.meridianBinary)
            let dir = URL(fileURLWithPath: bin).deletingLastPathComponent().path
            for c in commands {
                let r = try await runCommand("/bin/sh", ["-c", "export PATH='\(dir)':\"$PATH\"\n" + c], timeout: .seconds(90))
                #expect(r.status == 0, "runbook command failed (\(r.status)): \(c)\n\(r.combined)\nserver log:\n\(server.logText)")
                if c.hasPrefix("dig "), let range = c.range(of: "# expect ") {
                    let text = c[range.upperBound...].split(separator: "(").first.map(String.init) ?? ""
                    let expected = text.hasPrefix("nothing") ? [] : text.split(separator: " ").map(String.init).sorted()
                    let got = r.stdout.split(whereSeparator: \.isNewline).map(String.init).sorted()
                    #expect(got == expected, "\(c)\nprinted \(got)")
                }
            }
            let overrides = try await setup.overrides()
            #expect(!overrides.contains("dc:iad"), "the runbook left an override: \(overrides)")
        }
    }

    @Test func runbookForEveryDatacenterHasTheSections() async throws {
        let setup = try DrillSetup()
        defer { try? FileManager.default.removeItem(at: setup.folder) }
        let r = try await MeridianProcess.run(["runbook", "--config", setup.config], timeout: .seconds(20))
        #expect(r.status == 0, "\(r.combined)")
        for s in ["## Datacenter `ams`", "## Datacenter `iad`", "### Who decides", "### Time estimate", "### Bring `iad` back",
                  "meridian drill --down ams", "dig @127.0.0.1 -p \(setup.dnsPort) www.drill.test. A +subnet=10.1.0.0/16 +short"] {
            #expect(r.stdout.contains(s), "missing \(s):\n\(r.stdout)")
        }
        let bad = try await MeridianProcess.run(["runbook", "--config", setup.config, "--datacenter", "nowhere"], timeout: .seconds(20))
        #expect(bad.status == 2, "\(bad.combined)")
    }

    /// The lines of every fenced `sh` block.
    static func commands(inMarkdown md: String) -> [String] {
        var out: [String] = [], inside = false
        for line in md.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inside = !inside && line == "```sh"; continue }
            if inside && !line.trimmingCharacters(in: .whitespaces).isEmpty { out.append(String(line)) }
        }
        return out
    }
}
