import ArgumentParser
import Logging
import Server

// Signals must be blocked before any thread exists, so every thread inherits the mask
// and SIGHUP/SIGTERM reach only the thread that sigwaits for them.
Signals.blockAll()
Meridian.main()

struct Meridian: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "An authoritative DNS server for global server load balancing.",
        version: MeridianVersion.string,
        subcommands: [Serve.self, Check.self, Explain.self, Status.self, Override.self],
        defaultSubcommand: nil
    )
}

/// Where the configuration comes from; shared by every command.
struct SourceOptions: ParsableArguments {
    @Option(name: .long, help: "The YAML configuration file (zones, policies, checks).")
    var config: String?

    @Option(name: .long, help: "Serve every *.zone file in this folder (origin from the file name or $ORIGIN).")
    var zones: String?

    func validate() throws {
        if config == nil && zones == nil {
            throw ValidationError("give --config FILE or --zones DIR (or both)")
        }
    }

    var sources: ConfigSources { ConfigSources(configPath: config, zonesDirectory: zones) }
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

    func validate() throws {
        if let w = workers, w < 1 || w > 256 { throw ValidationError("--workers must be between 1 and 256") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() throws {
        let code = Runtime.serve(sources: source.sources, listen: listen, workers: workers,
                                 logLevel: Logger.Level(rawValue: logLevel) ?? .info, control: control)
        throw ExitCode(code)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration and zone files; print every error with file:line:column.")

    @OptionGroup var source: SourceOptions

    func run() throws {
        throw ExitCode(Runtime.check(sources: source.sources))
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

    @Option(name: .long, help: "The client's address (the resolver's source address).")
    var client: String

    @Option(name: .long, help: "An EDNS Client Subnet the resolver sends, as CIDR.")
    var ecs: String?

    @Option(name: .long, help: "Treat this endpoint as down; repeat for more.")
    var down: [String] = []

    func run() throws {
        throw ExitCode(Runtime.explain(sources: source.sources, name: name, type: type, client: client, ecs: ecs, down: down))
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
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the endpoints, their health and the overrides of a running server.")

    @OptionGroup var options: ControlOptions

    @Flag(name: .long, help: "Print the raw JSON of GET /status.")
    var json = false

    func run() throws {
        throw ExitCode(Runtime.status(url: options.control, token: options.token, configPath: options.config, json: json))
    }
}

struct Override: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Force an endpoint or datacenter up, down or degraded on a running server.",
        subcommands: [Set.self, Clear.self, List.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set an override: TARGET is endpoint:NAME or dc:NAME; STATE is up, down or degraded:FACTOR.")
        @OptionGroup var options: ControlOptions
        @Argument(help: "endpoint:NAME or dc:NAME") var target: String
        @Argument(help: "up, down, degraded or degraded:FACTOR") var state: String
        @Option(name: .long, help: "Why (shown in status and logs).") var reason: String
        @Option(name: .long, help: "Lapse after this long, e.g. 90s, 10m, 2h (default: until cleared).") var expires: String?

        func run() throws {
            throw ExitCode(Runtime.override(action: "set", target: target, state: state, reason: reason, expires: expires,
                                            url: options.control, token: options.token, configPath: options.config))
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an override; the checks decide again.")
        @OptionGroup var options: ControlOptions
        @Argument(help: "endpoint:NAME or dc:NAME") var target: String

        func run() throws {
            throw ExitCode(Runtime.override(action: "clear", target: target, state: nil, reason: nil, expires: nil,
                                            url: options.control, token: options.token, configPath: options.config))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the overrides in force.")
        @OptionGroup var options: ControlOptions

        func run() throws {
            throw ExitCode(Runtime.override(action: "list", target: nil, state: nil, reason: nil, expires: nil,
                                            url: options.control, token: options.token, configPath: options.config))
        }
    }
}
