import Foundation

/// One zone file in a folder served the way `meridian serve --zones DIR` serves it:
/// the origin is the file's `$ORIGIN`, else the file name without `.zone`.
public struct ZoneFileEntry: Sendable, Hashable {
    public var origin: String
    public var fileName: String

    public init(origin: String, fileName: String) {
        self.origin = origin
        self.fileName = fileName
    }

    /// Every `*.zone` file in `directory`, sorted by file name.
    public static func scan(_ directory: String) throws -> [ZoneFileEntry] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".zone") }.sorted()
        return try names.map { name in
            let text = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
            var origin = String(name.dropLast(".zone".count))
            for line in text.split(separator: "\n") where line.hasPrefix("$ORIGIN") {
                if let o = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first { origin = String(o) }
                break
            }
            if !origin.hasSuffix(".") { origin += "." }
            return ZoneFileEntry(origin: origin, fileName: name)
        }
    }
}

/// NLnet Labs NSD (Debian's `nsd`) serving a folder of zone files on a loopback port, as the
/// reference for differential tests.
///
/// It writes an `nsd.conf` into a private temporary folder (pid, xfrd state and zone list
/// there too, no chroot, no user switch, no database file, one server process), with
/// response rate limiting off (`rrl-ratelimit: 0`; NSD's default of 200 answers/s per /24
/// would otherwise turn a test corpus into truncated replies), then runs `nsd -d`.
///
///     let nsd = try await NSDServer.start(zonesDirectory: fixtures)
///     let r = try await Dig.query("www.example.com", "A", port: nsd.port)
///     await nsd.stop()
public final class NSDServer: Sendable {
    public let child: ChildProcess
    public let port: UInt16
    public let configPath: String

    private init(child: ChildProcess, port: UInt16, configPath: String) {
        self.child = child
        self.port = port
        self.configPath = configPath
    }

    public static var binary: String? { findExecutable("nsd") }
    public static var isAvailable: Bool { binary != nil }

    /// The `nsd.conf` text for these zones. `extraServerOptions` lines go into the
    /// `server:` clause (for example `minimal-responses: yes`).
    public static func configuration(zonesDirectory: String, zones: [ZoneFileEntry], port: UInt16, stateDirectory: String,
                                     extraServerOptions: [String] = []) -> String {
        var lines = [
            "server:",
            "  ip-address: 127.0.0.1",
            "  port: \(port)",
            "  username: \"\"",
            "  chroot: \"\"",
            "  zonesdir: \"\(zonesDirectory)\"",
            "  pidfile: \"\(stateDirectory)/nsd.pid\"",
            // NSD 4.x: an empty database means zones are read from text files only.
            "  database: \"\"",
            "  xfrdfile: \"\(stateDirectory)/xfrd.state\"",
            "  zonelistfile: \"\(stateDirectory)/zone.list\"",
            "  logfile: \"\(stateDirectory)/nsd.log\"",
            "  server-count: 1",
            "  verbosity: 1",
            "  hide-version: yes",
            "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0",
        ]
        lines += extraServerOptions.map { "  " + $0 }
        lines += ["remote-control:", "  control-enable: no"]
        for z in zones {
            lines += ["zone:", "  name: \"\(z.origin)\"", "  zonefile: \"\(z.fileName)\""]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Starts NSD on a free port (or `port`) for every `*.zone` in `zonesDirectory` and
    /// waits until it answers (bounded by `readyTimeout`).
    public static func start(zonesDirectory: String, port: UInt16? = nil, extraServerOptions: [String] = [],
                             readyTimeout: Duration = .seconds(10)) async throws -> NSDServer {
        // A port taken between `freePort()` and NSD's bind is retried on another, at most three times.
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await startOnce(zonesDirectory: zonesDirectory, port: port ?? freePort(),
                                           extraServerOptions: extraServerOptions, readyTimeout: readyTimeout)
            } catch let ProcessError.launchFailed(_, why) where port == nil && attempt < 3 && why.contains("in use") {
                continue
            }
        }
    }

    private static func startOnce(zonesDirectory: String, port p: UInt16, extraServerOptions: [String],
                                  readyTimeout: Duration) async throws -> NSDServer {
        guard let bin = binary else { throw ProcessError.notFound("nsd (apt-get install nsd, or run scripts/setup)") }
        let zones = try ZoneFileEntry.scan(zonesDirectory)
        let state = try makeTemporaryDirectory(prefix: "meridian-nsd")
        let conf = state.appendingPathComponent("nsd.conf")
        try configuration(zonesDirectory: zonesDirectory, zones: zones, port: p, stateDirectory: state.path,
                          extraServerOptions: extraServerOptions).write(to: conf, atomically: true, encoding: .utf8)
        let child = try ChildProcess(path: bin, arguments: ["-d", "-c", conf.path])
        do {
            try await waitUntilAnswering(host: "127.0.0.1", port: p, child: child, what: "nsd", probeName: zones.first?.origin ?? ".",
                                         timeout: readyTimeout)
        } catch {
            await child.stop(grace: .seconds(2))
            throw ProcessError.launchFailed(bin, "\(error)\nnsd.log:\n\((try? String(contentsOfFile: state.path + "/nsd.log", encoding: .utf8)) ?? "")")
        }
        return NSDServer(child: child, port: p, configPath: conf.path)
    }

    public var logText: String {
        let dir = URL(fileURLWithPath: configPath).deletingLastPathComponent().path
        return child.stderrText + ((try? String(contentsOfFile: dir + "/nsd.log", encoding: .utf8)) ?? "")
    }

    /// SIGTERM and a bounded wait (NSD's main process stops its server children itself).
    public func stop() async {
        await child.stop(grace: .seconds(5))
        try? FileManager.default.removeItem(at: URL(fileURLWithPath: configPath).deletingLastPathComponent())
    }
}
