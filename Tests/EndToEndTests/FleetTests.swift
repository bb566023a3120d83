import Foundation
import Testing
import TestSupport

/// Three real `meridian serve` instances sharing overrides through a real etcd (Debian's
/// `etcd-server`, started on loopback ports with a temporary data folder). The fixture is
/// `ControlFixture`: www.ctl.test answers ams (192.0.2.10), failing over to iad.
@Suite("Fleet mode with a real etcd", .serialized, .enabled(if: EtcdServer.isInstalled, "etcd is not installed (apt-get install etcd-server)"))
struct FleetTests {
    static let ams = ["192.0.2.10"], iad = ["198.51.100.10"]

    struct Instance {
        let name: String
        let dns: MeridianProcess
        let control: String
        let stateDir: URL
    }

    /// The shared configuration: the fixture plus `fleet:` pointing at `etcd`.
    static func folder(etcd: [String], auth: Bool = false, checks: Bool = false, edit: (String) -> String = { $0 }) throws -> URL {
        let fleet = """
            fleet:
              etcd: [\(etcd.joined(separator: ", "))]
              prefix: /meridian-test/
              lease_ttl: 5s
              ack_timeout: 2s
            \(auth ? "  username: root\n  password_file: etcd-password\n" : "")
            """
        let dir = try ControlFixture.folder(edit(fleet + ControlFixture.yaml(control: "127.0.0.1:1", checks: checks)))
        try "s3cret\n".write(to: dir.appendingPathComponent("etcd-password"), atomically: true, encoding: .utf8)
        return dir
    }

    /// etcd's user authentication on, with user root (password s3cret), through its gateway.
    static func enableAuth(_ etcd: EtcdServer) throws {
        for (path, body) in [("/v3/auth/user/add", #"{"name":"root","password":"s3cret"}"#), ("/v3/auth/role/add", #"{"name":"root"}"#),
                             ("/v3/auth/user/grant", #"{"user":"root","role":"root"}"#), ("/v3/auth/enable", "{}")] {
            let r = try HTTP.request("POST", port: etcd.clientPort, path: path, body: Array(body.utf8))
            try #require(r.status == 200, "\(path): \(r.text)")
        }
    }

    /// An instance on the shared configuration, kept in `fx` (stopped and its state folder
    /// removed when the test ends).
    static func start(_ name: String, folder: URL, stateDir: URL, in fx: FleetFixture) async throws -> Instance {
        fx.remove(stateDir)
        let (p, url) = try await serveWithControl(config: folder.appendingPathComponent("meridian.yaml"),
                                                  extra: ["--state-dir", stateDir.path, "--fleet-name", name])
        return Instance(name: name, dns: fx.keep(p), control: url, stateDir: stateDir)
    }

    /// One more instance, `name`, on a copy of the shared configuration changed by `edit`
    /// (written next to it as `file`).
    static func startEdited(_ name: String, folder: URL, file: String, in fx: FleetFixture, edit: (String) -> String) async throws -> Instance {
        let config = try String(contentsOf: folder.appendingPathComponent("meridian.yaml"), encoding: .utf8)
        try edit(config).write(to: folder.appendingPathComponent(file), atomically: true, encoding: .utf8)
        return try await start(name, config: folder.appendingPathComponent(file), in: fx)
    }

    /// An instance on `config` with a new state folder, kept in `fx`.
    static func start(_ name: String, config: URL, in fx: FleetFixture) async throws -> Instance {
        let state = fx.remove(try makeTemporaryDirectory(prefix: "meridian-fleet-\(name)"))
        let (p, url) = try await serveWithControl(config: config, extra: ["--state-dir", state.path, "--fleet-name", name])
        return Instance(name: name, dns: fx.keep(p), control: url, stateDir: state)
    }

    static func answer(_ i: Instance) async throws -> [String] {
        try await Dig.query("www.ctl.test", "A", port: i.dns.port).answer.map(\.rdata).sorted()
    }

    static func cli(_ args: [String], _ i: Instance) async throws -> CommandOutput {
        try await MeridianProcess.run(args + ["--control", i.control])
    }

    /// Every instance answers `expected` (bounded wait).
    static func allAnswer(_ expected: [String], _ all: [Instance], within seconds: Double = 5) async -> Bool {
        await eventually(seconds) {
            for i in all where (try? await answer(i)) != expected { return false }
            return true
        }
    }

    /// etcd and three instances for `body`; everything is stopped afterwards, also on failure
    /// (`FleetFixture`). Instances `body` starts go into the same fixture.
    static func withFleet(etcdMembers: Int = 1, auth: Bool = false, checks: Bool = false, edit: (String) -> String = { $0 },
                          _ body: (FleetFixture, [EtcdServer], URL, inout [Instance]) async throws -> Void) async throws {
        try await FleetFixture.run { fx in
            let members = fx.keep(etcdMembers == 1 ? [try await EtcdServer.start()] : try await EtcdServer.startCluster(etcdMembers))
            let folder = fx.remove(try Self.folder(etcd: members.map(\.endpoint), auth: auth, checks: checks, edit: edit))
            if auth { try enableAuth(members[0]) }
            var instances: [Instance] = []
            for n in ["ns1", "ns2", "ns3"] {
                instances.append(try await start(n, folder: folder, stateDir: try makeTemporaryDirectory(prefix: "meridian-fleet-\(n)"), in: fx))
            }
            // All three registered before the test begins.
            let registered = await eventually(10) {
                let s = try? await cli(["status", "--fleet"], instances[0])
                return ["ns1", "ns2", "ns3"].allSatisfy { s?.stdout.contains($0) == true }
            }
            try #require(registered, "instances never registered; log:\n\(instances[0].dns.logText)")
            try await body(fx, members, folder, &instances)
            for i in instances { #expect(i.dns.isRunning, "\(i.name) died; log:\n\(i.dns.logText)") }
        }
    }

    @Test func anOverrideThroughOneInstanceChangesAllThreeAndEachAcknowledges() async throws {
        try await Self.withFleet { fx, _, _, all in
            #expect(await Self.allAnswer(Self.ams, all))
            let set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "ams maintenance", "--author", "ops@test"], all[1])
            #expect(set.status == 0, "\(set.combined)")
            #expect(set.stdout.contains("acknowledged by 3 instance(s): ns1, ns2, ns3"), "\(set.combined)")
            // Acknowledged means applied: every instance answers the new way at once.
            for i in all { #expect(try await Self.answer(i) == Self.iad, "\(i.name); log:\n\(i.dns.logText)") }

            let status = try await Self.cli(["status", "--fleet"], all[2])
            #expect(status.status == 0, "\(status.combined)")
            let rows = status.stdout.split(separator: "\n").filter { $0.hasPrefix("ns") }
            #expect(rows.count == 3, "\(status.stdout)")
            #expect(!status.stdout.contains("DRIFT"), "\(status.stdout)")
            let plain = try await Self.cli(["status"], all[0])
            #expect(plain.stdout.contains("fleet: connected as ns1"), "\(plain.stdout)")

            // The safety rule: iad down as well would leave www.ctl.test with nothing.
            let unsafe = try await Self.cli(["override", "set", "dc:iad", "down", "--reason", "both"], all[0])
            #expect(unsafe.status != 0, "\(unsafe.combined)")
            #expect(unsafe.stderr.contains("refused by the safety rule") && unsafe.stderr.contains("www.ctl.test."), "\(unsafe.combined)")
            for i in all { #expect(try await Self.answer(i) == Self.iad, "a refused override must change nothing") }

            let clear = try await Self.cli(["override", "clear", "dc:ams"], all[2])
            #expect(clear.status == 0 && clear.stdout.contains("acknowledged by 3 instance(s)"), "\(clear.combined)")
            for i in all { #expect(try await Self.answer(i) == Self.ams) }
        }
    }

    /// An instance that cannot apply in time (stopped with SIGSTOP) is named; it applies the
    /// override when it runs again.
    @Test func overrideSetNamesTheInstanceThatDidNotAcknowledge() async throws {
        try await Self.withFleet { fx, _, _, all in
            all[2].dns.signal(SIGSTOP)
            let set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "one is stuck"], all[0])
            all[2].dns.signal(SIGCONT)
            #expect(set.status == 3, "\(set.combined)")
            #expect(set.stdout.contains("acknowledged by 2 instance(s): ns1, ns2"), "\(set.combined)")
            #expect(set.stderr.contains("not acknowledged in time by: ns3"), "\(set.combined)")
            for i in all.prefix(2) { #expect(try await Self.answer(i) == Self.iad) }
            #expect(await Self.allAnswer(Self.iad, all), "ns3 did not catch up after SIGCONT")
        }
    }

    /// A three-member etcd cluster loses its leader (SIGKILL): overrides still propagate.
    @Test func overridesPropagateAfterTheEtcdLeaderIsKilled() async throws {
        try await Self.withFleet(etcdMembers: 3) { fx, members, _, all in
            var leader: EtcdServer?
            for m in members {
                let r = try HTTP.request("POST", port: m.clientPort, path: "/v3/maintenance/status", body: Array("{}".utf8))
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
                let me = (obj["header"] as? [String: Any])?["member_id"] as? String
                if me != nil && me == obj["leader"] as? String { leader = m }
            }
            let dead = try #require(leader, "no member says it leads")
            await dead.kill()
            // An election follows; a write during it may fail, so retry (bounded).
            var set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "leader lost"], all[1])
            for _ in 0..<20 where set.status != 0 {
                try await Task.sleep(for: .milliseconds(250))
                set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "leader lost"], all[1])
            }
            #expect(set.status == 0 && set.stdout.contains("acknowledged by 3 instance(s)"), "\(set.combined)")
            #expect(await Self.allAnswer(Self.iad, all))
        }
    }

    /// An instance on a different configuration shows up as drift in `status --fleet`.
    @Test func anInstanceOnAnotherConfigurationShowsAsDrift() async throws {
        try await Self.withFleet { fx, _, folder, all in
            all.append(try await Self.startEdited("ns4", folder: folder, file: "other.yaml", in: fx) { $0 + "# edited on this host only\n" })
            let drift = await eventually(10) {
                let s = try? await Self.cli(["status", "--fleet"], all[0])
                return s?.stdout.split(separator: "\n").contains { $0.hasPrefix("ns4") && $0.hasSuffix("DRIFT") } == true
            }
            let shown = try await Self.cli(["status", "--fleet"], all[0])
            #expect(drift, "\(shown.stdout)")
            #expect(shown.stdout.split(separator: "\n").filter { $0.hasSuffix("DRIFT") }.count == 1, "\(shown.stdout)")
            // The status page (GET /) lists the four instances, ns4 drifted, all connected.
            let port = try #require(UInt16(all[0].control.split(separator: ":").last ?? ""))
            let page = try HTTP.request("GET", port: port, path: "/").text
            #expect(page.contains("id=\"fleet\" data-state=\"connected\""), "\(page)")
            for n in ["ns1", "ns2", "ns3"] { #expect(page.contains("id=\"instance-\(n)\" data-drift=\"false\"><td>\(n)</td>"), "\(page)") }
            #expect(page.contains("id=\"instance-ns4\" data-drift=\"true\"><td>ns4</td>"), "\(page)")
            #expect(page.components(separatedBy: "<td class=\"up\">yes</td>").count - 1 == 4, "\(page)")
        }
    }

    /// etcd with user authentication: the instances log in (fleet.username and
    /// fleet.password_file) and overrides propagate; one without credentials stays
    /// disconnected and says why.
    @Test func withEtcdAuthenticationOverridesPropagate() async throws {
        try await Self.withFleet(auth: true) { fx, members, folder, all in
            let set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "with auth"], all[2])
            #expect(set.status == 0 && set.stdout.contains("acknowledged by 3 instance(s)"), "\(set.combined)")
            for i in all { #expect(try await Self.answer(i) == Self.iad) }

            all.append(try await Self.startEdited("anon", folder: folder, file: "anonymous.yaml", in: fx) {
                $0.replacingOccurrences(of: "  username: root\n  password_file: etcd-password\n", with: "")
            })
            let refused = await eventually(5) {
                let s = try? await Self.cli(["status"], all[3])
                return s?.stdout.contains("fleet: disconnected as anon") == true && s?.stdout.contains("user name is empty") == true
            }
            #expect(refused, "\(all[3].dns.logText)")
            #expect(try await Self.answer(all[3]) == Self.ams, "an instance that cannot log in applies nothing")
        }
    }

    @Test func anExpiringOverrideRevertsOnAllThree() async throws {
        try await Self.withFleet { fx, _, _, all in
            let set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "short", "--expires", "3s"], all[0])
            #expect(set.status == 0 && set.stdout.contains("acknowledged by 3"), "\(set.combined)")
            for i in all { #expect(try await Self.answer(i) == Self.iad) }
            #expect(await Self.allAnswer(Self.ams, all, within: 10), "the override did not lapse everywhere")
            // etcd dropped the key with its lease: nothing is left to re-apply.
            let list = try await Self.cli(["override", "list"], all[1])
            #expect(list.stdout.contains("no overrides"), "\(list.combined)")
        }
    }

    /// etcd down: every instance keeps answering with the last overrides (fail static), says
    /// `disconnected`, and one restarted during the outage keeps them from its state folder.
    /// Then an override is written while they are cut off (etcd back on another client port);
    /// when etcd returns on theirs, they catch up without a restart.
    @Test func aPartitionFailsStaticAndCatchesUpWithoutARestart() async throws {
        try await Self.withFleet { fx, members, folder, all in
            let etcd = members[0]
            let set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "before the outage"], all[0])
            #expect(set.status == 0, "\(set.combined)")
            let original = etcd.clientPort
            await etcd.stop()

            let disconnected = await eventually(10) {
                let s = try? await Self.cli(["status"], all[1])
                return s?.stdout.contains("fleet: disconnected") == true
            }
            #expect(disconnected, "status never said disconnected")
            let metrics = try HTTP.request("GET", port: UInt16(all[1].control.split(separator: ":").last!)!, path: "/metrics")
            #expect(metrics.text.contains("meridian_fleet_connected 0"), "\(metrics.text)")
            for i in all { #expect(try await Self.answer(i) == Self.iad, "\(i.name) stopped serving the override") }
            let refused = try await Self.cli(["override", "set", "dc:iad", "down", "--reason", "x", "--force"], all[0])
            #expect(refused.status != 0 && refused.stderr.contains("etcd unreachable"), "\(refused.combined)")

            // A restart while etcd is down keeps the override.
            all[2].dns.signal(SIGKILL)
            _ = await all[2].dns.child.waitForExit(timeout: .seconds(5))
            all[2] = try await Self.start("ns3", folder: folder, stateDir: all[2].stateDir, in: fx)
            #expect(try await Self.answer(all[2]) == Self.iad, "log:\n\(all[2].dns.logText)")

            // Written while they are cut off: etcd serves another port for a moment.
            let elsewhere = try freePort()
            try await etcd.restart(onClientPort: elsewhere)
            let body = #"{"key":"\#(Data("/meridian-test/overrides/dc:ams".utf8).base64EncodedString())"}"#
            let del = try HTTP.request("POST", port: elsewhere, path: "/v3/kv/deleterange", body: Array(body.utf8))
            #expect(del.status == 200 && del.text.contains("\"deleted\":\"1\""), "\(del.text)")
            for i in all { #expect(try await Self.answer(i) == Self.iad, "\(i.name) cannot have seen the change yet") }
            await etcd.stop()
            try await etcd.restart(onClientPort: original)

            #expect(await Self.allAnswer(Self.ams, all, within: 10), "the instances did not catch up")
            let back = await eventually(10) {
                let s = try? await Self.cli(["status"], all[0])
                return s?.stdout.contains("fleet: connected") == true
            }
            #expect(back)
            let after = try HTTP.request("GET", port: UInt16(all[1].control.split(separator: ":").last!)!, path: "/metrics")
            #expect(after.text.contains("meridian_fleet_connected 1"), "\(after.text)")
        }
    }

    // MARK: drill --fleet

    /// A TTL of 5 s and an rto of 45 s, so a drill through the fleet can pass.
    static func drillable(_ yaml: String) -> String {
        yaml.replacingOccurrences(of: "  ttl: 30\n", with: "  ttl: 5\n")
            .replacingOccurrences(of: "rto: { target: 20s, enforce: false }", with: "rto: { target: 45s, enforce: false }")
    }

    static func drill(_ mode: String, _ folder: URL, via i: Instance, config: String = "meridian.yaml") async throws -> (CommandOutput, [String: Any]) {
        let r = try await MeridianProcess.run(["drill", "--fleet", "--down", "ams", "--mode", mode, "--json", "--timeout", "15s",
                                               "--config", folder.appendingPathComponent(config).path, "--control", i.control],
                                              timeout: .seconds(90))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.combined)")
        return (r, json)
    }

    /// The rows of a fleet drill's report, by instance.
    static func rowsByInstance(_ json: [String: Any]) -> [String: [[String: Any]]] {
        Dictionary(grouping: (json["pairs"] as? [[String: Any]]) ?? []) { $0["instance"] as? String ?? "-" }
    }

    /// `drill --fleet` through one instance measures all three, each at its own DNS address:
    /// a row per instance whose answer moved from ams to iad, all restored and back.
    @Test func aFleetDrillMeasuresEveryInstanceAndRestores() async throws {
        try await Self.withFleet(edit: Self.drillable) { fx, _, folder, all in
            #expect(await Self.allAnswer(Self.ams, all))
            let (r, json) = try await Self.drill("override", folder, via: all[0])
            #expect(r.status == 0, "\(r.combined)")
            let rows = Self.rowsByInstance(json)
            #expect(Set(rows.keys) == ["ns1", "ns2", "ns3"], "\(json)")
            for i in all {
                let mine = rows[i.name] ?? []
                #expect(mine.count == 1, "\(i.name): \(mine)")
                for p in mine {
                    #expect(p["server"] as? String == "127.0.0.1:\(i.dns.port)", "\(p)")
                    #expect(p["in_datacenter_before"] as? Bool == true, "\(p)")
                    #expect((p["after"] as? [String: Any])?["datacenters"] as? [String] == ["iad"], "\(p)")
                    #expect(p["moved_in_s"] is Double && p["returned_in_s"] is Double, "\(p)")
                }
            }
            let instances = (json["instances"] as? [[String: Any]]) ?? []
            #expect(instances.map { $0["name"] as? String } == ["ns1", "ns2", "ns3"], "\(json)")
            #expect(instances.allSatisfy { $0["passed"] as? Bool == true }, "\(json)")
            #expect(json["restored"] as? Bool == true && json["returned"] as? Bool == true, "\(json)")
            // Restored everywhere: no override left, every instance answers ams again.
            #expect(await Self.allAnswer(Self.ams, all))

            // The text report: a row and a summary line per instance.
            let text = try await MeridianProcess.run(["drill", "--fleet", "--down", "ams", "--timeout", "15s",
                                                      "--config", folder.appendingPathComponent("meridian.yaml").path, "--control", all[2].control],
                                                     timeout: .seconds(90))
            #expect(text.status == 0, "\(text.combined)")
            #expect(text.stdout.contains("fleet drill: 3 instance(s): ns1, ns2, ns3"), "\(text.stdout)")
            for n in ["ns1", "ns2", "ns3"] {
                #expect(text.stdout.split(separator: "\n").contains { $0.hasPrefix(n + " ") && $0.contains("www.ctl.test.") }, "\(text.stdout)")
                #expect(text.stdout.contains("instance \(n): 1 pair(s) in ams before, all moved"), "\(text.stdout)")
            }
        }
    }

    /// A miss on one instance fails the whole drill and is named: ns4 runs a config whose
    /// answers carry a 60 s TTL, so its worst case exceeds the 45 s rto; the others pass.
    @Test func aMissOnOneInstanceFailsTheFleetDrill() async throws {
        try await Self.withFleet(edit: Self.drillable) { fx, _, folder, all in
            all.append(try await Self.startEdited("ns4", folder: folder, file: "slow.yaml", in: fx) {
                $0.replacingOccurrences(of: "  ttl: 5\n", with: "  ttl: 60\n")
            })
            let registered = await eventually(10) { (try? await Self.cli(["status", "--fleet"], all[0]))?.stdout.contains("ns4") == true }
            try #require(registered)
            let (r, json) = try await Self.drill("override", folder, via: all[0])
            #expect(r.status == 1, "\(r.combined)")
            let instances = Dictionary(uniqueKeysWithValues: ((json["instances"] as? [[String: Any]]) ?? []).map { ($0["name"] as? String ?? "", $0) })
            #expect(Set(instances.keys) == ["ns1", "ns2", "ns3", "ns4"], "\(json)")
            #expect(instances["ns4"]?["missed"] as? Int == 1, "\(json)")
            for n in ["ns1", "ns2", "ns3"] { #expect(instances[n]?["passed"] as? Bool == true, "\(n): \(json)") }
            #expect(Self.rowsByInstance(json)["ns4"]?.first?["verdict"] as? String == "EXCEEDS RTO", "\(json)")
            #expect(json["restored"] as? Bool == true, "\(json)")
            #expect(await Self.allAnswer(Self.ams, all))
        }
    }

    /// `--mode health --fleet`: every instance fails ams's probes through its own control
    /// API; each instance's checks go down, its answers move, and all come back.
    @Test func aFleetHealthDrillFailsTheProbesOnEveryInstance() async throws {
        try await Self.withFleet(checks: true, edit: Self.drillable) { fx, _, folder, all in
            #expect(await Self.allAnswer(Self.ams, all, within: 10))
            let (r, json) = try await Self.drill("health", folder, via: all[1])
            #expect(r.status == 0, "\(r.combined)")
            #expect(json["mode"] as? String == "health")
            let rows = Self.rowsByInstance(json)
            #expect(Set(rows.keys) == ["ns1", "ns2", "ns3"], "\(json)")
            for i in all {
                let p = rows[i.name]?.first ?? [:]
                #expect(p["server"] as? String == "127.0.0.1:\(i.dns.port)", "\(p)")
                #expect(p["first_failed_probe_s"] is Double && p["down_s"] is Double, "\(i.name): \(p)")
                #expect((p["after"] as? [String: Any])?["datacenters"] as? [String] == ["iad"], "\(p)")
                #expect(i.dns.logText.contains("failed by meridian drill --mode health"), "\(i.name): \(i.dns.logText)")
            }
            #expect(json["returned"] as? Bool == true, "\(json)")
            #expect(await Self.allAnswer(Self.ams, all, within: 10))
        }
    }
}
