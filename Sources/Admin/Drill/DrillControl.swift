import Foundation
import Health
import Server

/// The control API calls a drill makes, over `ControlClient`, with failures as `DrillError`
/// (so they land in the report).
///
///     let c = try DrillControl(url: "http://127.0.0.1:8053", token: nil)
///     try c.setOverride(target: OverrideTargetName(kind: .datacenter, name: "ams"), state: "down", reason: "drill", expiresIn: 90)
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

    public func setOverride(target: OverrideTargetName, state: String, reason: String, expiresIn: Double?) throws(DrillError) {
        do { _ = try client.setOverride(target: target, state: state, reason: reason, expiresIn: expiresIn.map { $0.rounded(.up) }) } catch {
            throw DrillError(.failed, error.message)
        }
    }

    /// true when an override was removed, false when there was none (it expired already).
    @discardableResult
    public func clearOverride(target: OverrideTargetName) throws(DrillError) -> Bool {
        do { return try client.clearOverride(target: target).0 } catch { throw DrillError(.failed, error.message) }
    }

    /// Targets of the overrides in force (the server writes them in the canonical form).
    public func overrideTargets() throws(DrillError) -> [OverrideTargetName] {
        do { return try client.overrides().compactMap { OverrideTargetName(parsing: $0.target) } } catch {
            throw DrillError(.failed, error.message)
        }
    }

    public func startProbeDrill(datacenter: String, expiresIn: Double) throws(DrillError) -> ProbeDrillStatus {
        do { return try client.startProbeDrill(datacenter: datacenter, expiresIn: expiresIn) } catch { throw DrillError(.failed, error.message) }
    }

    @discardableResult
    public func stopProbeDrill() throws(DrillError) -> ProbeDrillStatus? {
        do { return try client.stopProbeDrill() } catch { throw DrillError(.failed, error.message) }
    }

    public func probeDrill() throws(DrillError) -> ProbeDrillStatus? {
        do { return try client.probeDrill() } catch { throw DrillError(.failed, error.message) }
    }
}
