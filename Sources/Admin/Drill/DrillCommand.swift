import Config
import DNSWire
import Foundation
import Glibc
import Routing
import Server

/// Command-line inputs of `meridian drill`, parsed and range-checked by the CLI.
///
///     var a = DrillArguments(down: "ams", config: "meridian.yaml")
///     a.vantages = [IPPrefix("81.2.69.0/24", strict: true)!]
///     exit(Commands.drill(a))
public struct DrillArguments: Sendable {
    public var down: String
    /// Seconds to keep the datacenter down; nil restores as soon as the answers moved.
    public var holdFor: Double?
    public var server: ListenAddress?
    public var control: String?
    public var token: String?
    public var vantages: [IPPrefix] = []
    public var config: String
    public var json = false
    public var poll: Double = 0.1
    public var timeout: Double = 60
    public var mode: DrillMode = .override
    /// Drill every instance registered in the fleet (read from `--control`'s /status).
    public var fleet = false
    public init(down: String, config: String) { self.down = down; self.config = config }
}

/// Command-line inputs of `meridian runbook`.
///
///     var a = RunbookArguments(config: "meridian.yaml")
///     a.datacenter = "ams"
///     exit(Commands.runbook(a))
public struct RunbookArguments: Sendable {
    public var datacenter: String?
    public var config: String
    public var server: ListenAddress?
    public var control: String?
    public var vantages: [IPPrefix] = []
    public init(config: String) { self.config = config }
}

extension Commands {
    /// The DNS address to query: `--server`, else the config's first listen address with a
    /// wildcard replaced by loopback (the drill runs on the server's host).
    static func drillServer(_ given: ListenAddress?, _ model: ConfigModel) throws(DrillError) -> ListenAddress {
        var a: ListenAddress
        if let given { a = given } else {
            do { a = try ListenAddress(model.server.listen.first ?? "127.0.0.1:53") } catch {
                throw DrillError(.usage, "--server: \(error)")
            }
        }
        if a.address == IPAddress(v4: 0) { a.address = IPAddress(v4: 0x7F00_0001) }
        if a.address.isV6 && a.address == IPAddress("::")! { a.address = IPAddress("::1")! }
        return a
    }

    static func drillControlURL(_ text: String?, _ model: ConfigModel) -> String? {
        if let t = text { return t }
        guard let c = model.server.control else { return nil }
        var a = c
        if a.hasPrefix("0.0.0.0:") { a = "127.0.0.1:" + a.dropFirst(8) }
        if a.hasPrefix("[::]:") { a = "[::1]:" + a.dropFirst(5) }
        return "http://" + a
    }

    static func drillVantages(_ given: [IPPrefix], _ model: ConfigModel) -> [Vantage] {
        guard !given.isEmpty else { return DatacenterPlan.defaultVantages(model) }
        var out: [Vantage] = []
        for p in given where !out.contains(where: { $0.prefix == p }) { out.append(Vantage(p, note: "given with --vantage")) }
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
            if args.fleet && args.server != nil {
                throw DrillError(.usage, "--server and --fleet: a fleet drill queries each instance at the DNS address it registers")
            }
            let server = try drillServer(args.server, model)
            guard let url = drillControlURL(args.control, model) else {
                throw DrillError(.usage, "no control API: give --control URL or set server.control in \(args.config)")
            }
            // The same token lookup as `meridian status`: --token, $MERIDIAN_CONTROL_TOKEN,
            // then control_token or control_token_file of the config.
            _ = try DrillControl(url: url, token: nil)
            let control: DrillControl
            do {
                control = DrillControl(client: try ControlEndpoint(url: url, token: args.token, configPath: args.config).client())
            } catch {
                throw DrillError(.usage, error.message)
            }
            _ = try DatacenterPlan(model: model, datacenter: args.down)
            var opts = DrillOptions(datacenter: args.down, holdFor: args.holdFor, server: server, control: control,
                                    vantages: drillVantages(args.vantages, model))
            opts.poll = args.poll
            opts.timeout = args.timeout
            opts.mode = args.mode
            if args.fleet { opts.instances = try fleetInstances(control) }
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

    /// `drill --fleet`: every instance registered in etcd, as `control`'s server reads it,
    /// reached at its registered DNS address and control URL with the same token. A wildcard
    /// listen address is queried on loopback (the instance then has to run on this host).
    static func fleetInstances(_ control: DrillControl) throws(DrillError) -> [DrillInstance] {
        let status: StatusReport
        do { status = try control.client.status() } catch { throw DrillError(.failed, "--fleet: \(error.message)") }
        guard let fleet = status.fleet else { throw DrillError(.usage, "--fleet: the server at \(control.url) is not in a fleet (no fleet: in its config)") }
        guard let list = fleet.instances, !list.isEmpty else {
            throw DrillError(.failed, "--fleet: \(fleet.name) is \(fleet.state) and lists no instances\(fleet.lastError.map { ": \($0)" } ?? "")")
        }
        var out: [DrillInstance] = []
        for i in list {
            guard let dns = i.dns?.first, var server = try? ListenAddress(dns) else {
                throw DrillError(.failed, "--fleet: instance \(i.name) (version \(i.version)) registers no DNS address; upgrade it or drill it alone with --server")
            }
            guard let url = i.control else {
                throw DrillError(.failed, "--fleet: instance \(i.name) has no control API; a fleet drill needs one on every instance")
            }
            if server.address == IPAddress(v4: 0) { server.address = IPAddress(v4: 0x7F00_0001) }
            if server.address.isV6 && server.address == IPAddress("::")! { server.address = IPAddress("::1")! }
            let reach: DrillControl
            do {
                reach = DrillControl(client: try ControlClient(url: drillLoopback(url), token: control.client.token, timeout: control.client.timeout))
            } catch {
                throw DrillError(.failed, "--fleet: instance \(i.name): control URL \(url): \(error.message)")
            }
            out.append(DrillInstance(name: i.name, server: server, control: reach))
        }
        return out
    }

    /// A wildcard host in a control URL replaced by loopback.
    static func drillLoopback(_ url: String) -> String {
        url.replacingOccurrences(of: "//0.0.0.0:", with: "//127.0.0.1:").replacingOccurrences(of: "//[::]:", with: "//[::1]:")
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
            let t = RunbookTargets(server: server, control: drillControlURL(args.control, model),
                                   needsToken: model.server.controlTokenConfigured, configPath: absolutePath(args.config))
            if let c = t.control { _ = try DrillControl(url: c, token: nil) }
            print(try Runbook.markdown(model: model, router: router, datacenters: dcs, targets: t,
                                       vantages: drillVantages(args.vantages, model)), terminator: "")
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
