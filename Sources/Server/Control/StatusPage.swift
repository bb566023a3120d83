import Config
import Foundation

/// `GET /` of the control API: one self-contained HTML page (no script, style inline, no
/// external asset) for an operator who would rather look than read JSON. It shows the
/// datacenters with their endpoints' health and the answers given since the last reload,
/// every endpoint with its check and override, the overrides with reason and expiry, the
/// GSLB names with their failover budget, and a health drill in progress. It reloads itself
/// every 5 seconds. Rows carry `id` and `data-state` attributes for scripts and tests.
enum StatusPage {
    static let refreshSeconds = 5

    static func render(_ c: ControlContext) -> String {
        let r = StatusReport.build(c)
        let model = c.snapshot.model
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="refresh" content="\(refreshSeconds)">
            <title>Meridian status</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
            table { border-collapse: collapse; margin-bottom: 1.5em; }
            th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
            th { background: #f4f4f4; }
            .up { color: #176f2c; } .down { color: #b00020; font-weight: bold; } .degraded { color: #a05a00; }
            .muted { color: #777; }
            </style></head><body>
            <h1>Meridian \(esc(r.version))</h1>
            <p class="muted" id="summary">configuration \(esc(r.config ?? "-")), generation \(r.generation), loaded \(time(r.loadedAt)); \
            reloads ok \(r.reloads.ok), failed \(r.reloads.failed); page generated \(time(Date().timeIntervalSince1970)), refreshed every \(refreshSeconds) s</p>

            """
        if let model {
            h += datacenters(r, model: model, totals: MetricsRenderer.decisionTotals(c.metrics.allBlocks, model: model))
            c.decisions.sample(metrics: c.metrics, model: model)
            h += decisionsPerMinute(c.decisions.minutes(), datacenters: model.datacenters.map(\.name))
        }
        if let f = r.fleet { h += fleet(f) }
        h += "<h2>Endpoints</h2>\n<table id=\"endpoints\"><tr><th>endpoint</th><th>datacenter</th><th>state</th><th>checked</th><th>since</th><th>check</th><th>last result</th><th>override</th></tr>\n"
        for e in r.endpoints {
            let cls = stateClass(e.state)
            let last = e.check.map { ch in (ch.lastOK.map { $0 ? "ok" : "failed" } ?? "-") + (ch.lastReason.map { ": " + $0 } ?? "") } ?? "-"
            h += "<tr id=\"endpoint-\(esc(e.name))\" data-state=\"\(esc(e.state))\"><td>\(esc(e.name))</td><td>\(esc(e.datacenter ?? "-"))</td>"
            h += "<td class=\"\(cls)\">\(esc(e.state))</td><td>\(esc(e.checked))</td><td>\(time(e.since))</td><td>\(esc(e.check?.name ?? "-"))</td>"
            h += "<td>\(esc(last))</td><td>\(esc(e.override.map { "\($0.state): \($0.reason)" } ?? "-"))</td></tr>\n"
        }
        h += "</table>\n<h2>Overrides</h2>\n"
        if r.overrides.isEmpty {
            h += "<p id=\"overrides\" class=\"muted\">none</p>\n"
        } else {
            h += "<table id=\"overrides\"><tr><th>target</th><th>state</th><th>reason</th><th>set</th><th>expires</th><th>endpoints</th></tr>\n"
            for o in r.overrides {
                h += "<tr id=\"override-\(esc(o.target))\" data-state=\"\(esc(o.state))\"><td>\(esc(o.target))</td><td class=\"\(stateClass(o.state))\">\(esc(o.state))</td>"
                h += "<td>\(esc(o.reason))</td><td>\(time(o.setAt))</td><td>\(o.expiresAt.map(time) ?? "until cleared")</td><td>\(esc(o.endpoints.joined(separator: ", ")))</td></tr>\n"
            }
            h += "</table>\n"
        }
        let hour = Date().timeIntervalSince1970 - 3600
        let changes = c.monitor?.changes(since: hour) ?? []
        h += "<h2>Changes in the last hour</h2>\n"
        if changes.isEmpty {
            h += "<p id=\"changes\" class=\"muted\">none since \(time(max(hour, r.loadedAt)))</p>\n"
        } else {
            h += "<table id=\"changes\"><tr><th>time</th><th>what</th><th>change</th><th>reason</th></tr>\n"
            for ch in changes.reversed() {
                let change = ch.from.isEmpty ? ch.to : "\(ch.from) -> \(ch.to)"
                h += "<tr class=\"change\"><td>\(time(ch.at))</td><td>\(esc(ch.subject))</td><td class=\"\(stateClass(ch.to))\">\(esc(change))</td><td>\(esc(ch.reason))</td></tr>\n"
            }
            h += "</table>\n"
        }
        if let d = c.monitor?.probeDrill(), d.active {
            h += "<h2>Health drill</h2>\n<p id=\"drill\" class=\"down\">probes of \(esc(d.datacenter)) answered as failed since \(time(d.startedAt)) (checks \(esc(d.checks.map(\.check).joined(separator: ", "))))</p>\n"
        }
        h += "<h2>GSLB names</h2>\n<table id=\"names\"><tr><th>name</th><th>TTL</th><th>rto</th><th>failover budget (down)</th><th>endpoints</th></tr>\n"
        for n in r.names {
            let budget = n.failoverDown.map { DurationText.format($0) } ?? "no check"
            h += "<tr id=\"name-\(esc(n.name))\"><td>\(esc(n.name))</td><td>\(n.ttl)s</td><td>\(n.rto.map { DurationText.format($0) } ?? "-")</td>"
            h += "<td class=\"\(n.rtoExceeded ? "down" : "")\">\(esc(budget))</td><td>\(esc(n.endpoints.joined(separator: ", ")))</td></tr>\n"
        }
        h += "</table>\n</body></html>\n"
        return h
    }

    /// One row per datacenter: endpoints up of all, and the GSLB answers that pointed into it
    /// since the last reload (summed over names).
    static func datacenters(_ r: StatusReport, model: ConfigModel, totals: [UInt64]) -> String {
        let sums = DecisionHistory.perDatacenter(totals, model: model)
        var h = "<h2>Datacenters</h2>\n<table id=\"datacenters\"><tr><th>datacenter</th><th>endpoints up</th><th>answers since reload</th></tr>\n"
        for (i, dc) in model.datacenters.enumerated() {
            let eps = r.endpoints.filter { $0.datacenter == dc.name }
            let up = eps.filter { $0.state != "down" }.count
            let answers = sums[i]
            let state = eps.isEmpty ? "up" : (up == 0 ? "down" : (up < eps.count ? "degraded" : "up"))
            h += "<tr id=\"dc-\(esc(dc.name))\" data-state=\"\(state)\"><td>\(esc(dc.name))</td><td class=\"\(state)\">\(up) of \(eps.count)</td><td>\(answers)</td></tr>\n"
        }
        return h + "</table>\n"
    }

    /// The last minutes' GSLB answers per datacenter, one column per minute (oldest first).
    static func decisionsPerMinute(_ minutes: [DecisionHistory.Minute], datacenters: [String]) -> String {
        let clock: (Int) -> String = { m in
            let t = m * 60 % 86400
            return String(format: "%02d:%02d", t / 3600, t / 60 % 60)
        }
        var h = "<h2>Answers per datacenter, last \(minutes.count) minutes (UTC)</h2>\n<table id=\"decisions\"><tr><th>datacenter</th>"
        for m in minutes { h += "<th>\(clock(m.minute))</th>" }
        h += "</tr>\n"
        for dc in datacenters {
            h += "<tr id=\"decisions-\(esc(dc))\"><td>\(esc(dc))</td>"
            for (i, m) in minutes.enumerated() {
                let v = m.counts[dc] ?? 0
                h += "<td\(i == minutes.count - 1 ? " class=\"current\"" : "")>\(v)</td>"
            }
            h += "</tr>\n"
        }
        return h + "</table>\n"
    }

    /// Fleet mode: this instance's link to etcd and every registered instance.
    static func fleet(_ f: FleetStatus) -> String {
        let cls = f.state == "connected" ? "up" : "down"
        var h = "<h2>Fleet</h2>\n<p id=\"fleet\" data-state=\"\(esc(f.state))\">this instance: \(esc(f.name)), <span class=\"\(cls)\">\(esc(f.state))</span>"
        h += " since \(time(f.since)), applied revision \(f.appliedRevision)\(f.lastError.map { " (" + esc($0) + ")" } ?? "")</p>\n"
        guard let list = f.instances else {
            return h + "<p class=\"muted\">instances unknown while disconnected from etcd</p>\n"
        }
        // Drift: a config hash other than the most common one.
        let usual = f.usualConfigHash
        h += "<table id=\"instances\"><tr><th>instance</th><th>version</th><th>config hash</th><th>connected</th><th>applied revision</th><th>endpoints usable</th><th>overrides</th><th>updated</th></tr>\n"
        for i in list {
            let drift = i.configHash != usual
            h += "<tr id=\"instance-\(esc(i.name))\" data-drift=\"\(drift)\"><td>\(esc(i.name))</td><td>\(esc(i.version))</td>"
            h += "<td class=\"\(drift ? "down" : "")\">\(esc(i.configHash))\(drift ? " DRIFT" : "")</td>"
            // A registered instance holds a live lease in etcd, so it is connected.
            h += "<td class=\"up\">yes</td><td>\(i.appliedRevision)</td><td>\(i.endpointsUsable) of \(i.endpoints)</td><td>\(i.overrides)</td><td>\(time(i.updated))</td></tr>\n"
        }
        return h + "</table>\n"
    }

    static func stateClass(_ s: String) -> String {
        if s.hasPrefix("down") { return "down" }
        if s.hasPrefix("degraded") { return "degraded" }
        return "up"
    }

    static func time(_ t: Double) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static let entities: [Character: String] = ["&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"]

    /// HTML text and attribute escaping.
    static func esc(_ s: String) -> String {
        s.reduce(into: "") { out, ch in
            if let e = entities[ch] { out += e } else { out.append(ch) }
        }
    }
}
