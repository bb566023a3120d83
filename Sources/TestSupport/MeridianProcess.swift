import Foundation

/// The real `meridian` binary running as a server on loopback, for black-box tests.
///
/// `start` returns once the server answers a UDP probe and accepts a TCP connection
/// (bounded by `readyTimeout`); if the binary is missing, exits, or never answers, it
/// throws an error that includes the server's log, so a test fails clearly instead of
/// hanging.
///
///     let port = try freePort()
///     let server = try await MeridianProcess.start(["serve", "--zones", dir, "--listen", "127.0.0.1:\(port)"],
///                                                  port: port)
///     defer { Task { await server.stop() } }      // or `await server.stop()` at the end
///     let r = try await Dig.query("www.example.com", .a, port: server.port)
public final class MeridianProcess: Sendable {
    public let child: ChildProcess
    public let host: String
    public let port: UInt16

    /// The `--state-dir` this launcher made for the server (removed by `stop`); nil when the
    /// test passed its own (a restart test keeps it across two servers).
    let ownStateDirectory: String?

    private init(child: ChildProcess, host: String, port: UInt16, ownStateDirectory: String?) {
        self.child = child
        self.host = host
        self.port = port
        self.ownStateDirectory = ownStateDirectory
    }

    /// Starts `meridian` with `arguments` and waits until it answers on `host:port`.
    /// `probeName` is sent as an SOA query; any response counts as ready. A `serve` gets a
    /// `--state-dir` of its own unless it has one or `privateStateDir` is false (a test of
    /// `server.state_dir` itself).
    public static func start(_ arguments: [String], host: String = "127.0.0.1", port: UInt16,
                             probeName: String = "example.com.", readyTimeout: Duration = .seconds(10),
                             privateStateDir: Bool = true) async throws -> MeridianProcess {
        guard let bin = TestPaths.meridianBinary else {
            throw ProcessError.notFound("the meridian binary (set MERIDIAN_BIN, or run `swift build` first)")
        }
        // Every test server saves its overrides in a folder of its own, never in the shared
        // default (/var/lib/meridian), so parallel tests cannot restore each other's overrides.
        var arguments = arguments
        var own: String?
        if privateStateDir && arguments.first == "serve" && !arguments.contains("--state-dir") {
            own = try makeTemporaryDirectory(prefix: "meridian-state").path
            arguments += ["--state-dir", own!]
        }
        let child = try ChildProcess(path: bin, arguments: arguments)
        do {
            try await waitUntilAnswering(host: host, port: port, child: child, what: "meridian \(arguments.joined(separator: " "))",
                                         probeName: probeName, timeout: readyTimeout)
        } catch {
            await child.stop(grace: .seconds(2))
            if let own { try? FileManager.default.removeItem(atPath: own) }
            throw error
        }
        return MeridianProcess(child: child, host: host, port: port, ownStateDirectory: own)
    }

    /// `meridian serve --zones DIR --listen 127.0.0.1:PORT` on a fresh free port, plus any
    /// `extraArguments` (more `--listen`s, for example).
    /// With no `port` given, a start that fails because the port was taken in the meantime
    /// ("in use" in the log) is retried on another port, at most three times.
    public static func serve(zones: String, extraArguments: [String] = [], port: UInt16? = nil) async throws -> MeridianProcess {
        var attempt = 0
        while true {
            attempt += 1
            let p = try port ?? freePort()
            do {
                return try await start(["serve", "--zones", zones, "--listen", "127.0.0.1:\(p)"] + extraArguments, port: p)
            } catch let ProcessError.exitedEarly(_, _, log) where port == nil && attempt < 3 && log.lowercased().contains("in use") {
                continue
            }
        }
    }

    /// Everything the server wrote to stderr and stdout so far (its swift-log output).
    public var logText: String { child.stderrText + child.stdoutText }
    public var isRunning: Bool { child.isRunning }

    /// Sends a signal, for example SIGHUP to reload.
    public func signal(_ sig: Int32) { child.signal(sig) }

    /// SIGTERM, then waits up to `grace` (SIGKILL after). Returns the exit status.
    @discardableResult
    public func stop(grace: Duration = .seconds(5)) async -> Int32 {
        let status = await child.stop(grace: grace)
        if let own = ownStateDirectory { try? FileManager.default.removeItem(atPath: own) }
        return status
    }

    /// Runs a one-shot command such as `meridian check --zones DIR`, bounded by `timeout`.
    /// `check` and `serve` get a private `--state-dir` as `start` gives one (so their result
    /// does not depend on whether the default /var/lib/meridian can be created), unless they
    /// have one or `privateStateDir` is false.
    public static func run(_ arguments: [String], timeout: Duration = .seconds(30),
                           privateStateDir: Bool = true) async throws -> CommandOutput {
        guard let bin = TestPaths.meridianBinary else {
            throw ProcessError.notFound("the meridian binary (set MERIDIAN_BIN, or run `swift build` first)")
        }
        var arguments = arguments
        var own: String?
        if privateStateDir && ["check", "serve"].contains(arguments.first ?? "") && !arguments.contains("--state-dir") {
            own = try makeTemporaryDirectory(prefix: "meridian-state").path
            arguments += ["--state-dir", own!]
        }
        defer { if let own { try? FileManager.default.removeItem(atPath: own) } }
        return try await runCommand(bin, arguments, timeout: timeout)
    }
}
