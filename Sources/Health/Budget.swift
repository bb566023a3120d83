import Config

/// The worst-case time from an endpoint failing to resolvers no longer getting it (`down`),
/// and from it recovering to resolvers getting it again (`up`), with the parts that add up.
///
/// Down: the failure can begin just after a passing attempt, so `fall` more intervals pass
/// before the last needed failure starts, that attempt may take the whole `timeout`, and a
/// resolver may hold the old answer for its `TTL`. Up: `rise` intervals plus the TTL of the
/// answer without it (the attempt that succeeds is fast, so no timeout).
///
/// With a `ttl_when_failing` shorter than the TTL (and `fall` above 1), answers carry it from
/// the first failed probe, so the down time is the larger of two paths: `interval x fall +
/// timeout + TTL when failing` (answers given during the failing probes), and `interval +
/// timeout + TTL` (an answer given just before the first failed probe completes keeps its
/// full TTL in the resolver's cache). `downParts` holds the larger; `downOther` the other.
///
///     let b = failoverBudget(check: spec, ttl: 30)
///     print(b.description)     // "down 63s = interval x fall 30s (10s x 3) + timeout 3s + TTL 30s; ..."
///     if let why = b.exceeds(rto: 45) { print(why) }
public struct FailoverBudget: Sendable, Equatable, CustomStringConvertible {
    /// One named term of a sum, in seconds.
    public struct Part: Sendable, Equatable {
        public var name: String
        public var seconds: Double
        public var detail: String
        public init(name: String, seconds: Double, detail: String = "") {
            self.name = name; self.seconds = seconds; self.detail = detail
        }
    }
    public var down: Double
    public var up: Double
    public var downParts: [Part]
    public var upParts: [Part]
    /// The smaller path of a down time shortened by `ttl_when_failing`, else nil.
    public var downOther: [Part]? = nil

    /// The parts that dominate a sum: the largest, then the next largest, until they pass
    /// half of the total (so the operator knows what to shrink first).
    public static func dominating(_ parts: [Part]) -> [Part] {
        let total = parts.reduce(0) { $0 + $1.seconds }
        var out: [Part] = []
        var sum = 0.0
        for p in parts.sorted(by: { $0.seconds > $1.seconds }) where p.seconds > 0 {
            out.append(p)
            sum += p.seconds
            if sum > total / 2 { break }
        }
        return out
    }

    public var description: String {
        func sum(_ parts: [Part]) -> String {
            parts.map { "\($0.name) \(DurationText.format($0.seconds))\($0.detail.isEmpty ? "" : " (\($0.detail))")" }.joined(separator: " + ")
        }
        func show(_ total: Double, _ parts: [Part], other: [Part]? = nil) -> String {
            let dom = FailoverBudget.dominating(parts).map(\.name).joined(separator: ", ")
            let terms = other.map { "max(\(sum(parts)), \(sum($0)))" } ?? sum(parts)
            return "\(DurationText.format(total)) = \(terms); dominated by \(dom)"
        }
        return "down \(show(down, downParts, other: downOther)); up \(show(up, upParts))"
    }

    /// nil when the failover time fits `rto` seconds, else a message naming the parts that
    /// dominate it.
    public func exceeds(rto: Double) -> String? {
        guard down > rto else { return nil }
        let dom = FailoverBudget.dominating(downParts).map { "\($0.name) \(DurationText.format($0.seconds))" }.joined(separator: ", ")
        return "failover time \(DurationText.format(down)) exceeds rto \(DurationText.format(rto)); dominated by \(dom)"
    }
}

/// The failover budget of an endpoint whose check is `check` and whose record has `ttl`
/// (`ttlWhenFailing` while its check is failing: pass the name's `ttlWhenFailing`).
/// For a calculated check pass every check in `checks` (by name): its budget is the worst of
/// its members'. A file check is re-read every interval and has no hysteresis.
///
/// `propagation` (fleet mode, `ConfigModel.quorumPropagation`): the seconds for a vantage's
/// change to be published to etcd and read by every instance, added before the TTL.
public func failoverBudget(check: CheckSpec, ttl: UInt32, ttlWhenFailing: UInt32? = nil, checks: [String: CheckSpec] = [:],
                           propagation: Double = 0) -> FailoverBudget {
    var b = budget(check, ttl: ttl, short: ttlWhenFailing.map { min($0, ttl) } ?? ttl, checks: checks, depth: 0)
    guard propagation > 0 else { return b }
    let p = FailoverBudget.Part(name: "quorum propagation", seconds: propagation, detail: "publish + read rounds")
    func with(_ parts: [FailoverBudget.Part]) -> [FailoverBudget.Part] {
        var out = parts
        out.insert(p, at: out.firstIndex { $0.name.hasPrefix("TTL") } ?? out.count)
        return out
    }
    b.downParts = with(b.downParts); b.upParts = with(b.upParts); b.downOther = b.downOther.map(with)
    b.down += propagation; b.up += propagation
    return b
}

extension FailoverBudget {
    /// Seconds, at most, between one instance's check changing state and every instance of
    /// the fleet using the quorum's new decision: one publish round and one read round of
    /// the quorum agent (200 ms each).
    public static let quorumPropagation = 0.4
}

extension ConfigModel {
    /// The propagation step of this configuration's failover budgets: 0 without `fleet:`.
    public var quorumPropagation: Double { server.fleet == nil ? 0 : FailoverBudget.quorumPropagation }
}

private func budget(_ c: CheckSpec, ttl: UInt32, short: UInt32, checks: [String: CheckSpec], depth: Int) -> FailoverBudget {
    let ttlPart = FailoverBudget.Part(name: "TTL", seconds: Double(ttl), detail: "")
    switch c.kind {
    case .calculated(let names, _):
        // Bounded: a calculated chain deeper than the number of checks is a cycle, which the
        // monitor rejects; here it just stops.
        var worst: FailoverBudget? = nil
        if depth <= checks.count {
            for n in names {
                guard let m = checks[n] else { continue }
                let b = budget(m, ttl: ttl, short: short, checks: checks, depth: depth + 1)
                if worst == nil || b.down > worst!.down { worst = b }
            }
        }
        if var w = worst {
            w.downParts = w.downParts.map { p in var p = p; if !p.name.hasPrefix("TTL") { p.name = "\(c.name)/\(p.name)" }; return p }
            w.upParts = w.upParts.map { p in var p = p; if p.name != "TTL" { p.name = "\(c.name)/\(p.name)" }; return p }
            w.downOther = w.downOther?.map { p in var p = p; if !p.name.hasPrefix("TTL") { p.name = "\(c.name)/\(p.name)" }; return p }
            return w
        }
        return FailoverBudget(down: Double(ttl), up: Double(ttl), downParts: [ttlPart], upParts: [ttlPart])
    case .file:
        let i = FailoverBudget.Part(name: "interval", seconds: c.interval, detail: "file re-read")
        return FailoverBudget(down: c.interval + Double(ttl), up: c.interval + Double(ttl), downParts: [i, ttlPart], upParts: [i, ttlPart])
    default:
        let fall = FailoverBudget.Part(name: "interval x fall", seconds: c.interval * Double(c.fall), detail: "\(DurationText.format(c.interval)) x \(c.fall)")
        let timeout = FailoverBudget.Part(name: "timeout", seconds: c.timeout, detail: "")
        let rise = FailoverBudget.Part(name: "interval x rise", seconds: c.interval * Double(c.rise), detail: "\(DurationText.format(c.interval)) x \(c.rise)")
        var b = FailoverBudget(
            down: fall.seconds + timeout.seconds + Double(ttl), up: rise.seconds + Double(ttl),
            downParts: [fall, timeout, ttlPart], upParts: [rise, ttlPart])
        // With fall 1 the first failed probe is the change itself: nothing is shortened.
        if short < ttl && c.fall > 1 {
            let late = [fall, timeout, FailoverBudget.Part(name: "TTL when failing", seconds: Double(short), detail: "")]
            let early = [FailoverBudget.Part(name: "interval", seconds: c.interval, detail: "to the first failed probe"), timeout,
                         FailoverBudget.Part(name: "TTL", seconds: Double(ttl), detail: "answers given before it")]
            let total = { (p: [FailoverBudget.Part]) in p.reduce(0) { $0 + $1.seconds } }
            (b.downParts, b.downOther) = total(early) > total(late) ? (early, late) : (late, early)
            b.down = total(b.downParts)
        }
        return b
    }
}
