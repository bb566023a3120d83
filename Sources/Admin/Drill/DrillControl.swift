import Foundation
import Server

/// The control API calls a drill makes, over `ControlClient`, with failures as `DrillError`
/// (so they land in the report) and override targets normalised for comparison.
///
///     let c = try DrillControl(url: "http://127.0.0.1:8053", token: nil)
///     try c.setOverride(target: "dc:ams", state: "down", reason: "drill", expiresIn: 90)
public struct DrillControl: Sendable {
    public let client: ControlClient

    /// Accepts `http://HOST:PORT[/]` or `HOST:PORT`, HOST an IP literal or `localhost`.
    public init(url: String, token: String?, timeout: Double = 5) throws(DrillError) {
        do { client = try ControlClient(url: url, token: token, timeout: timeout) } catch {
            throw DrillError(.usage, "--control: \(error.message)")
        }
    }

    public init(client: ControlClient) { self.client = client }

    public var url: String { "http://\(client.address)" }

    public func setOverride(target: String, state: String, reason: String, expiresIn: Double?) throws(DrillError) {
        do { _ = try client.setOverride(target: target, state: state, reason: reason, expiresIn: expiresIn.map { $0.rounded(.up) }) } catch {
            throw DrillError(.failed, error.message)
        }
    }

    /// true when an override was removed, false when there was none (it expired already).
    @discardableResult
    public func clearOverride(target: String) throws(DrillError) -> Bool {
        do { return try client.clearOverride(target: target) } catch { throw DrillError(.failed, error.message) }
    }

    /// Targets of the overrides in force, as `dc:NAME` / `endpoint:NAME`.
    public func overrideTargets() throws(DrillError) -> [String] {
        do { return try client.overrides().map { DrillControl.normalizeTarget($0.target) } } catch {
            throw DrillError(.failed, error.message)
        }
    }

    /// `datacenter ams`, `datacenter:ams`, `dc:ams` -> `dc:ams`; the same for endpoints.
    public static func normalizeTarget(_ t: String) -> String {
        let s = t.replacingOccurrences(of: " ", with: ":")
        guard let colon = s.firstIndex(of: ":") else { return s }
        let kind = s[..<colon].lowercased(), rest = s[s.index(after: colon)...]
        switch kind {
        case "dc", "datacenter": return "dc:\(rest)"
        case "ep", "endpoint": return "endpoint:\(rest)"
        default: return s
        }
    }
}
