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
    static func folder(etcd: [String], auth: Bool = false) throws -> URL {
        let fleet = """
            fleet:
              etcd: [\(etcd.joined(separator: ", "))]
              prefix: /meridian-test/
              lease_ttl: 5s
              ack_timeout: 2s
            \(auth ? "  username: root\n  password_file: etcd-password\n" : "")
            """
        let dir = try ControlFixture.folder(fleet + ControlFixture.yaml(control: "127.0.0.1:1", checks: false))
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

    static func start(_ name: String, folder: URL, stateDir: URL) async throws -> Instance {
        let (p, url) = try await serveWithControl(config: folder.appendingPathComponent("meridian.yaml"),
                                                  extra: ["--state-dir", stateDir.path, "--fleet-name", name])
        return Instance(name: name, dns: p, control: url, stateDir: stateDir)
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

    /// etcd and three instances for `body`; everything is stopped afterwards, also on failure.
    static func withFleet(etcdMembers: Int = 1, auth: Bool = false,
                          _ body: ([EtcdServer], URL, inout [Instance]) async throws -> Void) async throws {
        let members = etcdMembers == 1 ? [try await EtcdServer.start()] : try await EtcdServer.startCluster(etcdMembers)
        var instances: [Instance] = []
        let folder = try Self.folder(etcd: members.map(\.endpoint), auth: auth)
        func cleanup() async {
            for i in instances {
                i.dns.signal(SIGCONT)
                await i.dns.stop()
                try? FileManager.default.removeItem(at: i.stateDir)
            }
            for m in members { await m.stop(removeData: true) }
            try? FileManager.default.removeItem(at: folder)
        }
        do {
            if auth { try enableAuth(members[0]) }
            for n in ["ns1", "ns2", "ns3"] {
                instances.append(try await start(n, folder: folder, stateDir: try makeTemporaryDirectory(prefix: "meridian-fleet-\(n)")))
            }
            // All three registered before the test begins.
            let registered = await eventually(10) {
                let s = try? await cli(["status", "--fleet"], instances[0])
                return ["ns1", "ns2", "ns3"].allSatisfy { s?.stdout.contains($0) == true }
            }
            try #require(registered, "instances never registered; log:\n\(instances[0].dns.logText)")
            try await body(members, folder, &instances)
            for i in instances { #expect(i.dns.isRunning, "\(i.name) died; log:\n\(i.dns.logText)") }
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }

    @Test func anOverrideThroughOneInstanceChangesAllThreeAndEachAcknowledges() async throws {
        try await Self.withFleet { _, _, all in
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
        try await Self.withFleet { _, _, all in
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
        try await Self.withFleet(etcdMembers: 3) { members, _, all in
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
        try await Self.withFleet { _, folder, all in
            let config = try String(contentsOf: folder.appendingPathComponent("meridian.yaml"), encoding: .utf8)
            try (config + "# edited on this host only\n").write(to: folder.appendingPathComponent("other.yaml"), atomically: true, encoding: .utf8)
            let state = try makeTemporaryDirectory(prefix: "meridian-fleet-ns4")
            let (p, url) = try await serveWithControl(config: folder.appendingPathComponent("other.yaml"),
                                                      extra: ["--state-dir", state.path, "--fleet-name", "ns4"])
            all.append(Instance(name: "ns4", dns: p, control: url, stateDir: state))
            let drift = await eventually(10) {
                let s = try? await Self.cli(["status", "--fleet"], all[0])
                return s?.stdout.split(separator: "\n").contains { $0.hasPrefix("ns4") && $0.hasSuffix("DRIFT") } == true
            }
            let shown = try await Self.cli(["status", "--fleet"], all[0])
            #expect(drift, "\(shown.stdout)")
            #expect(shown.stdout.split(separator: "\n").filter { $0.hasSuffix("DRIFT") }.count == 1, "\(shown.stdout)")
        }
    }

    /// etcd with user authentication: the instances log in (fleet.username and
    /// fleet.password_file) and overrides propagate; one without credentials stays
    /// disconnected and says why.
    @Test func withEtcdAuthenticationOverridesPropagate() async throws {
        try await Self.withFleet(auth: true) { members, folder, all in
            let set = try await Self.cli(["override", "set", "dc:ams", "down", "--reason", "with auth"], all[2])
            #expect(set.status == 0 && set.stdout.contains("acknowledged by 3 instance(s)"), "\(set.combined)")
            for i in all { #expect(try await Self.answer(i) == Self.iad) }

            let config = try String(contentsOf: folder.appendingPathComponent("meridian.yaml"), encoding: .utf8)
            try config.replacingOccurrences(of: "  username: root\n  password_file: etcd-password\n", with: "")
                .write(to: folder.appendingPathComponent("anonymous.yaml"), atomically: true, encoding: .utf8)
            let state = try makeTemporaryDirectory(prefix: "meridian-fleet-anon")
            let (p, url) = try await serveWithControl(config: folder.appendingPathComponent("anonymous.yaml"),
                                                      extra: ["--state-dir", state.path, "--fleet-name", "anon"])
            all.append(Instance(name: "anon", dns: p, control: url, stateDir: state))
            let refused = await eventually(5) {
                let s = try? await Self.cli(["status"], all[3])
                return s?.stdout.contains("fleet: disconnected as anon") == true && s?.stdout.contains("user name is empty") == true
            }
            #expect(refused, "\(p.logText)")
            #expect(try await Self.answer(all[3]) == Self.ams, "an instance that cannot log in applies nothing")
        }
    }

    @Test func anExpiringOverrideRevertsOnAllThree() async throws {
        try await Self.withFleet { _, _, all in
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
        try await Self.withFleet { members, folder, all in
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
            all[2] = try await Self.start("ns3", folder: folder, stateDir: all[2].stateDir)
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
}
