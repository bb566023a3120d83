import Foundation
import Testing
import TestSupport

/// Overrides saved in `server.state_dir`: a crash (SIGKILL) and a restart keep them, with
/// their reason, author and expiry, before the first query is answered; expired ones stay
/// expired. The fixture is `ControlFixture` (www.ctl.test fails over from ams to iad), with
/// `state_dir: state` (relative: resolved against the config's folder).
@Suite(.serialized) struct DurableOverrideTests {
    static let ams = ["192.0.2.10"], iad = ["198.51.100.10"]

    /// The fixture's folder, its config saving overrides under `state/`.
    static func folder(stateDir: String = "state") throws -> URL {
        try ControlFixture.folder(ControlFixture.yaml(control: "127.0.0.1:1", checks: false,
                                                      extraServer: "  state_dir: \(stateDir)\n"))
    }

    static func start(_ dir: URL) async throws -> (MeridianProcess, String) {
        try await serveWithControl(config: dir.appendingPathComponent("meridian.yaml"), privateStateDir: false)
    }

    static func answer(_ p: MeridianProcess) async throws -> [String] {
        try await Dig.query("www.ctl.test", "A", port: p.port).answer.map(\.rdata).sorted()
    }

    /// SIGKILL, and wait (bounded) until the process is gone.
    static func crash(_ p: MeridianProcess) async {
        p.signal(SIGKILL)
        _ = await p.child.waitForExit(timeout: .seconds(5))
    }

    @Test func anOverrideSurvivesSigkillAndIsInForceAtTheFirstAnswer() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var (p, url) = try await Self.start(dir)
        do {
            #expect(try await Self.answer(p) == Self.ams)
            let set = try await MeridianProcess.run(["override", "set", "dc:ams", "down", "--reason", "ams maintenance",
                                                     "--author", "ops@test", "--control", url])
            #expect(set.status == 0, "\(set.combined)")
            #expect(try await Self.answer(p) == Self.iad)
            let saved = try String(contentsOf: dir.appendingPathComponent("state/overrides.json"), encoding: .utf8)
            #expect(saved.contains("\"target\" : \"dc:ams\"") && saved.contains("\"author\" : \"ops@test\""), "\(saved)")
            await Self.crash(p)

            (p, url) = try await Self.start(dir)
            // The first query after the restart already sees the override.
            #expect(try await Self.answer(p) == Self.iad, "log:\n\(p.logText)")
            #expect(p.logText.contains("restored override dc:ams down (set by ops@test): \"ams maintenance\""), "\(p.logText)")
            let list = try await MeridianProcess.run(["override", "list", "--control", url])
            #expect(list.stdout.contains("dc:ams down until cleared") && list.stdout.contains("[by ops@test]"), "\(list.combined)")

            // A clear is saved too: after another crash the automatic state is back.
            let clear = try await MeridianProcess.run(["override", "clear", "dc:ams", "--control", url])
            #expect(clear.status == 0, "\(clear.combined)")
            await Self.crash(p)
            (p, url) = try await Self.start(dir)
            #expect(try await Self.answer(p) == Self.ams, "log:\n\(p.logText)")
            #expect(!p.logText.contains("restored override"), "\(p.logText)")
        } catch {
            await p.stop()
            throw error
        }
        #expect(p.isRunning, "meridian died; log:\n\(p.logText)")
        await p.stop()
    }

    @Test func anExpiringOverrideKeepsItsExpiryAcrossACrashAndStaysExpired() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var (p, url) = try await Self.start(dir)
        do {
            let set = try await MeridianProcess.run(["override", "set", "dc:ams", "down", "--reason", "short drill",
                                                     "--expires", "4s", "--control", url])
            #expect(set.status == 0, "\(set.combined)")
            let setAt = Date()
            await Self.crash(p)
            (p, url) = try await Self.start(dir)
            // Restored with its original expiry (not a fresh 4 s), so it lapses on time.
            #expect(try await Self.answer(p) == Self.iad, "log:\n\(p.logText)")
            let lapsed = await eventually(10) { (try? await Self.answer(p)) == Self.ams }
            #expect(lapsed, "the restored override never lapsed; log:\n\(p.logText)")
            #expect(Date().timeIntervalSince(setAt) < 9, "it lapsed late: its expiry was not the original one")
            await Self.crash(p)
            (p, url) = try await Self.start(dir)
            #expect(try await Self.answer(p) == Self.ams, "log:\n\(p.logText)")
            #expect(p.logText.contains("saved override dc:ams down expired while stopped; not restored"), "\(p.logText)")
        } catch {
            await p.stop()
            throw error
        }
        await p.stop()
    }

    /// Without a fleet too: an override that would leave www.ctl.test with no healthy
    /// endpoint is refused naming it, changes nothing, and `--force` sets it.
    @Test func theSafetyRuleRefusesAnOverrideThatEmptiesAName() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (p, url) = try await Self.start(dir)
        do {
            let ams = try await MeridianProcess.run(["override", "set", "dc:ams", "down", "--reason", "a", "--control", url])
            #expect(ams.status == 0, "\(ams.combined)")
            let iad = try await MeridianProcess.run(["override", "set", "dc:iad", "down", "--reason", "b", "--control", url])
            #expect(iad.status == 1, "\(iad.combined)")
            #expect(iad.stderr.contains("HTTP 409: refused by the safety rule: dc:iad down would leave 1 GSLB name(s) with no healthy endpoint: www.ctl.test."),
                    "\(iad.combined)")
            #expect(try await Self.answer(p) == Self.iad)
            let list = try await MeridianProcess.run(["override", "list", "--control", url])
            #expect(!list.stdout.contains("dc:iad"), "\(list.combined)")
            let forced = try await MeridianProcess.run(["override", "set", "dc:iad", "down", "--reason", "b", "--force", "--control", url])
            #expect(forced.status == 0, "\(forced.combined)")
            #expect(p.logText.contains("forced past the safety rule: www.ctl.test."), "\(p.logText)")
            #expect(try await Self.answer(p) != Self.iad)
        } catch {
            await p.stop()
            throw error
        }
        await p.stop()
    }

    /// `check` and `serve` refuse a state folder that cannot be written, with the key's place.
    @Test func aStateDirThatCannotBeWrittenIsRefusedAtLoad() async throws {
        // A path under a regular file: not creatable, even by root.
        let dir = try Self.folder(stateDir: "meridian.yaml/state")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("meridian.yaml").path
        let check = try await MeridianProcess.run(["check", "--config", config], privateStateDir: false)
        #expect(check.status != 0, "\(check.combined)")
        #expect(check.combined.contains("meridian.yaml:3:14: server.state_dir: \(config)/state does not exist and cannot be created"),
                "\(check.combined)")
        let port = try freePort()
        let serve = try await MeridianProcess.run(["serve", "--config", config, "--listen", "127.0.0.1:\(port)", "--state-dir",
                                                   config + "/state"], timeout: .seconds(20))
        #expect(serve.status == 1 && serve.combined.contains("--state-dir: \(config)/state does not exist and cannot be created"),
                "\(serve.combined)")
    }
}

/// `serve --config CONFIG` on fresh ports (the control address from `--control`), plus
/// `extra` arguments, once its control API answers; returns it and the control URL.
func serveWithControl(config: URL, extra: [String] = [], privateStateDir: Bool = true) async throws -> (MeridianProcess, String) {
    let dns = try freePort(), ctl = try freePort()
    let p = try await MeridianProcess.start(["serve", "--config", config.path, "--listen", "127.0.0.1:\(dns)",
                                             "--control", "127.0.0.1:\(ctl)"] + extra,
                                            port: dns, probeName: "ctl.test.", privateStateDir: privateStateDir)
    let ready = await eventually(3) { (try? HTTP.request("GET", port: ctl, path: "/healthz"))?.status == 200 }
    if !ready { await p.stop() }
    try #require(ready, "control API never answered; log:\n\(p.logText)")
    return (p, "http://127.0.0.1:\(ctl)")
}
