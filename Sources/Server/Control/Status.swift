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
    /// A pool or datacenter with `min_healthy`: below it, policies naming it count it as down.
    public struct Minimum: Codable, Sendable {
        /// `pool` or `datacenter`.
        public var kind: String
        public var name: String
        public var members: Int
        /// Members up or degraded (overrides included), as queries see them.
        public var healthy: Int
        /// As written: `2` or `50%`.
        public var minHealthy: String
        /// Healthy members needed (a percentage rounded up).
        public var required: Int
        public var countsAsDown: Bool
        enum CodingKeys: String, CodingKey {
            case kind, name, members, healthy, required
            case minHealthy = "min_healthy", countsAsDown = "counts_as_down"
        }

        /// `pool web: 1 of 4 healthy, below min_healthy 2: counts as down`.
        public var summary: String {
            let need = minHealthy.hasSuffix("%") ? "\(required) (\(minHealthy))" : "\(required)"
            return "\(kind) \(name): \(healthy) of \(members) healthy, "
                + (countsAsDown ? "below min_healthy \(need): counts as down" : "min_healthy \(need)")
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
    /// Pools and datacenters with `min_healthy`; nil from a server without them.
    public var minimums: [Minimum]?
    /// Fleet mode: the link to etcd and the registered instances; nil for a server alone.
    public var fleet: FleetStatus?
    /// Fleet mode: how endpoint health is decided (by quorum or alone) and who sees what.
    public var quorum: QuorumStatus?

    enum CodingKeys: String, CodingKey {
        case version, config, generation, reloads, endpoints, names, overrides, minimums, fleet, quorum
        case zonesDirectory = "zones_dir", loadedAt = "loaded_at", startedAt = "started_at"
    }

    /// Everything from the live server: the published snapshot, the monitor and the reloads.
    public static func build(_ c: ControlContext) -> StatusReport {
        let s = c.snapshot
        var endpoints: [Endpoint] = []
        var names: [Name] = []
        var overrides: [OverrideView] = []
        var minimums: [Minimum] = []
        if let model = s.model {
            func minimum(_ kind: String, _ name: String, _ spec: MinHealthy?, _ members: [Int]) {
                guard let spec else { return }
                let healthy = members.filter { s.health.state($0).isUsable }.count
                let need = spec.required(of: members.count)
                minimums.append(Minimum(kind: kind, name: name, members: members.count, healthy: healthy,
                                        minHealthy: spec.description, required: need, countsAsDown: healthy < need))
            }
            for p in model.pools { minimum("pool", p.name, p.minHealthy, p.endpoints) }
            for (d, dc) in model.datacenters.enumerated() {
                minimum("datacenter", dc.name, dc.minHealthy, model.endpoints.indices.filter { model.endpoints[$0].datacenter == d })
            }
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
                    let b = failoverBudget(check: spec, ttl: n.ttl, ttlWhenFailing: n.ttlWhenFailing, checks: byName,
                                           propagation: model.quorumPropagation)
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
            endpoints: endpoints, names: names, overrides: overrides, minimums: minimums, fleet: c.fleet?.status(),
            quorum: c.quorum?.status())
    }
}
