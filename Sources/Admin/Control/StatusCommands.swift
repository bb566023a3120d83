import Config
import Foundation
import Health
import Server

/// Where the CLI finds a running server's control API, as given on the command line.
///
///     let c = try ControlEndpoint(url: nil, token: nil, configPath: "meridian.yaml").client()
public struct ControlEndpoint: Sendable {
    public var url: String?
    public var token: String?
    public var configPath: String?
    public init(url: String?, token: String?, configPath: String?) {
        self.url = url; self.token = token; self.configPath = configPath
    }


    /// Where the CLI finds the control API: `--control`, else `server.control` of `--config`,
    /// else 127.0.0.1:8053; the token from `--token`, `MERIDIAN_CONTROL_TOKEN`, or the config (`control_token`, then
    /// `control_token_file`).
    public func client(replyTimeout: Double? = nil) throws(ControlConfigError) -> ControlClient {
        var u = url, t = token ?? ProcessInfo.processInfo.environment["MERIDIAN_CONTROL_TOKEN"]
        if let path = configPath, u == nil || t == nil {
            let m: ConfigModel
            do { m = try ConfigLoader.load(path: path) } catch {
                throw ControlConfigError(message: "\(path): \(error.errors.map(\.description).joined(separator: "; "))")
            }
            if u == nil { u = m.server.control }
            if t == nil {
                // The same checks as the server's (a FIFO would block, an unreadable file would
                // end in a puzzling 401).
                if let token = m.server.controlToken { t = token } else if let f = m.server.controlTokenFile {
                    t = try ControlTokenFile.read(f, logger: nil)
                }
            }
        }
        return try ControlClient(url: u ?? "127.0.0.1:8053", token: t, replyTimeout: replyTimeout)
    }

}

extension Commands {
    /// `meridian status`: the table (or the JSON) of a running server.
    public static func status(_ endpoint: ControlEndpoint, json: Bool, fleet: Bool = false) -> Int32 {
        do {
            let c = try endpoint.client()
            if fleet {
                guard let f = try c.status().fleet else {
                    printErr("meridian status: this server is not in a fleet (no fleet: in its configuration)")
                    return 1
                }
                print(StatusTable.renderFleet(f), terminator: "")
                return 0
            }
            if json {
                print(String(decoding: try c.expectOK("GET", "/status"), as: UTF8.self), terminator: "")
            } else {
                print(StatusTable.render(try c.status()), terminator: "")
            }
            return 0
        } catch {
            printErr("meridian status: \(error)")
            return 1
        }
    }

    /// `meridian override set`: `reason` and `expiresIn` already meet `OverrideRules` (the CLI
    /// checks them before anything is sent; the server checks them again).
    public static func overrideSet(_ endpoint: ControlEndpoint, target: OverrideTargetName, state: String, reason: String,
                                   expiresIn: Double?, author: String? = nil, force: Bool = false) -> Int32 {
        overrideCommand { () throws(ControlConfigError) -> Int32 in
            let o = try endpoint.client(replyTimeout: Commands.fleetReplyTimeout).setOverride(target: target, state: state, reason: reason, expiresIn: expiresIn,
                                                      author: author, force: force)
            print("override \(o.target) \(o.state)\(until(o)) (\(o.endpoints.joined(separator: ", "))): \(o.reason)")
            return o.fleet.map(reportAck) ?? 0
        }
    }

    /// How long `override set`/`clear` wait for the reply: in fleet mode the server answers
    /// only after every instance acknowledged or `fleet.ack_timeout` (at most 5 min) passed,
    /// plus its etcd requests (2 s each).
    public static let fleetReplyTimeout: Double = 330

    /// Prints who applied a fleet change; 3 when a live instance did not in time.
    static func reportAck(_ a: FleetAck) -> Int32 {
        print("fleet: etcd revision \(a.revision), acknowledged by \(a.acknowledged.count) instance(s): \(a.acknowledged.joined(separator: ", "))")
        guard a.laggards.isEmpty else {
            printErr("meridian override: not acknowledged in time by: \(a.laggards.joined(separator: ", ")) (they apply it when they catch up; see meridian status --fleet)")
            return 3
        }
        return 0
    }

    /// Who runs this command, as `override set` records it: `USER@HOST` (`$USER`, else the
    /// login name of the uid), cut to what the server accepts.
    public static var defaultAuthor: String {
        let env = ProcessInfo.processInfo.environment
        let user = env["USER"].flatMap { $0.isEmpty ? nil : $0 } ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid\(getuid())"
        let text = "\(user)@\(ProcessInfo.processInfo.hostName)"
        return OverrideRules.authorProblem(text) == nil ? text : "uid\(getuid())"
    }

    /// `meridian override clear`: 1 when there was no such override.
    public static func overrideClear(_ endpoint: ControlEndpoint, target: OverrideTargetName) -> Int32 {
        overrideCommand { () throws(ControlConfigError) -> Int32 in
            let (cleared, ack) = try endpoint.client(replyTimeout: Commands.fleetReplyTimeout).clearOverride(target: target)
            if cleared {
                print("override \(target) cleared")
                return ack.map(reportAck) ?? 0
            }
            printErr("no override on \(target)")
            return 1
        }
    }

    /// `meridian override list`.
    public static func overrideList(_ endpoint: ControlEndpoint) -> Int32 {
        overrideCommand { () throws(ControlConfigError) -> Int32 in
            let list = try endpoint.client().overrides()
            if list.isEmpty { print("no overrides") }
            for o in list {
                print("\(o.target) \(o.state)\(until(o)) (\(o.endpoints.joined(separator: ", "))): \(o.reason)\(o.author.map { " [by \($0)]" } ?? "")")
            }
            return 0
        }
    }

    static func until(_ o: OverrideView) -> String {
        o.expiresAt.map { " until \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)))" } ?? " until cleared"
    }

    static func overrideCommand(_ body: () throws(ControlConfigError) -> Int32) -> Int32 {
        do { return try body() } catch {
            printErr("meridian override: \(error)")
            return 1
        }
    }
}
