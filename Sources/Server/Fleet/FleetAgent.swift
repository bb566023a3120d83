import Config
import Etcd
import Foundation
import Health
import Logging
import Platform
import Synchronization

/// One instance as it registers itself under `PREFIX instances/NAME`, on a lease.
public struct FleetInstance: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    /// FNV-1a 64 of the configuration file's bytes, in hex: two instances that differ have drifted.
    public var configHash: String
    /// The etcd revision of the override set this instance has applied.
    public var appliedRevision: Int64
    /// Endpoints usable (up or degraded) as this instance sees them, of all.
    public var endpointsUsable: Int
    public var endpoints: Int
    public var overrides: Int
    /// Seconds since the epoch of this record.
    public var updated: Double
    /// Where `meridian drill --fleet` reaches this instance: its DNS listen addresses
    /// (ADDR:PORT, as it bound them) and its control API URL (nil without one). Optional so
    /// that records of older versions still decode.
    public var dns: [String]?
    public var control: String?

    enum CodingKeys: String, CodingKey {
        case name, version, endpoints, overrides, updated, dns, control
        case configHash = "config_hash", appliedRevision = "applied_revision", endpointsUsable = "endpoints_usable"
    }
}

/// What an override change through the fleet came to: the revision it was written at, the
/// live instances that applied it in time and those that did not.
public struct FleetAck: Codable, Sendable, Equatable {
    public var revision: Int64
    public var acknowledged: [String]
    public var laggards: [String]
}

/// This instance's link to the fleet, for `/status`, `meridian status` and the metrics.
public struct FleetStatus: Codable, Sendable {
    public var name: String
    /// `connected` or `disconnected`.
    public var state: String
    public var prefix: String
    public var appliedRevision: Int64
    public var lastError: String?
    /// Seconds since the epoch when `state` began.
    public var since: Double
    /// The registered instances (nil while disconnected).
    public var instances: [FleetInstance]?

    /// The most common config hash among the instances (ties: the smallest); an instance
    /// with another one has drifted.
    public var usualConfigHash: String? {
        let counts = Dictionary((instances ?? []).map { ($0.configHash, 1) }, uniquingKeysWith: +)
        return counts.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }?.key
    }

    enum CodingKeys: String, CodingKey {
        case name, state, prefix, since, instances
        case appliedRevision = "applied_revision", lastError = "last_error"
    }
}

/// Fleet mode: overrides live in etcd under `PREFIX overrides/TARGET` and every instance
/// applies them; each instance registers under `PREFIX instances/NAME` on a lease.
///
///     let agent = FleetAgent(settings: fleet, publisher: publisher, save: { control.saveOverrides(log: log) },
///                            configHash: hash, log: log)
///     agent.start()      // returns at once: the first answers come from the saved overrides
///
/// Threads: a watcher (read the whole override prefix, apply it, watch from the next
/// revision; on any change read it again) and a heartbeat (lease grant and keep-alive, the
/// instance record). Neither touches the query path: applying an override goes through the
/// health monitor, which publishes a new snapshot exactly as the control API does.
///
/// Partition: when etcd cannot be reached the instance keeps what it last applied (fail
/// static), already saved in the state folder, reports `disconnected`, and retries every
/// second; on reconnect it reads the whole prefix again, so it catches up without a restart.
public final class FleetAgent: Sendable {
    public let settings: FleetSettings
    public let client: EtcdClient
    private let publisher: Publisher
    private let save: @Sendable () -> Void
    private let configHash: String
    private let log: Logger
    /// Registered for `drill --fleet`: the DNS listen addresses and the control API URL.
    private let dnsAddresses: [String]
    private let controlURL: String?

    private struct State {
        var connected = false
        var since = Date().timeIntervalSince1970
        var lastError: String?
        var applied: Int64 = 0
        var lease: Int64?
        var stopping = false
        /// The heartbeat lost etcd: the watcher should start over with a full read.
        var restartWatch = false
    }
    private let state = Mutex(State())
    /// Serializes applying and publishing the instance record.
    private let applyLock = Mutex<Void>(())
    private let done = DispatchGroup()

    public var overridesPrefix: String { settings.prefix + "overrides/" }
    public var instancesPrefix: String { settings.prefix + "instances/" }

    public init(settings: FleetSettings, credentials: EtcdCredentials? = nil, tls: TLSClientContext? = nil, publisher: Publisher,
                save: @escaping @Sendable () -> Void, configHash: String, log: Logger,
                dns: [String] = [], controlURL: String? = nil) {
        self.settings = settings
        self.dnsAddresses = dns; self.controlURL = controlURL
        self.client = EtcdClient(endpoints: settings.endpoints, timeout: 2, credentials: credentials, tls: tls)
        self.publisher = publisher; self.save = save; self.configHash = configHash; self.log = log
    }

    /// The TLS context for `https://` endpoints: `ca_file` (or the system store), and the
    /// client certificate and key when given, loaded and checked to match.
    public static func tlsContext(_ f: FleetSettings) -> Result<TLSClientContext, TLSClientContext.FileProblem> {
        Result { () throws(TLSClientContext.FileProblem) in try TLSClientContext(caFile: f.caFile, certFile: f.certFile, keyFile: f.keyFile) }
    }

    public var connected: Bool { state.withLock { $0.connected } }
    public var appliedRevision: Int64 { state.withLock { $0.applied } }
    /// The lease this instance's keys live on (nil before the first grant): the quorum's
    /// vantage record shares it.
    public var lease: Int64? { state.withLock { $0.lease } }

    public func start() {
        for body in [watchLoop, heartbeatLoop] as [@Sendable () -> Void] {
            done.enter()
            Thread { [done] in body(); done.leave() }.start()
        }
        log.info("fleet: instance \(settings.name), etcd \(settings.endpoints.map(\.description).joined(separator: ", ")), prefix \(settings.prefix)")
    }

    /// Stops both threads and waits for them at most a second (a request in flight to an
    /// unreachable etcd may take its 2 s timeout; the process exits without it).
    public func stop() {
        state.withLock { $0.stopping = true }
        _ = done.wait(timeout: .now() + 1)
    }

    private var stopping: Bool { state.withLock { $0.stopping } }

    private func markConnected() {
        let was = state.withLock { s -> Bool in
            let w = s.connected
            if !w { s.connected = true; s.since = Date().timeIntervalSince1970; s.lastError = nil }
            return w
        }
        if !was { log.notice("fleet: connected to etcd") }
    }

    private func markDisconnected(_ e: EtcdError) {
        let was = state.withLock { s -> Bool in
            let w = s.connected
            s.lastError = e.message
            s.restartWatch = true
            if w { s.connected = false; s.since = Date().timeIntervalSince1970 }
            return w
        }
        if was { log.error("fleet: disconnected: \(e.message); serving the last overrides applied (revision \(appliedRevision))") }
    }

    private func pause(_ seconds: Double) {
        let end = monotonicSeconds() + seconds
        while !stopping && monotonicSeconds() < end { usleep(50_000) }
    }

    // MARK: Watcher

    private func watchLoop() {
        var wasConnected = false
        while !stopping {
            do throws(EtcdError) {
                let (rev, kvs) = try client.range(prefix: overridesPrefix)
                state.withLock { $0.restartWatch = false }
                markConnected()
                if !wasConnected { wasConnected = true }
                apply(kvs, revision: rev)
                try client.watch(prefix: overridesPrefix, startRevision: rev + 1, idle: 3600,
                                 shouldStop: { state.withLock { $0.stopping || $0.restartWatch } },
                                 onEvent: { (_: Int64) throws(EtcdError) in
                                     // The prefix is small: read it whole, so a missed or
                                     // reordered event can never leave a stale override.
                                     let (r, all) = try client.range(prefix: overridesPrefix)
                                     apply(all, revision: r)
                                 })
            } catch {
                markDisconnected(error)
                pause(1)
            }
        }
    }

    /// Makes the monitor's overrides equal to `kvs` (expired ones skipped), saves them to the
    /// state folder, and records `revision` as applied.
    func apply(_ kvs: [EtcdKV], revision: Int64) {
        applyLock.withLock { _ in
            let now = Date().timeIntervalSince1970
            var desired: [String: SavedOverride] = [:]
            for kv in kvs {
                guard let o = try? JSONDecoder().decode(SavedOverride.self, from: Data(kv.value)) else {
                    log.warning("fleet: \(kv.key) is not an override; ignored")
                    continue
                }
                if let e = o.expires, e <= now { continue }
                desired[o.target] = o
            }
            if let model = publisher.config.model, let monitor = publisher.monitor {
                var current: [String: SavedOverride] = [:]
                for o in monitor.overrides() { current[o.target.name(in: model).description] = SavedOverride(o, model: model) }
                for (t, o) in desired.sorted(by: { $0.key < $1.key }) where !FleetAgent.same(current[t], o) {
                    if let problem = o.apply(to: monitor, model: model, now: now) {
                        log.warning("fleet: override \(t) \(o.state) not applied: \(problem)")
                    } else {
                        log.notice("fleet: override \(t) \(o.state) applied (revision \(revision), by \(o.author)): \(logQuoted(o.reason))")
                    }
                }
                for t in current.keys.sorted() where desired[t] == nil {
                    if let name = OverrideTargetName(parsing: t), let target = try? name.resolve(in: model), monitor.clearOverride(target) {
                        log.notice("fleet: override \(t) cleared (revision \(revision))")
                    }
                }
            }
            save()
            state.withLock { $0.applied = max($0.applied, revision) }
        }
        try? register()
    }

    static func same(_ a: SavedOverride?, _ b: SavedOverride) -> Bool {
        guard let a else { return false }
        let closeEnough = { (x: Double?, y: Double?) -> Bool in
            switch (x, y) {
            case (nil, nil): return true
            case let (x?, y?): return abs(x - y) < 0.01
            default: return false
            }
        }
        return a.state == b.state && a.reason == b.reason && a.author == b.author
            && closeEnough(a.created, b.created) && closeEnough(a.expires, b.expires)
    }

    // MARK: Heartbeat

    private func heartbeatLoop() {
        let every = max(0.5, settings.leaseTTL / 3)
        while !stopping {
            do throws(EtcdError) {
                let lease = state.withLock { $0.lease }
                if let l = lease, try client.keepAlive(l) {
                    try register()
                } else {
                    let l = try client.grant(ttl: Int(settings.leaseTTL))
                    state.withLock { $0.lease = l }
                    try register()
                }
                markConnected()
            } catch {
                markDisconnected(error)
            }
            pause(every)
        }
        // A clean stop removes the record at once instead of waiting for the lease.
        _ = try? client.delete(instancesPrefix + settings.name)
    }

    /// Writes this instance's record on its lease (nothing before the first lease).
    private func register() throws(EtcdError) {
        guard let lease = state.withLock({ $0.lease }) else { return }
        let health = publisher.store.load().health
        let count = publisher.config.model?.endpoints.count ?? 0
        let usable = (0..<count).filter { health.state($0).isUsable }.count
        let rec = FleetInstance(name: settings.name, version: MeridianVersion.string, configHash: configHash,
                                appliedRevision: appliedRevision, endpointsUsable: usable, endpoints: count,
                                overrides: publisher.monitor?.overrides().count ?? 0, updated: Date().timeIntervalSince1970,
                                dns: dnsAddresses, control: controlURL)
        let data = (try? JSONEncoder().encode(rec)) ?? Data()
        try client.put(instancesPrefix + settings.name, value: Array(data), lease: lease)
    }

    // MARK: Reads and writes for the control API

    /// The registered instances, by name.
    public func instances() throws(EtcdError) -> [FleetInstance] {
        try client.range(prefix: instancesPrefix).kvs
            .compactMap { try? JSONDecoder().decode(FleetInstance.self, from: Data($0.value)) }
            .sorted { $0.name < $1.name }
    }

    /// Writes `o` for every instance; an expiring override is put on a lease of its own, so
    /// etcd deletes it when it lapses. Returns the revision.
    public func put(_ o: SavedOverride) throws(EtcdError) -> Int64 {
        var lease: Int64?
        if let e = o.expires {
            lease = try client.grant(ttl: max(1, Int((e - Date().timeIntervalSince1970).rounded(.up))))
        }
        let data = (try? JSONEncoder().encode(o)) ?? Data()
        return try client.put(overridesPrefix + o.target, value: Array(data), lease: lease)
    }

    /// Deletes the override on `target`; nil when there was none.
    public func delete(target: String) throws(EtcdError) -> Int64? {
        let (rev, deleted) = try client.delete(overridesPrefix + target)
        return deleted ? rev : nil
    }

    /// Waits until every registered instance has applied `revision`, at most `ackTimeout`.
    public func waitForAcks(_ revision: Int64) -> FleetAck {
        let deadline = monotonicSeconds() + settings.ackTimeout
        var list: [FleetInstance] = []
        while true {
            if let l = try? instances() { list = l }
            let lagging = list.filter { $0.appliedRevision < revision }
            if (lagging.isEmpty && !list.isEmpty) || monotonicSeconds() >= deadline {
                return FleetAck(revision: revision, acknowledged: list.filter { $0.appliedRevision >= revision }.map(\.name),
                                laggards: lagging.map(\.name))
            }
            // Short: the instances apply within milliseconds (Benchmarks/fleet); bounded by the deadline.
            usleep(5_000)
        }
    }

    public func status() -> FleetStatus {
        let s = state.withLock { $0 }
        return FleetStatus(name: settings.name, state: s.connected ? "connected" : "disconnected", prefix: settings.prefix,
                           appliedRevision: s.applied, lastError: s.lastError, since: s.since,
                           instances: s.connected ? (try? instances()) : nil)
    }

    /// FNV-1a 64 of `bytes`, as 16 hex digits (drift detection, not security).
    public static func hash(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
