import Config
import DNSWire
import Foundation
import Glibc
import Health
import Platform
import Synchronization
import Server

/// Settings of one drill, from the command line.
///
///     var o = DrillOptions(datacenter: "ams", holdFor: nil, server: try ListenAddress("127.0.0.1:53"),
///                          control: try DrillControl(url: "http://127.0.0.1:8053", token: nil),
///                          vantages: DatacenterPlan.defaultVantages(model))
///     o.timeout = 30
public struct DrillOptions: Sendable {
    public var datacenter: String
    /// How the datacenter is taken down: an override (the manual path), or its health
    /// probes answered as failed (the automatic path: rise/fall and propagation as in an outage).
    public var mode: DrillMode = .override
    /// Keep the datacenter down this long after forcing it (at least until the answers
    /// moved); nil restores as soon as they moved.
    public var holdFor: Double?
    public var server: ListenAddress
    public var control: DrillControl
    public var vantages: [Vantage]
    public var poll: Double = 0.1
    /// Bound on each waiting phase: answers moving away, and answers coming back.
    public var timeout: Double = 60
    /// `drill --fleet`: every registered instance, each queried at its own DNS address (and,
    /// for a health drill, failed through its own control API); empty for one server.
    public var instances: [DrillInstance] = []
    public init(datacenter: String, holdFor: Double?, server: ListenAddress, control: DrillControl, vantages: [Vantage]) {
        self.datacenter = datacenter; self.holdFor = holdFor; self.server = server; self.control = control; self.vantages = vantages
    }

    /// What the drill queries and drives: the fleet's instances, or the one server.
    var targets: [DrillInstance] {
        instances.isEmpty ? [DrillInstance(name: nil, server: server, control: control)] : instances
    }

    /// The override's own expiry: the drill deletes it, but if the drill dies the server
    /// lifts it by itself after this long (the hold or the move timeout, plus 30 s).
    public var overrideExpiry: Double { max(holdFor ?? 0, timeout) + 30 }
}

/// One instance of a fleet drill: its name in the fleet, where it answers DNS and its
/// control API (both from its registration record in etcd).
public struct DrillInstance: Sendable {
    /// nil when the drill runs on one server.
    public var name: String?
    public var server: ListenAddress
    public var control: DrillControl
    public init(name: String?, server: ListenAddress, control: DrillControl) {
        self.name = name; self.server = server; self.control = control
    }
}

/// How a drill takes the datacenter down.
public enum DrillMode: String, Sendable, CaseIterable {
    /// `POST /override` of the datacenter, state down (the manual path).
    case override
    /// `POST /drill/health`: the probes of the datacenter's checks are answered as failed
    /// by the server, so the checks' rise/fall and the propagation run as in a real outage.
    case health
}

/// One (name, vantage) row of a drill.
///
///     pair.movedIn      // 0.004: seconds at the authoritative server
///     pair.worstCase    // 30.004: plus the TTL resolvers may hold the old answer for
///     pair.verdict      // .ok when worstCase <= rto
public struct DrillPair: Sendable {
    /// `drill --fleet`: the instance this row was measured on (nil for one server).
    public var instance: String? = nil
    /// The DNS server this row queries.
    public var server: ListenAddress
    public var name: DNSName
    public var vantage: Vantage
    public var ttl: UInt32
    public var rto: Double?
    public var budgetDown: Double?
    public var before: Observation
    /// Whether the answer before the drill pointed into the datacenter; rows that did not
    /// are shown but not judged.
    public var affected: Bool
    public var after: Observation? = nil
    /// Seconds from sending the override until the server's answer left the datacenter.
    public var movedIn: Double? = nil
    /// Seconds from clearing the override until the answer pointed into the datacenter again.
    public var returnedIn: Double? = nil
    /// Health drills: seconds from the drill's start to the first probe answered as failed,
    /// and to the last of the name's checks in the datacenter going down (from the server).
    public var firstFailedIn: Double? = nil
    public var downIn: Double? = nil
    /// The health-check part of the failover budget (interval x fall + timeout, without the
    /// TTL): what a health drill's move is compared with.
    public var budgetDetection: Double? = nil
    /// Health drills: the margin allowed over the failover budget (the poll interval and
    /// scheduling); set when the budget is judged.
    public var budgetSlack: Double? = nil

    /// Health drills: the measured move exceeded the name's failover budget (interval x fall
    /// + timeout, the health-check part of `budgetDown`) by more than the slack.
    public var overBudget: Bool {
        guard let slack = budgetSlack, let moved = movedIn, let b = budgetDetection else { return false }
        return moved > b + slack
    }

    /// The measured parts of the worst case, in order: for a health drill, waiting for the
    /// first failed probe, confirming (the rest of `fall`), propagating to the answers, and
    /// the TTL; for an override drill, propagating and the TTL.
    public var parts: [FailoverBudget.Part] {
        guard let moved = movedIn else { return [] }
        var out: [FailoverBudget.Part] = []
        if let f = firstFailedIn, let d = downIn, f <= d, d <= moved + 1 {
            out.append(FailoverBudget.Part(name: "first failed probe", seconds: f, detail: "waiting for the next probe"))
            out.append(FailoverBudget.Part(name: "confirmation", seconds: d - f, detail: "failed probes until fall"))
            out.append(FailoverBudget.Part(name: "propagation", seconds: max(0, moved - d), detail: "state down to answers moved"))
        } else {
            out.append(FailoverBudget.Part(name: "propagation", seconds: moved, detail: "to answers moved"))
        }
        out.append(FailoverBudget.Part(name: "TTL", seconds: Double(ttl), detail: "resolvers keep the old answer"))
        return out
    }

    /// The longest a client can still be sent into the datacenter: the move at the server
    /// plus the TTL a resolver may keep the old answer for.
    public var worstCase: Double? { movedIn.map { $0 + Double(ttl) } }

    public enum Verdict: String, Sendable {
        case ok, noRTO = "ok (no rto)", exceeded = "EXCEEDS RTO", overBudget = "OVER BUDGET", neverMoved = "NEVER MOVED", unaffected = "not in dc"
    }
    public var verdict: Verdict {
        guard affected else { return .unaffected }
        guard let w = worstCase else { return .neverMoved }
        if let rto, w > rto { return .exceeded }
        if overBudget { return .overBudget }
        return rto == nil ? .noRTO : .ok
    }
    public var passed: Bool { verdict != .exceeded && verdict != .neverMoved && verdict != .overBudget }
}

/// Everything a drill found, for the table and `--json`.
///
///     let report = Drill.run(model: model, options: o, interrupt: DrillInterrupt()) { _ in }
///     report.pairs.filter { !$0.passed }    // the rows that failed
///     report.exitCode                        // 0 or 1
public struct DrillReport: Sendable {
    public var datacenter: String
    public var server: String
    public var control: String
    public var startedAt: Date
    public var overrideExpiry: Double
    public var pairs: [DrillPair] = []
    /// Per affected name: the failover budget of its endpoints in the datacenter (health checks, no override).
    public var budgets: [(name: DNSName, budget: FailoverBudget?, rto: Double?)] = []
    public var forced = false
    public var restored = false
    /// Every answer that pointed into the datacenter before did so again after the restore.
    public var returned = false
    public var interrupted = false
    public var errors: [String] = []
    /// What the datacenter's answers are; nil when the config has no such datacenter.
    public var plan: DatacenterPlan? = nil
    public var mode: DrillMode = .override
    /// Health drills: the server's record of the drill (checks, first failed probes, state changes).
    public var probeDrill: ProbeDrillStatus? = nil
    /// `drill --fleet`: the instances drilled, by name (empty for one server).
    public var instances: [String] = []

    /// 0: every affected pair moved within its rto (or has none) and the datacenter came
    /// back; 1 otherwise.
    public var exitCode: Int32 {
        let ok = forced && restored && returned && !interrupted && errors.isEmpty && pairs.allSatisfy(\.passed)
        return ok ? 0 : 1
    }
}

/// Set by SIGINT/SIGTERM while a drill runs; the drill checks it between polls.
///
///     let stop = DrillInterrupt()
///     stop.fire()          // from the signal thread
///     stop.fired           // true: the drill restores and returns
public final class DrillInterrupt: Sendable {
    let count = Atomic<Int>(0)
    public init() {}
    public func fire() { count.add(1, ordering: .relaxed) }
    public var fired: Bool { count.load(ordering: .relaxed) > 0 }
    /// A second signal: stop waiting even for the restore to show.
    public var firedTwice: Bool { count.load(ordering: .relaxed) > 1 }
}

/// `meridian drill`: force a datacenter down through the control API, measure how fast each
/// (name, vantage) moves away from it, restore it and check the answers return.
///
///     let report = Drill.run(model: model, options: opts, interrupt: DrillInterrupt()) { print($0) }
///     print(Drill.table(report)); exit(report.exitCode)   // or Drill.json(report)
public enum Drill {
    public static func run(model: ConfigModel, options o: DrillOptions, interrupt: DrillInterrupt,
                           progress: (String) -> Void) -> DrillReport {
        var report = DrillReport(datacenter: o.datacenter, server: o.server.description, control: o.control.url,
                                 startedAt: Date(), overrideExpiry: o.overrideExpiry)
        report.mode = o.mode
        let plan: DatacenterPlan
        do { plan = try DatacenterPlan(model: model, datacenter: o.datacenter) } catch {
            report.errors.append(error.message)
            return report
        }
        report.plan = plan
        report.budgets = plan.names.map { ($0.owner, $0.budget, $0.rto) }
        let target = OverrideTargetName(kind: .datacenter, name: o.datacenter)
        let timeout = min(1, max(0.2, o.timeout))
        let targets = o.targets
        report.instances = targets.compactMap(\.name)
        if !o.instances.isEmpty { report.server = targets.map { "\($0.name ?? "-") at \($0.server)" }.joined(separator: ", ") }

        // 1. Nothing may already hold the datacenter: the drill would overwrite and then delete it.
        do {
            let existing = try o.control.overrideTargets()
            for t in targets where o.mode == .health {
                if let d = try t.control.probeDrill(), d.active {
                    report.errors.append("a health drill of \(d.datacenter) is running already on \(t.name ?? "this server"); wait for it to end (DELETE /drill/health ends it)")
                    return report
                }
            }
            if existing.contains(target) {
                report.errors.append("an override on \(target) is already active; the drill would replace and then remove it. Clear it first (DELETE /override?target=\(target)) or wait for it to expire.")
                return report
            }
        } catch {
            report.errors.append(error.message)
            return report
        }

        // 2. Where each (name, vantage) points now.
        progress("before: querying \(plan.names.count) name(s) from \(o.vantages.count) vantage(s) at \(targets.map { t in t.name.map { "\($0) (\(t.server))" } ?? "\(t.server)" }.joined(separator: ", "))")
        for t in targets {
            let probe = DNSProbe(server: t.server, timeout: timeout)
            for n in plan.names {
                for v in o.vantages {
                    let b = probe.observe(name: n.owner, types: n.types, vantage: v.prefix)
                    if let e = b.error, b.addresses.isEmpty && b.cnames.isEmpty {
                        report.errors.append("\(t.name.map { "\($0): " } ?? "")\(n.owner) from \(v): \(e)")
                    }
                    var pair = DrillPair(instance: t.name, server: t.server, name: n.owner, vantage: v, ttl: b.ttl > 0 ? b.ttl : n.ttl,
                                         rto: n.rto, budgetDown: n.budget?.down, before: b,
                                         affected: plan.pointsInto(addresses: b.addresses, cnames: b.cnames))
                    pair.budgetDetection = n.budget.map { $0.downParts.filter { !$0.name.hasPrefix("TTL") }.reduce(0) { $0 + $1.seconds } }
                    report.pairs.append(pair)
                }
            }
        }
        guard report.errors.isEmpty else { return report }
        guard report.pairs.contains(where: \.affected) else {
            report.errors.append("no answer points into \(o.datacenter) now (its endpoints are down, or no vantage reaches it): nothing to measure; try --vantage")
            return report
        }
        // A fleet drill measures every instance: one whose answers already avoid the
        // datacenter would pass without having been tested.
        for t in targets {
            if let n = t.name, !report.pairs.contains(where: { $0.instance == n && $0.affected }) {
                report.errors.append("\(n): no answer points into \(o.datacenter) now: nothing to measure on this instance")
            }
        }
        guard report.errors.isEmpty else { return report }
        if interrupt.fired { report.interrupted = true; return report }

        // 3. Force it down and poll until every affected answer left it.
        let t0 = monotonicSeconds()
        let t0Wall = Date().timeIntervalSince1970
        do {
            switch o.mode {
            case .override:
                progress("forcing \(target) down (override expires by itself in \(DurationText.format(o.overrideExpiry)))")
                try o.control.setOverride(target: target, state: "down", reason: "drill", expiresIn: o.overrideExpiry)
            case .health:
                progress("failing the health probes of \(o.datacenter) (the server ends this by itself in \(DurationText.format(o.overrideExpiry)))")
                for t in targets {
                    let d = try t.control.startProbeDrill(datacenter: o.datacenter, expiresIn: o.overrideExpiry)
                    progress("\(t.name.map { "\($0): " } ?? "")probes answered as failed: checks \(d.checks.map(\.check).joined(separator: ", "))")
                }
            }
            report.forced = true
        } catch {
            report.errors.append(error.message)
            // The request may have been applied even though its reply was lost: remove
            // whatever is there (a 404 is fine) rather than leave it until it expires.
            switch o.mode {
            case .override: _ = try? o.control.clearOverride(target: target)
            case .health: for t in targets { _ = try? t.control.stopProbeDrill() }
            }
        }
        if report.forced {
            poll(&report, plan: plan, options: o, since: t0, interrupt: interrupt, untilInside: false, progress: progress)
            if o.mode == .health {
                for t in targets {
                    recordProbeTimes(&report, model: model, plan: plan, target: t, since: t0Wall, slack: o.poll + 0.5)
                }
            }
            for i in report.pairs.indices where !report.pairs[i].affected {
                let p = report.pairs[i]
                report.pairs[i].after = DNSProbe(server: p.server, timeout: timeout).observe(name: p.name, types: plan.names.first { $0.owner == p.name }?.types ?? [.a], vantage: p.vantage.prefix)
            }
            if let hold = o.holdFor, !interrupt.fired {
                progress("holding \(o.datacenter) down until \(DurationText.format(hold)) after forcing")
                while monotonicSeconds() - t0 < hold && !interrupt.fired { Thread.sleep(forTimeInterval: min(0.1, o.poll)) }
            }
        }
        if interrupt.fired { report.interrupted = true }

        // 4. Restore, whatever happened above, and wait for the answers to return.
        restore(&report, target: target, mode: o.mode, control: o.control, targets: targets, progress: progress)
        if report.restored {
            let tr = monotonicSeconds()
            poll(&report, plan: plan, options: o, since: tr, interrupt: interrupt, untilInside: true, progress: progress)
            report.returned = report.pairs.allSatisfy { !$0.affected || $0.returnedIn != nil }
            if !report.returned {
                let missing = report.pairs.filter { $0.affected && $0.returnedIn == nil }.map { "\($0.instance.map { "\($0): " } ?? "")\($0.name) from \($0.vantage)" }
                report.errors.append("after the restore these answers did not point into \(o.datacenter) again within \(DurationText.format(o.timeout)): \(missing.joined(separator: ", "))")
            }
        }
        if interrupt.fired { report.interrupted = true }
        return report
    }

    /// Polls the affected pairs every `poll` until each is outside (or, with `untilInside`,
    /// inside again) the datacenter, the timeout passes, or a signal comes.
    static func poll(_ report: inout DrillReport, plan: DatacenterPlan, options o: DrillOptions,
                     since start: Double, interrupt: DrillInterrupt, untilInside: Bool, progress: (String) -> Void) {
        let types = Dictionary(plan.names.map { ($0.owner, $0.types) }, uniquingKeysWith: { a, _ in a })
        while true {
            let tick = monotonicSeconds()
            var pending = 0
            for i in report.pairs.indices where report.pairs[i].affected {
                let p = report.pairs[i]
                if (untilInside ? p.returnedIn : p.movedIn) != nil { continue }
                let ob = DNSProbe(server: p.server, timeout: min(1, max(0.2, o.timeout))).observe(name: p.name, types: types[p.name] ?? [.a], vantage: p.vantage.prefix)
                let hasAnswer = !ob.addresses.isEmpty || !ob.cnames.isEmpty
                let inside = plan.pointsInto(addresses: ob.addresses, cnames: ob.cnames)
                let elapsed = monotonicSeconds() - start
                if untilInside {
                    if inside {
                        report.pairs[i].returnedIn = elapsed
                        progress("\(p.instance.map { "\($0): " } ?? "")\(p.name) from \(p.vantage): back in \(plan.datacenter) after \(DurationText.format(elapsed))")
                    } else { pending += 1 }
                } else if hasAnswer && !inside {
                    report.pairs[i].movedIn = elapsed
                    report.pairs[i].after = ob
                    progress("\(p.instance.map { "\($0): " } ?? "")\(p.name) from \(p.vantage): moved to \(plan.places(addresses: ob.addresses, cnames: ob.cnames).joined(separator: "+")) after \(DurationText.format(elapsed))")
                } else {
                    report.pairs[i].after = ob
                    pending += 1
                }
            }
            if pending == 0 { return }
            if untilInside ? interrupt.firedTwice : interrupt.fired { return }
            if monotonicSeconds() - start >= o.timeout { return }
            let wait = o.poll - (monotonicSeconds() - tick)
            if wait > 0 { Thread.sleep(forTimeInterval: wait) }
        }
    }

    /// DELETE the override, retried three times a second apart; a 404 means it is gone
    /// already (expired), which is also restored.
    static func restore(_ report: inout DrillReport, target: OverrideTargetName, mode: DrillMode, control: DrillControl,
                        targets: [DrillInstance], progress: (String) -> Void) {
        guard report.forced else { return }
        progress(mode == .health ? "restoring: probes of \(report.datacenter) run for real again" : "restoring \(target)")
        var last = ""
        for attempt in 0..<3 {
            if attempt > 0 { Thread.sleep(forTimeInterval: 1) }
            do {
                switch mode {
                case .override: try control.clearOverride(target: target)
                case .health: for t in targets { _ = try t.control.stopProbeDrill() }
                }
                report.restored = true
                return
            } catch { last = error.message }
        }
        let how = mode == .health ? "curl -X DELETE '\(control.url)/drill/health'" : "curl -X DELETE '\(control.url)/override?target=\(target)'"
        report.errors.append("RESTORE FAILED: \(last). Clear it by hand: \(how) (it expires by itself \(DurationText.format(report.overrideExpiry)) after the drill began)")
    }

    /// Health drills: when the first probe of each name's checks in the datacenter was
    /// failed and when the last of them went down, from the server's record, as seconds
    /// since the drill began (both clocks are the wall clock of the host; the drill runs
    /// on the server's host).
    static func recordProbeTimes(_ report: inout DrillReport, model: ConfigModel, plan: DatacenterPlan, target: DrillInstance,
                                 since start: Double, slack: Double) {
        let status: ProbeDrillStatus
        do {
            guard let s = try target.control.probeDrill() else {
                report.errors.append("GET /drill/health: no health drill on \(target.name ?? "the server")")
                return
            }
            status = s
        } catch {
            report.errors.append(error.message)
            return
        }
        for i in report.pairs.indices where report.pairs[i].affected && report.pairs[i].instance == target.name {
            guard let name = plan.names.first(where: { $0.owner == report.pairs[i].name }) else { continue }
            let endpoints = Set(name.endpoints.map { model.endpoints[$0].name })
            let checks = status.checks.filter { !endpoints.isDisjoint(with: $0.endpoints) }
            let failed = checks.compactMap(\.firstFailedAt)
            let down = checks.compactMap(\.downAt)
            if let f = failed.min() { report.pairs[i].firstFailedIn = max(0, f - start) }
            if !checks.isEmpty && down.count == checks.count, let d = down.max() { report.pairs[i].downIn = max(0, d - start) }
            report.pairs[i].budgetSlack = slack
        }
        report.probeDrill = status
    }

    // MARK: Output

    static func describe(_ o: Observation?, _ plan: (Observation) -> String) -> String {
        guard let o else { return "-" }
        if o.addresses.isEmpty && o.cnames.isEmpty { return o.error.map { "error (\($0))" } ?? "no answer" }
        return plan(o)
    }

    /// Where an answer points, as datacenter names: "iad", "fallback", or raw data.
    public static func place(_ o: Observation?, plan: DatacenterPlan?) -> String {
        guard let plan else { return "-" }
        return describe(o) { plan.places(addresses: $0.addresses, cnames: $0.cnames).joined(separator: "+") }
    }

    /// The human-readable report: one row per (name, vantage), then what the numbers mean.
    public static func table(_ r: DrillReport) -> String {
        let health = r.mode == .health
        let fleet = !r.instances.isEmpty
        var rows: [[String]] = [(fleet ? ["INSTANCE"] : []) + ["NAME", "VANTAGE", "BEFORE", "AFTER"] + (health ? ["1ST FAILED", "DOWN AT", "BUDGET"] : [])
                                + ["MOVED IN", "+TTL", "WORST CASE", "RTO", "BACK IN", "VERDICT"]]
        func seconds(_ d: Double?) -> String { d.map { DurationText.format($0) } ?? "-" }
        for p in r.pairs {
            let head: [String] = (fleet ? [p.instance ?? "-"] : []) + [p.name.description, p.vantage.description, place(p.before, plan: r.plan), place(p.after, plan: r.plan)]
            let probes: [String] = health ? [seconds(p.firstFailedIn), seconds(p.downIn), seconds(p.budgetDetection)] : []
            let moved: String = p.movedIn.map { DurationText.format($0) } ?? (p.affected ? "never" : "-")
            let back: String = p.returnedIn.map { DurationText.format($0) } ?? (p.affected && r.restored ? "never" : "-")
            let tail: [String] = [moved, "\(p.ttl)s", seconds(p.worstCase), seconds(p.rto), back, p.verdict.rawValue]
            rows.append(head + probes + tail)
        }
        var widths = Array(repeating: 0, count: rows[0].count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = fleet ? "fleet drill: \(r.instances.count) instance(s): \(r.instances.joined(separator: ", "))\n" : ""
        out += health ? "drill: health probes of datacenter \(r.datacenter) failed via \(r.control), answers from \(r.server)\n\n"
                         : "drill: datacenter \(r.datacenter) forced down via \(r.control), answers from \(r.server)\n\n"
        for row in rows {
            out += row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        if health {
            out += """

            The health probes of \(r.datacenter)'s checks were answered as failed from the drill's start; the
            checks' rise/fall and the propagation ran as in an outage. 1ST FAILED: the first failed probe;
            DOWN AT: the last of the name's checks there down; MOVED IN: the answer left \(r.datacenter) (all
            from the drill's start). MOVED IN is compared with BUDGET (interval x fall + timeout, plus
            \(DurationText.format(r.pairs.compactMap(\.budgetSlack).first ?? 0)) for polling), WORST CASE = MOVED IN + TTL with the rto.

            """
        } else {
            out += """

            MOVED IN is measured at the authoritative server, from sending the override until its answer
            left \(r.datacenter). Resolvers may keep the old answer for its TTL, so clients can still be sent
            to \(r.datacenter) until WORST CASE = MOVED IN + TTL; the rto is compared against WORST CASE.

            """
        }
        for p in r.pairs where p.affected && !p.passed {
            out += "miss: \(p.instance.map { "\($0): " } ?? "")\(p.name) from \(p.vantage): \(p.verdict.rawValue)\(missDetail(p))\n"
        }
        for n in r.instances {
            let mine = r.pairs.filter { $0.instance == n && $0.affected }
            let missed = mine.filter { !$0.passed }.count
            out += "instance \(n): \(mine.count) pair(s) in \(r.datacenter) before, \(missed == 0 ? "all moved" : "\(missed) MISSED")\n"
        }
        for b in r.budgets {
            let rto = b.rto.map { " (rto \(DurationText.format($0)))" } ?? ""
            if let budget = b.budget {
                let verdict = b.rto.flatMap { budget.exceeds(rto: $0) }.map { ": \($0)" } ?? ""
                out += "without an override, \(b.name) leaves \(r.datacenter) by health checks in at most \(DurationText.format(budget.down))\(rto)\(verdict)\n"
            } else {
                out += "\(b.name): its \(r.datacenter) endpoints have no health check; only an override takes them out\(rto)\n"
            }
        }
        let restoredWhat = health ? "restored: probes of \(r.datacenter) run for real again" : "restored: override on dc:\(r.datacenter) cleared"
        out += r.restored ? restoredWhat + (r.returned ? ", answers back in \(r.datacenter)\n" : "\n")
                          : (r.forced ? "NOT RESTORED\n" : "nothing was forced\n")
        if r.interrupted { out += "interrupted by a signal: the datacenter was restored before exiting\n" }
        for e in r.errors { out += "error: \(e)\n" }
        out += "result: \(r.exitCode == 0 ? "PASS" : "FAIL")\n"
        return out
    }

    /// Why a pair missed, and the measured parts that dominate its worst case.
    static func missDetail(_ p: DrillPair) -> String {
        var why = ""
        if let w = p.worstCase, let rto = p.rto, w > rto {
            why = ": worst case \(DurationText.format(w)) > rto \(DurationText.format(rto))"
        } else if p.overBudget, let m = p.movedIn, let b = p.budgetDetection {
            why = ": moved in \(DurationText.format(m)) > budget \(DurationText.format(b)) + \(DurationText.format(p.budgetSlack ?? 0))"
        } else if p.movedIn == nil {
            why = ": the answer never left the datacenter"
        }
        let dom = FailoverBudget.dominating(p.parts)
        guard !dom.isEmpty else { return why }
        return why + "; dominated by " + dom.map { "\($0.name) \(DurationText.format($0.seconds))" }.joined(separator: ", ")
    }

    /// The report as JSON (stable key order) for automation.
    public static func json(_ r: DrillReport) -> String {
        func obs(_ o: Observation?) -> Any {
            guard let o else { return NSNull() }
            var d: [String: Any] = ["addresses": o.addresses.map(\.description), "cnames": o.cnames.map(\.description),
                                    "ttl": Int(o.ttl),
                                    "datacenters": r.plan.map { $0.places(addresses: o.addresses, cnames: o.cnames) } ?? []]
            if let e = o.error { d["error"] = e }
            return d
        }
        func num(_ d: Double?) -> Any { d.map { ($0 * 1000).rounded() / 1000 } ?? NSNull() }
        let pairs: [[String: Any]] = r.pairs.map { p in
            ["instance": p.instance ?? NSNull(), "server": p.server.description,
             "name": p.name.description, "vantage": p.vantage.description, "in_datacenter_before": p.affected,
             "before": obs(p.before), "after": obs(p.after), "moved_in_s": num(p.movedIn), "ttl_s": Int(p.ttl),
             "worst_case_s": num(p.worstCase), "rto_s": num(p.rto), "budget_down_s": num(p.budgetDown),
             "returned_in_s": num(p.returnedIn), "verdict": p.verdict.rawValue, "passed": p.passed,
             "first_failed_probe_s": num(p.firstFailedIn), "down_s": num(p.downIn), "budget_detection_s": num(p.budgetDetection),
             "over_budget": p.overBudget,
             "parts": p.parts.map { ["name": $0.name, "seconds": num($0.seconds)] as [String: Any] },
             "dominating": p.passed ? [] : FailoverBudget.dominating(p.parts).map(\.name)]
        }
        let doc: [String: Any] = [
            "datacenter": r.datacenter, "server": r.server, "control": r.control, "mode": r.mode.rawValue,
            "started_at": ISO8601DateFormatter().string(from: r.startedAt),
            "override_expires_in_s": Int(r.overrideExpiry.rounded(.up)),
            "measured_at": "authoritative server; worst_case_s = moved_in_s + ttl_s is what clients may see, and is compared with rto_s",
            "pairs": pairs, "forced": r.forced, "restored": r.restored, "returned": r.returned,
            "interrupted": r.interrupted, "errors": r.errors, "exit_code": Int(r.exitCode),
            "instances": r.instances.map { n -> [String: Any] in
                let mine = r.pairs.filter { $0.instance == n }
                return ["name": n, "server": mine.first?.server.description ?? "", "pairs": mine.count,
                        "affected": mine.filter(\.affected).count, "missed": mine.filter { $0.affected && !$0.passed }.count,
                        "passed": mine.allSatisfy(\.passed)]
            },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
