import Config
import Foundation
import Server

/// Formats a status report as the table `meridian status` prints.
public enum StatusTable {
    /// `meridian status --fleet`: one row per registered instance; a config hash that differs
    /// from the most common one is marked DRIFT. (APPLIED is the store's revision when the
    /// instance last read the overrides; instances' records move it too, so equal override
    /// sets can show different numbers: `override set` compares them with its own revision.)
    public static func renderFleet(_ f: FleetStatus) -> String {
        var out = ["fleet: \(f.state) as \(f.name), prefix \(f.prefix), applied revision \(f.appliedRevision)"]
        guard let list = f.instances else {
            out.append("instances: unknown while disconnected\(f.lastError.map { " (\($0))" } ?? "")")
            return out.joined(separator: "\n") + "\n"
        }
        let usual = f.usualConfigHash
        var rows = [["INSTANCE", "VERSION", "CONFIG", "APPLIED", "ENDPOINTS", "OVERRIDES", "NOTE"]]
        for i in list {
            var notes: [String] = []
            if i.configHash != usual { notes.append("DRIFT") }
            rows.append([i.name, i.version, i.configHash, String(i.appliedRevision), "\(i.endpointsUsable)/\(i.endpoints) usable",
                         String(i.overrides), notes.isEmpty ? "-" : notes.joined(separator: ",")])
        }
        return (out + table(rows)).joined(separator: "\n") + "\n"
    }

    public static func render(_ r: StatusReport, now: Double = Date().timeIntervalSince1970) -> String {
        var out: [String] = []
        let loaded = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: r.loadedAt))
        out.append("meridian \(r.version): config \(r.config ?? "-")\(r.zonesDirectory.map { ", zones \($0)" } ?? ""), generation \(r.generation), loaded \(loaded)")
        var reload = "reloads: \(r.reloads.ok) ok, \(r.reloads.failed) failed"
        if let f = r.reloads.lastFailure, f > (r.reloads.lastSuccess ?? 0) {
            reload += "; LAST RELOAD FAILED: \(r.reloads.lastErrors.first ?? "?")"
        }
        out.append(reload)
        if let f = r.fleet {
            out.append("fleet: \(f.state) as \(f.name), applied revision \(f.appliedRevision)\(f.lastError.map { f.state == "connected" ? "" : " (\($0))" } ?? "")")
        }
        if let q = r.quorum {
            let since = DurationText.format(now - q.since, style: .compact)
            out.append(q.mode == "fleet"
                ? "quorum: deciding with the fleet, \(q.vantages.count) live vantage(s): \(q.vantages.joined(separator: ", "))"
                : "quorum: OWN VIEW for \(since)\(q.reason.map { ": \($0)" } ?? "")")
        }
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
                    if let x = o.expiresAt { ov += " (\(DurationText.format(x - now, style: .compact)) left)" }
                }
                rows.append([e.name, e.datacenter ?? "-", e.state.uppercased(), e.checked, DurationText.format(now - e.since, style: .compact) + " ago", last, ov])
            }
            out += table(rows)
        }
        if let q = r.quorum, !q.checks.isEmpty {
            out.append("")
            out += vantageTable(q)
        }
        if !r.overrides.isEmpty {
            out.append("")
            out.append("overrides:")
            for o in r.overrides {
                let exp = o.expiresAt.map { "expires in \(DurationText.format($0 - now, style: .compact))" } ?? "until cleared"
                out.append("  \(o.target) \(o.state), \(exp), reason \"\(o.reason)\"\(o.author.map { " by \($0)" } ?? "") (\(o.endpoints.joined(separator: ", ")))")
            }
        }
        if let m = r.minimums, !m.isEmpty {
            out.append("")
            out.append("min_healthy:")
            for x in m { out.append("  " + x.summary) }
        }
        if !r.names.isEmpty {
            out.append("")
            var rows = [["NAME", "TTL", "FAILOVER", "RTO", ""]]
            for n in r.names {
                rows.append([n.name, "\(n.ttl)", n.failoverDown.map { DurationText.format($0, style: .compact) } ?? "unchecked",
                             n.rto.map { DurationText.format($0, style: .compact) } ?? "-", n.rtoExceeded ? "RTO EXCEEDED" : ""])
            }
            out += table(rows)
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// Who sees what: per check (and so per endpoint), the decided state, this instance's
    /// own and each live vantage's, with the quorum it needs.
    static func vantageTable(_ q: QuorumStatus) -> [String] {
        let names = q.vantages
        var rows = [["CHECK", "ENDPOINTS", "QUORUM", "DECIDED", "OWN"] + names]
        for c in q.checks {
            let down = c.vantages.values.filter { $0 == "down" }.count
            rows.append([c.check, c.endpoints.isEmpty ? "-" : c.endpoints.joined(separator: ","),
                         "\(c.quorum): \(down) of \(c.vantages.count) down, need \(c.required)", c.decided.uppercased(), c.own]
                        + names.map { c.vantages[$0] ?? "-" })
        }
        return table(rows)
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
}
