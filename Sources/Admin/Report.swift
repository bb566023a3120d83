import DNSWire
import Foundation
import Server

/// Inputs of `meridian report`.
public struct ReportArguments: Sendable {
    public var dnstap: String
    public var from: Date?
    public var to: Date?
    /// Only this datacenter's answers (the residual traffic to a drained datacenter).
    public var datacenter: String?
    public var v4Prefix = 24
    public var v6Prefix = 56
    public init(dnstap: String) { self.dnstap = dnstap }
}

/// `meridian report`: from a dnstap file, the GSLB answers given per minute and datacenter,
/// and per resolver network and datacenter, in a time window.
///
///     var a = ReportArguments(dnstap: "queries.fstrm")
///     a.datacenter = "iad"              // what still went to iad after the drill
///     exit(Commands.report(a))
extension Commands {
    public static func report(_ a: ReportArguments) -> Int32 {
        let entries: [DnstapEntry]
        do { entries = try DnstapReader.read(path: a.dnstap) } catch {
            printErr("meridian report: \(error)")
            return 1
        }
        print(Report.text(entries, a), terminator: "")
        return 0
    }
}

public enum Report {
    public static func text(_ all: [DnstapEntry], _ a: ReportArguments) -> String {
        // Answers given: AUTH_RESPONSE messages, or the queries when responses were not logged.
        let hasResponses = all.contains(where: \.response)
        var entries = all.filter { $0.response == hasResponses && $0.extraValue("gslb") != nil }
        if let f = a.from { entries = entries.filter { $0.time >= f.timeIntervalSince1970 } }
        if let t = a.to { entries = entries.filter { $0.time < t.timeIntervalSince1970 } }
        if let dc = a.datacenter { entries = entries.filter { $0.extraValue("dc") == dc } }
        var dcs = Array(Set(entries.map { $0.extraValue("dc") ?? "none" })).sorted()
        if let dc = a.datacenter, !dcs.contains(dc) { dcs = [dc] }
        var out = "GSLB answers in \(a.dnstap) (\(hasResponses ? "AUTH_RESPONSE" : "AUTH_QUERY") messages with Meridian's decision)"
        if a.from != nil || a.to != nil {
            out += ", from \(a.from.map(iso) ?? "the start") to \(a.to.map(iso) ?? "the end")"
        }
        out += ": \(entries.count)\n\n"
        func table(_ title: String, _ keys: [String], _ key: (DnstapEntry) -> String) {
            var counts: [String: [String: Int]] = [:]
            for e in entries { counts[key(e), default: [:]][e.extraValue("dc") ?? "none", default: 0] += 1 }
            var rows = [[title] + dcs]
            for k in keys { rows.append([k] + dcs.map { String(counts[k]?[$0] ?? 0) }) }
            var widths = Array(repeating: 0, count: rows[0].count)
            for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
            for r in rows {
                out += r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ") + "\n"
            }
            out += "\n"
        }
        let minutes = Array(Set(entries.map { minute($0.time) })).sorted()
        table("MINUTE (UTC)", minutes) { minute($0.time) }
        let networks = Array(Set(entries.map { network($0, a) })).sorted()
        table("RESOLVER NETWORK", networks) { network($0, a) }
        return out
    }

    static func minute(_ t: Double) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.string(from: Date(timeIntervalSince1970: (t / 60).rounded(.down) * 60))
    }

    static func network(_ e: DnstapEntry, _ a: ReportArguments) -> String {
        guard let c = e.client else { return "-" }
        let bits = c.isV4 ? a.v4Prefix : a.v6Prefix
        return "\(c.masked(to: bits))/\(bits)"
    }

    static func iso(_ d: Date) -> String { ISO8601DateFormatter().string(from: d) }
}
