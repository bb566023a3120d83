import Config
import DNSSEC
import DNSWire
import Health
import Foundation
import Server

/// The bodies of the CLI commands other than `serve`: each takes arguments the executable
/// already parsed and checked, prints its output, and returns the exit status.
///
///     exit(Commands.check(sources: ConfigSources(configPath: "meridian.yaml", zonesDirectory: nil)))
public enum Commands {
    /// `meridian check`: prints every error (exit 1) or one summary line per zone (exit 0).
    public static func check(sources: ConfigSources) -> Int32 {
        let outcome = Runtime.load(sources, generation: 0)
        if !outcome.errors.isEmpty {
            for e in outcome.errors { printErr(e) }
            printErr("\(outcome.errors.count) error\(outcome.errors.count == 1 ? "" : "s") found")
            return 1
        }
        for s in outcome.summaries { print(s) }
        // The failover budget of every GSLB name (Budget.swift has the formula). A budget over
        // an enforced rto is a load error (Budgets.rtoErrors), printed above like any other;
        // one accepted with `enforce: false` is shown on its name's line.
        if let model = outcome.snapshot?.model {
            for b in Budgets.compute(model) { print(Budgets.describe(b)) }
        }
        return 0
    }

    /// `meridian keygen`: writes a BIND-format key pair (as `dnssec-keygen -K DIR` does) and
    /// prints the key file's path and, for a KSK or CSK, the DS record for the parent.
    public static func keygen(zone: String, algorithm: UInt8, role: String, folder: String) -> Int32 {
        guard let name = try? DNSName(zone.hasSuffix(".") ? zone : zone + ".") else {
            printErr("keygen: bad zone name \(zone)")
            return 2
        }
        guard let alg = DNSSECAlgorithm(rawValue: algorithm) else {
            printErr("keygen: --algorithm must be 13 (ECDSAP256SHA256) or 15 (ED25519)")
            return 2
        }
        guard ["csk", "ksk", "zsk"].contains(role) else {
            printErr("keygen: --role must be csk, ksk or zsk")
            return 2
        }
        do {
            let path = try KeyFiles.generate(zone: name, algorithm: alg, keySigning: role != "zsk", folder: folder)
            print(path)
            if role != "zsk" {
                let key = try KeyFiles.loadPair(keyFile: path)
                print(key.dsRecord)
            }
            return 0
        } catch {
            printErr(error.description)
            return 1
        }
    }

    /// `meridian explain`: the decision for one client, through the server's own `resolve`.
    /// `sources` must name a config (the CLI checks it).
    public static func explain(sources: ConfigSources, name: String, type: String, client: IPAddress, ecs subnet: IPPrefix?,
                               down: [String], control: ControlEndpoint? = nil) -> Int32 {
        guard let qname = try? DNSName(name.hasSuffix(".") ? name : name + ".") else { printErr("bad name \(name)"); return 2 }
        guard let qtype = RRType(mnemonic: type) else { printErr("unknown type \(type)"); return 2 }
        let outcome = Runtime.load(sources, generation: 0)
        guard let snapshot = outcome.snapshot, let router = snapshot.router, let model = snapshot.model else {
            for e in outcome.errors { printErr(e) }
            return 1
        }
        for d in down where model.endpointIndex(named: d) == nil {
            printErr("--down \(d): no such endpoint (known: \(model.endpoints.map(\.name).joined(separator: ", ")))")
            return 2
        }
        print(router.explain(name: qname, qtype: qtype, client: client, ecs: subnet, down: down), terminator: "")
        if let control { return explainVantages(control, model: model, name: qname) }
        return 0
    }

}

extension Commands {
    /// `explain --control`: the running server's vantage view of the checks behind the
    /// endpoints under `name` (fleet mode: who sees what, and what the quorum decided).
    static func explainVantages(_ control: ControlEndpoint, model: ConfigModel, name: DNSName) -> Int32 {
        let report: StatusReport
        do { report = try control.client().status() } catch {
            printErr("meridian explain: \(error)")
            return 1
        }
        guard var q = report.quorum else {
            print("vantages: the server is not in a fleet; it decides from its own checks alone")
            return 0
        }
        let under = Set((model.names.first { $0.owner == name }.map { model.endpointsUnder[$0.root] } ?? []).map { model.endpoints[$0].name })
        q.checks = q.checks.filter { !Set($0.endpoints).isDisjoint(with: under) }
        print("vantages (\(q.mode == "fleet" ? "deciding with the fleet" : "OWN VIEW: \(q.reason ?? "")")):")
        if q.checks.isEmpty { print("  no checked endpoint under \(name)") }
        for line in StatusTable.vantageTable(q) where !q.checks.isEmpty { print("  " + line) }
        return 0
    }
}

/// One line on standard error (unbuffered, so progress shows as it happens).
func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
