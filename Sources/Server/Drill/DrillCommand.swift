import Config
import DNSWire
import Foundation
import Glibc
import Routing

/// Command-line inputs of `meridian drill`, unparsed, so the CLI stays a thin shell.
///
///     var a = DrillArguments(down: "ams", config: "meridian.yaml")
///     a.vantages = ["81.2.69.0/24"]
///     exit(Runtime.drill(a))
public struct DrillArguments: Sendable {
    public var down: String
    public var holdFor: String?
    public var server: String?
    public var control: String?
    public var token: String?
    public var vantages: [String] = []
    public var config: String
    public var json = false
    public var poll = "100ms"
    public var timeout = "60s"
    public init(down: String, config: String) { self.down = down; self.config = config }
}

/// Command-line inputs of `meridian runbook`.
///
///     var a = RunbookArguments(config: "meridian.yaml")
///     a.datacenter = "ams"
///     exit(Runtime.runbook(a))
public struct RunbookArguments: Sendable {
    public var datacenter: String?
    public var config: String
    public var server: String?
    public var control: String?
    public var vantages: [String] = []
    public init(config: String) { self.config = config }
}

extension Runtime {
    /// The DNS address to query: `--server`, else the config's first listen address with a
    /// wildcard replaced by loopback (the drill runs on the server's host).
    static func drillServer(_ text: String?, _ model: ConfigModel) throws(DrillError) -> ListenAddress {
        let raw = text ?? model.server.listen.first ?? "127.0.0.1:53"
        do {
            var a = try ListenAddress(raw)
            if a.address == IPAddress(v4: 0) { a.address = IPAddress(v4: 0x7F00_0001) }
            if a.address.isV6 && a.address == IPAddress("::")! { a.address = IPAddress("::1")! }
            return a
        } catch {
            throw DrillError(.usage, "--server: \(error)")
        }
    }

    static func drillControlURL(_ text: String?, _ model: ConfigModel) -> String? {
        if let t = text { return t }
        guard let c = model.server.control else { return nil }
        var a = c
        if a.hasPrefix("0.0.0.0:") { a = "127.0.0.1:" + a.dropFirst(8) }
        if a.hasPrefix("[::]:") { a = "[::1]:" + a.dropFirst(5) }
        return "http://" + a
    }

    static func drillVantages(_ texts: [String], _ model: ConfigModel) throws(DrillError) -> [Vantage] {
        guard !texts.isEmpty else { return DatacenterPlan.defaultVantages(model) }
        var out: [Vantage] = []
        for t in texts {
            guard let p = IPPrefix(t, strict: true) else {
                throw DrillError(.usage, "--vantage \(t): expected a CIDR such as 192.0.2.0/24 with no host bits set")
            }
            if !out.contains(where: { $0.prefix == p }) { out.append(Vantage(p, note: "given with --vantage")) }
        }
        return out
    }

    static func loadModel(_ path: String) throws(DrillError) -> ConfigModel {
        do { return try ConfigLoader.load(path: path) } catch {
            throw DrillError(.usage, error.errors.map(\.description).joined(separator: "\n"))
        }
    }

    /// `meridian drill`: see `Drill.run`. Returns the exit status: 0 pass, 1 fail, 2 usage.
    public static func drill(_ args: DrillArguments) -> Int32 {
        do throws(DrillError) {
            let model = try loadModel(args.config)
            let server = try drillServer(args.server, model)
            guard let url = drillControlURL(args.control, model) else {
                throw DrillError(.usage, "no control API: give --control URL or set server.control in \(args.config)")
            }
            // The same token lookup as `meridian status`: --token, $MERIDIAN_CONTROL_TOKEN,
            // then control_token or control_token_file of the config.
            _ = try DrillControl(url: url, token: nil)
            let control: DrillControl
            do { control = DrillControl(client: try Runtime.controlClient(url: url, token: args.token, configPath: args.config)) } catch {
                throw DrillError(.usage, error.message)
            }
            guard let poll = parseDrillDuration(args.poll), poll >= 0.01, poll <= 60 else {
                throw DrillError(.usage, "--poll \(args.poll): expected a duration from 10ms to 60s, e.g. 100ms")
            }
            guard let timeout = parseDrillDuration(args.timeout), timeout >= 1, timeout <= 3600 else {
                throw DrillError(.usage, "--timeout \(args.timeout): expected a duration from 1s to 1h, e.g. 60s")
            }
            var hold: Double?
            if let f = args.holdFor {
                guard let v = parseDrillDuration(f), v > 0, v <= 86400 else {
                    throw DrillError(.usage, "--for \(f): expected a duration up to 1d, e.g. 5m")
                }
                hold = v
            }
            _ = try DatacenterPlan(model: model, datacenter: args.down)
            var opts = DrillOptions(datacenter: args.down, holdFor: hold, server: server, control: control,
                                    vantages: try drillVantages(args.vantages, model))
            opts.poll = poll
            opts.timeout = timeout
            let interrupt = DrillInterrupt()
            watchSignals(interrupt)
            // Progress goes to stderr, unbuffered, so it shows as it happens and stdout
            // holds only the report (the JSON document with --json).
            let report = Drill.run(model: model, options: opts, interrupt: interrupt) { line in printErr(line) }
            if args.json { print(Drill.json(report), terminator: "") }
            else { print(Drill.table(report), terminator: "") }
            if args.json { for e in report.errors { printErr("error: \(e)") } }
            return report.exitCode
        } catch {
            printErr("meridian drill: \(error.message)")
            return error.exitCode
        }
    }

    /// SIGINT/SIGTERM (blocked in every thread by `Signals.blockAll`) are taken on their own
    /// thread and turned into a flag the drill checks between polls, so it restores first.
    static func watchSignals(_ interrupt: DrillInterrupt) {
        let t = Thread {
            while true {
                let sig = Signals.wait()
                if sig == SIGINT || sig == SIGTERM {
                    interrupt.fire()
                    printErr("\(Signals.name(sig)): stopping the drill and restoring the datacenter (again to stop waiting)")
                }
            }
        }
        t.start()
    }

    static func absolutePath(_ p: String) -> String {
        p.hasPrefix("/") ? p : URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(p).standardizedFileURL.path
    }

    /// `meridian runbook`: the Markdown runbook on standard output. 0, or 2 on usage errors.
    public static func runbook(_ args: RunbookArguments) -> Int32 {
        do throws(DrillError) {
            let model = try loadModel(args.config)
            let router: Router
            do { router = try Router(model: model) } catch { throw DrillError(.usage, error.description) }
            let server = try drillServer(args.server, model)
            let dcs: [String]
            if let d = args.datacenter { dcs = [d] } else {
                dcs = model.datacenters.map(\.name).filter { (try? DatacenterPlan(model: model, datacenter: $0)) != nil }
                if dcs.isEmpty { throw DrillError(.usage, "no GSLB name in \(args.config) answers with a datacenter's endpoints") }
            }
            var t = RunbookTargets(server: server, control: drillControlURL(args.control, model),
                                   needsToken: model.server.controlTokenConfigured, configPath: absolutePath(args.config))
            if let c = t.control { _ = try DrillControl(url: c, token: nil) }
            print(try Runbook.markdown(model: model, router: router, datacenters: dcs, targets: t,
                                       vantages: try drillVantages(args.vantages, model)), terminator: "")
            return 0
        } catch {
            printErr("meridian runbook: \(error.message)")
            return error.exitCode
        }
    }
}

extension ServerSettings {
    /// Whether the control API wants a bearer token (`control_token` or `control_token_file`).
    var controlTokenConfigured: Bool { controlToken != nil || controlTokenFile != nil }
}
