import Foundation

/// A TSIG key as NSD, Knot, kdig and Meridian's `transfers.keys` write it.
public struct TestTSIGKey: Sendable {
    public var name: String
    public var algorithm: String
    /// Base64.
    public var secret: String
    public init(name: String, algorithm: String = "hmac-sha256", secret: String) {
        self.name = name; self.algorithm = algorithm; self.secret = secret
    }
    /// `kdig -y` form.
    public var kdigArgument: String { "\(algorithm):\(name):\(secret)" }
    /// The block BIND's `tsig-keygen` prints.
    public var bindKeyFile: String { "key \"\(name)\" {\n\talgorithm \(algorithm);\n\tsecret \"\(secret)\";\n};\n" }
}

/// A real DNS server started as a secondary of a primary on loopback (NSD or Knot), with
/// its own private state folder, for the zone transfer tests.
///
///     let nsd = try await SecondaryServer.nsd(zones: ["example.com."], primaryPort: p, key: key)
///     defer { Task { await nsd.stop() } }
public final class SecondaryServer: Sendable {
    public let child: ChildProcess
    public let port: UInt16
    public let state: String
    public let name: String

    private init(child: ChildProcess, port: UInt16, state: String, name: String) {
        self.child = child; self.port = port; self.state = state; self.name = name
    }

    public static var knotBinary: String? { findExecutable("knotd") }
    public static var kdigBinary: String? { findExecutable("kdig") }

    /// NSD as a secondary: `request-xfr` from 127.0.0.1@primaryPort (AXFR only when
    /// `axfrOnly`; otherwise IXFR over TCP first), NOTIFY accepted from 127.0.0.1, all signed
    /// with `key` when given; it offers the zone back over AXFR to 127.0.0.1 unsigned.
    public static func nsd(zones: [String], primaryPort: UInt16, key: TestTSIGKey?, axfrOnly: Bool = false,
                           port chosen: UInt16? = nil) async throws -> SecondaryServer {
        guard let bin = NSDServer.binary else { throw ProcessError.notFound("nsd (apt-get install nsd, or run scripts/setup)") }
        let state = try makeTemporaryDirectory(prefix: "meridian-nsd2").path
        let port = try chosen ?? freePort()
        var lines = [
            "server:", "  ip-address: 127.0.0.1", "  port: \(port)", "  username: \"\"", "  chroot: \"\"",
            "  zonesdir: \"\(state)\"", "  pidfile: \"\(state)/nsd.pid\"", "  database: \"\"",
            "  xfrdfile: \"\(state)/xfrd.state\"", "  zonelistfile: \"\(state)/zone.list\"", "  logfile: \"\(state)/nsd.log\"",
            "  server-count: 1", "  verbosity: 2", "  rrl-ratelimit: 0", "  xfrd-reload-timeout: 0",
            "remote-control:", "  control-enable: no",
        ]
        let keyName = key?.name ?? "NOKEY"
        if let key { lines += ["key:", "  name: \"\(key.name)\"", "  algorithm: \(key.algorithm)", "  secret: \"\(key.secret)\""] }
        for z in zones {
            lines += ["zone:", "  name: \"\(z)\"", "  zonefile: \"\(z)zone\"",
                      "  request-xfr: \(axfrOnly ? "AXFR " : "")127.0.0.1@\(primaryPort) \(keyName)",
                      "  allow-notify: 127.0.0.1 \(keyName)", "  provide-xfr: 127.0.0.1 NOKEY"]
        }
        let conf = state + "/nsd.conf"
        try (lines.joined(separator: "\n") + "\n").write(toFile: conf, atomically: true, encoding: .utf8)
        let child = try ChildProcess(path: bin, arguments: ["-d", "-c", conf])
        let s = SecondaryServer(child: child, port: port, state: state, name: "nsd")
        try await s.waitReady(probe: zones.first ?? ".")
        return s
    }

    /// Knot DNS as a secondary of 127.0.0.1@primaryPort, NOTIFY accepted from it, signed
    /// with `key` when given; it offers the zone back over AXFR to 127.0.0.1 unsigned.
    /// With `catalog`, `zones` are catalog zones (RFC 9432) Knot interprets: every member
    /// they list becomes a secondary zone of the same primary.
    public static func knot(zones: [String], primaryPort: UInt16, key: TestTSIGKey?, port chosen: UInt16? = nil,
                            catalog: Bool = false) async throws -> SecondaryServer {
        guard let bin = knotBinary else { throw ProcessError.notFound("knotd (apt-get install knot, or run scripts/setup)") }
        let state = try makeTemporaryDirectory(prefix: "meridian-knot").path
        let port = try chosen ?? freePort()
        var lines = [
            "server:", "    rundir: \"\(state)\"", "    listen: 127.0.0.1@\(port)",
            "database:", "    storage: \"\(state)\"",
            "log:", "  - target: stderr", "    any: info",
        ]
        if let key { lines += ["key:", "  - id: \(key.name)", "    algorithm: \(key.algorithm)", "    secret: \(key.secret)"] }
        lines += ["remote:", "  - id: primary", "    address: 127.0.0.1@\(primaryPort)"] + (key.map { ["    key: \($0.name)"] } ?? [])
        lines += ["acl:", "  - id: notify", "    address: 127.0.0.1", "    action: notify"] + (key.map { ["    key: \($0.name)"] } ?? [])
        lines += ["  - id: xfrout", "    address: 127.0.0.1", "    action: transfer"]
        lines += ["template:", "  - id: default", "    storage: \"\(state)\"", "    zonefile-sync: -1",
                  "    journal-content: none", "    semantic-checks: off"]
        if catalog {
            lines += ["  - id: member", "    storage: \"\(state)\"", "    zonefile-sync: -1", "    journal-content: none",
                      "    master: primary", "    acl: [notify, xfrout]"]
        }
        lines += ["zone:"]
        for z in zones {
            lines += ["  - domain: \(z)", "    master: primary", "    acl: [notify, xfrout]"]
            if catalog { lines += ["    catalog-role: interpret", "    catalog-template: member"] }
        }
        let conf = state + "/knot.conf"
        try (lines.joined(separator: "\n") + "\n").write(toFile: conf, atomically: true, encoding: .utf8)
        let child = try ChildProcess(path: bin, arguments: ["-c", conf])
        let s = SecondaryServer(child: child, port: port, state: state, name: "knot")
        try await s.waitReady(probe: zones.first ?? ".")
        return s
    }

    private func waitReady(probe: String) async throws {
        do {
            try await waitUntilAnswering(host: "127.0.0.1", port: port, child: child, what: name, probeName: probe, timeout: .seconds(10))
        } catch {
            await stop()
            throw ProcessError.launchFailed(name, "\(error)\n\(logText)")
        }
    }

    public var logText: String {
        child.stderrText + child.stdoutText + ((try? String(contentsOfFile: state + "/nsd.log", encoding: .utf8)) ?? "")
    }

    public func stop() async {
        await child.stop(grace: .seconds(5))
        try? FileManager.default.removeItem(atPath: state)
    }
}

/// Knot's `kdig`, for TSIG-signed transfers (`-y ALG:NAME:SECRET`).
public enum KDig {
    public static func run(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> CommandOutput {
        guard let path = SecondaryServer.kdigBinary else { throw ProcessError.notFound("kdig (apt-get install knot-dnsutils)") }
        return try await runCommand(path, arguments, timeout: timeout)
    }

    /// The records of an AXFR (or IXFR) as `owner ttl class type rdata` lines, and the
    /// status kdig printed (`NOERROR`, `REFUSED`, ...; nil when it printed none).
    /// `wait`: kdig's `+time`, the seconds it waits for the server to send.
    public static func transfer(_ zone: String, type: String = "AXFR", port: UInt16, key: TestTSIGKey? = nil,
                                wait: Int = 5, extra: [String] = []) async throws -> (records: [DigRecord], status: String?, output: CommandOutput) {
        var args = ["@127.0.0.1", "-p", "\(port)", zone, type, "+nocrypto", "+time=\(wait)", "+retry=0"] + extra
        if let key { args = ["-y", key.kdigArgument] + args }
        let out = try await run(args)
        var records: [DigRecord] = []
        var status: String?
        for line in out.stdout.split(separator: "\n") {
            if line.hasPrefix(";") {
                if let r = line.range(of: "status: ") {
                    status = String(line[r.upperBound...].prefix { $0.isLetter })
                } else if line.contains("Transfer failed") || line.contains("failed") {
                    status = status ?? "FAILED"
                }
                continue
            }
            if let r = DigRecord(line: line), r.type != "TSIG" { records.append(r) }
        }
        return (records, status, out)
    }
}
