import Config
import Foundation
import Health

/// The JSON of `GET /status`, also decoded by `meridian status`. Times are seconds since the
/// epoch; durations are seconds.
public struct StatusReport: Codable, Sendable {
    public struct Check: Codable, Sendable {
        public var name: String
        public var target: String
        public var state: String
        public var settled: Bool
        public var lastRun: Double?
        public var lastOK: Bool?
        public var lastReason: String?
        public var lastLatency: Double?
        public var pending: String?
        enum CodingKeys: String, CodingKey {
            case name, target, state, settled, pending
            case lastRun = "last_run", lastOK = "last_ok", lastReason = "last_reason", lastLatency = "last_latency"
        }
    }
    public struct Endpoint: Codable, Sendable {
        public var name: String
        public var datacenter: String?
        /// What queries see (the override's state when there is one).
        public var state: String
        /// What the check says.
        public var checked: String
        /// When `state` began.
        public var since: Double
        public var check: Check?
        public var override: OverrideView?
    }
    public struct Name: Codable, Sendable {
        public var name: String
        public var ttl: UInt32
        public var rto: Double?
        /// Worst-case seconds from an endpoint failing to resolvers no longer getting it, over
        /// the endpoints under the name; nil when none of them is checked.
        public var failoverDown: Double?
        public var failoverUp: Double?
        public var failoverDetail: String?
        public var rtoExceeded: Bool
        public var endpoints: [String]
        enum CodingKeys: String, CodingKey {
            case name, ttl, rto, endpoints
            case failoverDown = "failover_down", failoverUp = "failover_up", failoverDetail = "failover_detail"
            case rtoExceeded = "rto_exceeded"
        }
    }
    public struct Reloads: Codable, Sendable {
        public var ok: UInt64
        public var failed: UInt64
        public var lastSuccess: Double?
        public var lastFailure: Double?
        public var lastErrors: [String]
        enum CodingKeys: String, CodingKey {
            case ok, failed
            case lastSuccess = "last_success", lastFailure = "last_failure", lastErrors = "last_errors"
        }
    }
    public var version: String
    public var config: String?
    public var zonesDirectory: String?
    public var loadedAt: Double
    public var generation: UInt64
    public var startedAt: Double
    public var reloads: Reloads
    public var endpoints: [Endpoint]
    public var names: [Name]
    public var overrides: [OverrideView]

    enum CodingKeys: String, CodingKey {
        case version, config, generation, reloads, endpoints, names, overrides
        case zonesDirectory = "zones_dir", loadedAt = "loaded_at", startedAt = "started_at"
    }

    /// Everything from the live server: the published snapshot, the monitor and the reloads.
    public static func build(_ c: ControlContext) -> StatusReport {
        let s = c.snapshot
        var endpoints: [Endpoint] = []
        var names: [Name] = []
        var overrides: [OverrideView] = []
        if let model = s.model {
            let monitor = c.monitor
            let checks = Dictionary((monitor?.status() ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let eps = monitor?.endpointStatus() ?? []
            for (i, ep) in model.endpoints.enumerated() {
                let st = i < eps.count ? eps[i] : nil
                let cs = st?.check.flatMap { checks[$0] }
                let view = cs.map { cs in
                    Check(name: cs.name, target: cs.target, state: stateText(cs.state), settled: cs.settled,
                          lastRun: cs.lastRun, lastOK: cs.lastResult?.ok, lastReason: cs.lastResult?.reason,
                          lastLatency: cs.lastResult?.latency, pending: cs.pending)
                }
                let since = st?.override?.setAt ?? cs?.since ?? s.loadedAt
                endpoints.append(Endpoint(name: ep.name, datacenter: ep.datacenter.map { model.datacenters[$0].name },
                                          state: stateText(st?.effective ?? s.health.state(i)),
                                          checked: stateText(st?.checked ?? .up), since: since, check: view,
                                          override: st?.override.map { OverrideView($0, model: model) }))
            }
            let byName = Dictionary(model.checks.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for n in model.names {
                let under = model.endpointsUnder[n.root].sorted()
                var worst: FailoverBudget?
                for e in under {
                    guard let spec = model.checkSpec(forEndpoint: e) else { continue }
                    let b = failoverBudget(check: spec, ttl: n.ttl, checks: byName)
                    if worst == nil || b.down > worst!.down { worst = b }
                }
                names.append(Name(name: n.owner.description, ttl: n.ttl, rto: n.rto, failoverDown: worst?.down,
                                  failoverUp: worst?.up, failoverDetail: worst?.description,
                                  rtoExceeded: n.rto.map { rto in (worst?.down ?? Double(n.ttl)) > rto } ?? false,
                                  endpoints: under.map { model.endpoints[$0].name }))
            }
            overrides = (monitor?.overrides() ?? []).map { OverrideView($0, model: model) }
        }
        return StatusReport(
            version: MeridianVersion.string, config: c.sources.configPath, zonesDirectory: c.sources.zonesDirectory,
            loadedAt: s.loadedAt, generation: s.generation, startedAt: c.startedAt,
            reloads: Reloads(ok: c.reloads.ok.load(ordering: .relaxed), failed: c.reloads.failed.load(ordering: .relaxed),
                             lastSuccess: c.reloads.lastSuccess, lastFailure: c.reloads.lastFailure, lastErrors: c.reloads.lastErrors),
            endpoints: endpoints, names: names, overrides: overrides)
    }
}

/// Formats a status report as the table `meridian status` prints.
public enum StatusTable {
    public static func render(_ r: StatusReport, now: Double = Date().timeIntervalSince1970) -> String {
        var out: [String] = []
        let loaded = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: r.loadedAt))
        out.append("meridian \(r.version): config \(r.config ?? "-")\(r.zonesDirectory.map { ", zones \($0)" } ?? ""), generation \(r.generation), loaded \(loaded)")
        var reload = "reloads: \(r.reloads.ok) ok, \(r.reloads.failed) failed"
        if let f = r.reloads.lastFailure, f > (r.reloads.lastSuccess ?? 0) {
            reload += "; LAST RELOAD FAILED: \(r.reloads.lastErrors.first ?? "?")"
        }
        out.append(reload)
        out.append("")
        if r.endpoints.isEmpty {
            out.append("no GSLB endpoints (zone files only)")
        } else {
            var rows = [["ENDPOINT", "DC", "STATE", "CHECKED", "SINCE", "LAST CHECK", "OVERRIDE"]]
            for e in r.endpoints {
                let last: String
                if let c = e.check {
                    let lat = c.lastLatency.map { String(format: " %.0fms", $0 * 1000) } ?? ""
                    last = c.lastOK == nil ? "\(c.name): pending" : "\(c.name): \(c.lastOK == true ? "ok" : "FAIL") \(c.lastReason ?? "")\(lat)"
                } else {
                    last = "-"
                }
                var ov = "-"
                if let o = e.override {
                    ov = "\(o.target) \(o.state) \"\(o.reason)\""
                    if let x = o.expiresAt { ov += " (\(duration(x - now)) left)" }
                }
                rows.append([e.name, e.datacenter ?? "-", e.state.uppercased(), e.checked, duration(now - e.since) + " ago", last, ov])
            }
            out += table(rows)
        }
        if !r.overrides.isEmpty {
            out.append("")
            out.append("overrides:")
            for o in r.overrides {
                let exp = o.expiresAt.map { "expires in \(duration($0 - now))" } ?? "until cleared"
                out.append("  \(o.target) \(o.state), \(exp), reason \"\(o.reason)\" (\(o.endpoints.joined(separator: ", ")))")
            }
        }
        if !r.names.isEmpty {
            out.append("")
            var rows = [["NAME", "TTL", "FAILOVER", "RTO", ""]]
            for n in r.names {
                rows.append([n.name, "\(n.ttl)", n.failoverDown.map { duration($0) } ?? "unchecked",
                             n.rto.map { duration($0) } ?? "-", n.rtoExceeded ? "RTO EXCEEDED" : ""])
            }
            out += table(rows)
        }
        return out.joined(separator: "\n") + "\n"
    }

    static func table(_ rows: [[String]]) -> [String] {
        guard let first = rows.first else { return [] }
        var widths = first.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
    }

    static func duration(_ s: Double) -> String {
        // Clamped before the conversion: a NaN or a huge value must not trap.
        let v = Int(min(max(0, s.isNaN ? 0 : s), 1e12).rounded())
        if v < 120 { return "\(v)s" }
        if v < 7200 { return "\(v / 60)m\(v % 60 == 0 ? "" : "\(v % 60)s")" }
        if v < 172_800 { return "\(v / 3600)h\(v % 3600 / 60 == 0 ? "" : "\(v % 3600 / 60)m")" }
        return "\(v / 86400)d"
    }
}
