import Admin
import ArgumentParser
import CEarlySignals
import Config
import DNSWire
import Foundation
import Health
import Logging
import Server

// Signals must be blocked before any thread exists, so every thread inherits the mask and
// SIGHUP/SIGTERM reach only the thread that sigwaits for them. A C constructor
// (CEarlySignals) already did it before the Swift runtime started; this is the fallback
// should it not have run.
if meridian_early_signals_blocked() == 0 { Signals.blockAll() }
Meridian.mainExitingTwoOnUsageErrors()

struct Meridian: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "An authoritative DNS server for global server load balancing.",
        version: MeridianVersion.string,
        subcommands: [Serve.self, Check.self, Keygen.self, Explain.self, Status.self, Override.self, Drill.self, Runbook.self, Report.self],
        defaultSubcommand: nil
    )
}

/// Where the configuration comes from; shared by every command.
struct SourceOptions: ParsableArguments {
    @Option(name: .long, help: "The YAML configuration file (zones, policies, checks).")
    var config: String?

    @Option(name: .long, help: "Serve every *.zone file in this folder (origin from the file name or $ORIGIN); with --config, this folder replaces its zones_dir.")
    var zones: String?

    @Option(name: .long, help: "The folder where overrides are saved (overrides server.state_dir; default /var/lib/meridian).")
    var stateDir: String?

    func validate() throws {
        if config == nil && zones == nil {
            throw ValidationError("give --config FILE or --zones DIR (or both)")
        }
        if let d = stateDir, d.isEmpty { throw ValidationError("--state-dir must name a folder") }
    }

    var sources: ConfigSources { ConfigSources(configPath: config, zonesDirectory: zones, stateDirectory: stateDir) }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Answer DNS queries over UDP and TCP.")

    @OptionGroup var source: SourceOptions

    @Option(name: .long, help: "Address to listen on, IPv4 `ADDR:PORT` or IPv6 `[ADDR]:PORT`; repeat for more.")
    var listen: [String] = []

    @Option(name: .long, help: "UDP worker threads (default: one per core).")
    var workers: Int?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Serve the control and metrics API on ADDR:PORT (overrides server.control).")
    var control: String?

    @Option(name: .long, help: "This instance's name in the fleet (overrides fleet.name; default the host name).")
    var fleetName: String?
    @Option(name: .long, help: ArgumentHelp("Allow unsigned zone transfers (AXFR, IXFR) of every zone to this address or CIDR prefix; repeat for more.", valueName: "PREFIX"))
    var allowTransfer: [String] = []

    func validate() throws {
        if let n = fleetName, let problem = FleetSettings.nameProblem(n) { throw ValidationError("bad --fleet-name: \(problem)") }
        if let w = workers, w < 1 || w > 256 { throw ValidationError("--workers must be between 1 and 256") }
        for p in allowTransfer where TransferACL.prefix(p) == nil {
            throw ValidationError("--allow-transfer \(p): not an address or a CIDR prefix with no bits set past its length")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() throws {
        var sources = source.sources
        sources.allowTransfer = allowTransfer.compactMap(TransferACL.prefix)
        let code = Runtime.serve(sources: sources, listen: listen, workers: workers,
                                 logLevel: Logger.Level(rawValue: logLevel) ?? .info, control: control,
                                 fleetName: fleetName)
        throw ExitCode(code)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration and zone files; print every error with file:line:column.")

    @OptionGroup var source: SourceOptions

    func run() throws {
        throw ExitCode(Commands.check(sources: source.sources))
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a DNSSEC key pair in BIND format (K<zone>.+<alg>+<tag>.key and .private).")

    @Argument(help: "The zone the key signs.")
    var zone: String

    @Option(name: .long, help: "13 (ECDSAP256SHA256, the default) or 15 (ED25519).")
    var algorithm: UInt8 = 13

    @Option(name: .long, help: "csk (one key signs everything, the default), ksk (signs the DNSKEY RRset) or zsk (signs the rest).")
    var role: String = "csk"

    @Option(name: .long, help: "The folder to write the key files to.")
    var dir: String = "."

    func run() throws {
        throw ExitCode(Commands.keygen(zone: zone, algorithm: algorithm, role: role, folder: dir))
    }
}

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show how a GSLB name is answered for a client, step by step.")

    @OptionGroup var source: SourceOptions

    @Argument(help: "The name to resolve.")
    var name: String

    @Argument(help: "The query type (default A).")
    var type: String = "A"

    @Option(name: .long, help: ArgumentHelp("The client's address (the resolver's source address).", valueName: "ADDRESS"))
    var client: IPAddress

    @Option(name: .long, help: ArgumentHelp("An EDNS Client Subnet the resolver sends, as CIDR with no host bits set.", valueName: "CIDR"))
    var ecs: IPPrefix?

    @Option(name: .long, help: "Treat this endpoint as down; repeat for more.")
    var down: [String] = []

    @Option(name: .long, help: ArgumentHelp("Also show this running server's vantage view of the name's endpoints (fleet mode: which instances see what, and the quorum's decision).", valueName: "URL"))
    var control: String?

    func validate() throws {
        if source.config == nil { throw ValidationError("explain needs --config FILE with GSLB names") }
    }

    func run() throws {
        throw ExitCode(Commands.explain(sources: source.sources, name: name, type: type, client: client, ecs: ecs, down: down,
                                         control: control.map { ControlEndpoint(url: $0, token: nil, configPath: source.config) }))
    }
}

extension Meridian {
    /// The commands whose usage errors exit 2 (not ArgumentParser's 64), as their
    /// documentation promises to scripts.
    static let usageErrorsExitTwo: Set<String> = ["drill", "runbook", "override", "explain", "report"]

    /// `main()`, except that the commands of `usageErrorsExitTwo` exit 2 on a usage error, and that every command but `serve` and
    /// `drill` (which take SIGINT/SIGTERM on a sigwait thread) unblocks the signals once
    /// parsed, so Ctrl-C and SIGTERM stop it.
    static func mainExitingTwoOnUsageErrors() {
        let args = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try parseAsRoot(args)
            if !(command is Serve || command is Drill) { Signals.unblockAll() }
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if let first = args.first, usageErrorsExitTwo.contains(first), code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}

extension DrillMode: ExpressibleByArgument {}

struct Drill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rehearse losing a datacenter: force it down, measure how fast answers move, restore it.",
        discussion: """
        Forces DATACENTER down through the control API (POST /override, reason "drill"), queries every \
        GSLB name that can answer with it as clients in each --vantage subnet (EDNS Client Subnet) every \
        --poll until no answer points into it, then clears the override (also on Ctrl-C, SIGTERM or any \
        error) and waits until the answers point back.

        MOVED IN is measured at the authoritative server. Resolvers may keep the old answer for its TTL, \
        so the worst case a client sees is MOVED IN + TTL, and each name's rto is compared with that.

        Default vantages: one per distinct target of the config's geo.cidr entries (at most 8), plus \
        0.0.0.0/0 (the query's source address decides). The override expires by itself after \
        max(--for, --timeout) + 30s, so a killed drill cannot leave the datacenter down.

        With --mode health the automatic path is drilled instead: the server answers every health \
        probe of DATACENTER's checks as failed (POST /drill/health; nothing reaches the backends' state), \
        so the checks go down through their own fall count and the answers move as in an outage. The \
        report adds, per name and vantage, the first failed probe and the moment its checks went down, \
        compares MOVED IN with the name's failover budget (interval x fall + timeout) as well as the \
        worst case with its rto, and names the parts that dominate a miss.

        With --fleet every instance registered in the fleet is drilled: the list, each instance's DNS \
        address and its control URL come from --control's /status (each instance registers them in \
        etcd). The override goes through etcd once (--mode health fails the probes on every instance \
        through its own control API); every instance is queried per name and vantage, and the report \
        has a row per instance, name and vantage and a line per instance. A miss on any instance fails \
        the drill.

        Exit status: 0 every name moved within its rto (or has none) and came back; 1 a name exceeded \
        its rto (or, with --mode health, its budget), never moved, did not come back, or the drill failed \
        or was interrupted; 2 usage or configuration error.
        """)

    @Option(name: .long, help: ArgumentHelp("The datacenter to take down.", valueName: "DATACENTER"))
    var down: String

    @Option(name: .long, help: ArgumentHelp("override: force it down with an override (the manual path); health: fail its health probes (the automatic path).", valueName: "MODE"))
    var mode: DrillMode = .override

    @Option(name: .customLong("for"), help: ArgumentHelp("Keep it down this long (e.g. 5m); default: restore as soon as the answers moved.", valueName: "DURATION"))
    var holdFor: DurationText?

    @Option(name: .long, help: ArgumentHelp("DNS server to query (default: the config's first listen address).", valueName: "ADDR:PORT"))
    var server: ListenAddress?

    @Option(name: .long, help: ArgumentHelp("Control API (default: http:// + the config's server.control).", valueName: "URL"))
    var control: String?

    @Option(name: .long, help: ArgumentHelp("Bearer token for the control API (default: $MERIDIAN_CONTROL_TOKEN, else control_token or control_token_file of --config).", valueName: "TOKEN"))
    var token: String?

    @Option(name: .long, help: ArgumentHelp("Query as a client in this subnet (ECS); repeat for more.", valueName: "CIDR"))
    var vantage: [IPPrefix] = []

    @Option(name: .long, help: ArgumentHelp("The YAML configuration the server runs.", valueName: "FILE"))
    var config: String

    @Flag(name: .long, help: "Print the report as JSON on stdout (progress stays on stderr).")
    var json = false

    @Flag(name: .long, help: "Drill every instance registered in the fleet, each at its own DNS address and control API.")
    var fleet = false

    @Option(name: .long, help: ArgumentHelp("How often to query while waiting.", valueName: "DURATION"))
    var poll = DurationText("100ms")!

    @Option(name: .long, help: ArgumentHelp("Longest wait for the answers to move, and again to return.", valueName: "DURATION"))
    var timeout = DurationText("60s")!

    func validate() throws {
        try poll.check("--poll", 0.01...60, "a duration from 10ms to 60s, e.g. 100ms")
        try timeout.check("--timeout", 1...3600, "a duration from 1s to 1h, e.g. 60s")
        try holdFor?.check("--for", Double.leastNonzeroMagnitude...86400, "a duration up to 1d, e.g. 5m")
    }

    func run() throws {
        var a = DrillArguments(down: down, config: config)
        a.holdFor = holdFor?.seconds; a.server = server; a.control = control; a.token = token
        a.vantages = vantage; a.json = json; a.poll = poll.seconds; a.timeout = timeout.seconds
        a.mode = mode; a.fleet = fleet
        throw ExitCode(Commands.drill(a))
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count the GSLB answers in a dnstap file per minute and per resolver network, by datacenter.",
        discussion: """
        Reads a Frame Streams file of dnstap messages (server.dnstap.file, or what fstrm_capture wrote) \
        and counts the GSLB answers by the datacenter Meridian's extra field names: per minute (UTC) \
        and per resolver network (the client address cut to --v4-prefix / --v6-prefix). With \
        --datacenter, only answers sent to that datacenter: the residual traffic to a drained one.
        """)

    @Option(name: .long, help: ArgumentHelp("The dnstap file.", valueName: "FILE"))
    var dnstap: String

    @Option(name: .long, help: ArgumentHelp("Only answers at or after this time (ISO 8601, e.g. 2026-12-03T01:40:00Z).", valueName: "TIME"))
    var from: String?

    @Option(name: .long, help: ArgumentHelp("Only answers before this time (ISO 8601).", valueName: "TIME"))
    var to: String?

    @Option(name: .long, help: ArgumentHelp("Only answers that sent clients to this datacenter.", valueName: "NAME"))
    var datacenter: String?

    @Option(name: .customLong("v4-prefix"), help: "Prefix length of an IPv4 resolver network.")
    var v4Prefix = 24

    @Option(name: .customLong("v6-prefix"), help: "Prefix length of an IPv6 resolver network.")
    var v6Prefix = 56

    func validate() throws {
        for (name, text) in [("--from", from), ("--to", to)] {
            if let t = text, ISO8601DateFormatter().date(from: t) == nil {
                throw ValidationError("\(name): not an ISO 8601 time such as 2026-12-03T01:40:00Z: \(t)")
            }
        }
        guard (0...32).contains(v4Prefix) else { throw ValidationError("--v4-prefix must be 0...32") }
        guard (0...128).contains(v6Prefix) else { throw ValidationError("--v6-prefix must be 0...128") }
    }

    func run() throws {
        var a = ReportArguments(dnstap: dnstap)
        a.from = from.flatMap { ISO8601DateFormatter().date(from: $0) }
        a.to = to.flatMap { ISO8601DateFormatter().date(from: $0) }
        a.datacenter = datacenter
        a.v4Prefix = v4Prefix; a.v6Prefix = v6Prefix
        throw ExitCode(Commands.report(a))
    }
}

struct Runbook: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a disaster-recovery runbook (Markdown) for each datacenter, from the config.",
        discussion: """
        Numbered steps per datacenter: who decides, check the state, force it down, verify with dig \
        +subnet per vantage (with the expected answers), bring it back, verify again, and rehearse with \
        meridian drill; with a time estimate per phase from the failover budget and TTLs. Every command \
        is in a fenced sh block and runs as written.
        """)

    @Option(name: .long, help: ArgumentHelp("Only this datacenter (default: every datacenter a GSLB name uses).", valueName: "NAME"))
    var datacenter: String?

    @Option(name: .long, help: ArgumentHelp("The YAML configuration the server runs.", valueName: "FILE"))
    var config: String

    @Option(name: .long, help: ArgumentHelp("DNS server the dig checks query (default: the config's first listen address).", valueName: "ADDR:PORT"))
    var server: ListenAddress?

    @Option(name: .long, help: ArgumentHelp("Control API (default: http:// + the config's server.control).", valueName: "URL"))
    var control: String?

    @Option(name: .long, help: ArgumentHelp("Vantage subnets for the dig checks (default: as for drill).", valueName: "CIDR"))
    var vantage: [IPPrefix] = []

    func run() throws {
        var a = RunbookArguments(config: config)
        a.datacenter = datacenter; a.server = server; a.control = control; a.vantages = vantage
        throw ExitCode(Commands.runbook(a))
    }
}

/// How the CLI reaches a running server's control API.
struct ControlOptions: ParsableArguments {
    @Option(name: .long, help: "The control API, e.g. http://127.0.0.1:8053 (default: server.control of --config, else 127.0.0.1:8053).")
    var control: String?

    @Option(name: .long, help: "Bearer token (default: $MERIDIAN_CONTROL_TOKEN, else server.control_token of --config).")
    var token: String?

    @Option(name: .long, help: "Read the control address and token from this configuration file.")
    var config: String?

    var endpoint: ControlEndpoint { ControlEndpoint(url: control, token: token, configPath: config) }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the endpoints, their health and the overrides of a running server.")

    @OptionGroup var options: ControlOptions

    @Flag(name: .long, help: "Print the raw JSON of GET /status.")
    var json = false

    @Flag(name: .long, help: "List every instance registered in the fleet (name, version, config hash, applied revision, health).")
    var fleet = false

    func run() throws {
        throw ExitCode(Commands.status(options.endpoint, json: json, fleet: fleet))
    }
}

struct Override: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Force an endpoint or datacenter up, down or degraded on a running server.",
        subcommands: [Set.self, Clear.self, List.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set an override: TARGET is endpoint:NAME or dc:NAME; STATE is up, down or degraded:FACTOR.")
        @OptionGroup var options: ControlOptions
        @Argument(help: "endpoint:NAME or dc:NAME") var target: OverrideTargetName
        @Argument(help: "up, down, degraded or degraded:FACTOR") var state: String
        @Option(name: .long, help: "Why (shown in status and logs).") var reason: String
        @Option(name: .long, help: ArgumentHelp("Lapse after this long, e.g. 90s, 10m, 2h, at most 365d (default: until cleared).", valueName: "DURATION"))
        var expires: DurationText?
        @Option(name: .long, help: "Who is setting it (default: USER@HOST of this shell).") var author: String?
        @Flag(name: .long, help: "Set it even when the safety rule refuses it (it would leave a GSLB name with no healthy endpoint).")
        var force = false

        func validate() throws {
            // The server checks the same rules; checking here too gives the error before
            // anything is sent.
            if let problem = OverrideRules.reasonProblem(reason) { throw ValidationError("bad --reason: \(problem)") }
            if let a = author, let problem = OverrideRules.authorProblem(a) { throw ValidationError("bad --author: \(problem)") }
            if let e = expires, let problem = OverrideRules.expiryProblem(e.seconds) {
                throw ValidationError("bad --expires \(e.text): \(problem)")
            }
        }

        func run() throws {
            throw ExitCode(Commands.overrideSet(options.endpoint, target: target, state: state, reason: reason,
                                                expiresIn: expires?.seconds, author: author ?? Commands.defaultAuthor, force: force))
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an override; the checks decide again.")
        @OptionGroup var options: ControlOptions
        @Argument(help: "endpoint:NAME or dc:NAME") var target: OverrideTargetName

        func run() throws {
            throw ExitCode(Commands.overrideClear(options.endpoint, target: target))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the overrides in force.")
        @OptionGroup var options: ControlOptions

        func run() throws {
            throw ExitCode(Commands.overrideList(options.endpoint))
        }
    }
}

// MARK: - Argument types: each text form is parsed once, here, by the library's own parser.

extension DurationText: ExpressibleByArgument {
    /// The config's grammar: `500ms`, `30s`, `5m`, `2h`, `1d`, bare seconds.
    public init?(argument: String) { self.init(argument) }

    public var defaultValueDescription: String { text }

    /// A `ValidationError` naming `option` when the value is outside `range`.
    func check(_ option: String, _ range: ClosedRange<Double>, _ expected: String) throws {
        guard range.contains(seconds) else { throw ValidationError("\(option) \(text): expected \(expected)") }
    }
}

extension OverrideTargetName: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}

extension IPPrefix: ExpressibleByArgument {
    /// A CIDR with no host bits set, as every prefix option requires.
    public init?(argument: String) { self.init(argument, strict: true) }
}

extension IPAddress: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension ListenAddress: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(argument) }
}
