import CShim
import Config
import Etcd
import DNSSEC
import DNSWire
import Diagnostics
import Foundation
import Health
import Logging
import Platform
import Routing
import Synchronization
import Zones

public enum MeridianVersion {
    public static let string = "0.1.0"
}

/// Where a snapshot is built from: a YAML config, a folder of zone files, or both.
public struct ConfigSources: Sendable {
    public var configPath: String?
    public var zonesDirectory: String?
    /// `serve --state-dir`: wins over `server.state_dir`.
    public var stateDirectory: String?
    /// `serve --allow-transfer`: clients allowed unsigned transfers of every zone, on top
    /// of the configuration's `transfers.allow`.
    public var allowTransfer: [IPPrefix]
    public init(configPath: String?, zonesDirectory: String?, stateDirectory: String? = nil, allowTransfer: [IPPrefix] = []) {
        self.configPath = configPath; self.zonesDirectory = zonesDirectory; self.stateDirectory = stateDirectory
        self.allowTransfer = allowTransfer
    }

    /// Where overrides are saved for `model`: `--state-dir`, else `server.state_dir`, else
    /// the default. Nil for a configuration without endpoints (nothing to override).
    public func stateDirectory(for model: ConfigModel?) -> String? {
        guard let m = model, !m.endpoints.isEmpty else { return nil }
        return stateDirectory ?? m.server.stateDir ?? ServerSettings.defaultStateDir
    }
}

/// What one load produced: a snapshot, or every error found, plus a summary per zone.
public struct LoadOutcome: Sendable {
    public var snapshot: ServingSnapshot?
    public var errors: [String] = []
    public var summaries: [String] = []
    public var listen: [String] = []
    public var workers: Int? = nil
    /// The token and password files' contents, as checked (see `ServerSecrets`).
    public var secrets = ServerSecrets()
}

/// What the `server:` block names by file (the control token, etcd's password and TLS
/// files), read once while loading so that `serve` uses what was checked; `warnings` are the
/// mode warnings `serve` gives at start.
public struct ServerSecrets: Sendable {
    public var controlToken: String?
    public var fleetPassword: String?
    public var fleetTLS: TLSClientContext?
    public var warnings: [String] = []
    public init() {}
}

/// Loading and serving: the one `load` every command and reload uses, and `meridian serve`.
/// The other commands are in Admin.
public enum Runtime {
    /// Server cookie secret for this process: random at start and kept across reloads, so
    /// cookies stay valid through a SIGHUP.
    static let cookieJar: ServerCookies? = {
        var key = [UInt8](repeating: 0, count: 16)
        for i in 0..<16 { key[i] = UInt8.random(in: 0...255) }
        return ServerCookies(secret: key, previous: nil)
    }()

    /// Parses and validates everything, then builds one immutable snapshot. Never partial:
    /// any error means no snapshot.
    /// `reuse` (the server's, across reloads) lets unchanged zones be taken as built before.
    /// `health`: the health when the load runs (a reload's), which GSLB names in the `healthy`
    /// transfer view are written with; nil (the first load) writes them with every endpoint up.
    /// `beforeZones`, when given, is called with the outcome so far (`listen`, `workers`)
    /// once the configuration is read and before any zone file is; returning false ends the
    /// load there, with no snapshot (`serve` binds its sockets at that point).
    public static func load(_ sources: ConfigSources, generation: UInt64, reuse: ZoneReuse? = nil,
                            health: HealthSnapshot? = nil, beforeZones: ((LoadOutcome) -> Bool)? = nil) -> LoadOutcome {
        var out = LoadOutcome()
        var zoneSources: [ZoneLoader.Source] = []
        var options = EngineOptions()
        options.cookies = cookieJar
        var model: ConfigModel?
        var router: Router?
        if let dir = sources.zonesDirectory {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                out.errors.append("\(dir): not a readable folder")
                return out
            }
            // With a configuration, the folder is its zone folder (it lists the files);
            // without one, every file is a zone whose origin comes from its name or $ORIGIN.
            if sources.configPath == nil {
                zoneSources += ZoneLoader.sources(inDirectory: dir)
                if zoneSources.isEmpty { out.errors.append("\(dir): no *.zone files") }
            }
        }
        if let path = sources.configPath {
            do {
                let m = try ConfigLoader.load(path: path, zonesDirectory: sources.zonesDirectory)
                model = m
                router = try Router(model: m)
            } catch {
                out.errors += error.errors.map(\.description)
                return out
            }
        }
        var dynamic: [DNSName: [GSLBBinding]] = [:]
        if let m = model {
            let known = Set(zoneSources.compactMap { $0.origin?.lowercased() })
            for z in m.zones where !known.contains(z.name.lowercased()) {
                zoneSources.append(ZoneLoader.Source(origin: z.name, path: z.file))
            }
            for (i, n) in m.names.enumerated() {
                let types = GSLBTypes(a: n.answersA, aaaa: n.answersAAAA, cname: m.cnameSource(n) != nil)
                dynamic[n.zone.lowercased(), default: []].append(GSLBBinding(owner: n.owner, index: Int32(i), types: types))
            }
            options.maxUDPSize = m.server.maxUDPSize
            options.nsid = m.server.nsid.map { Array($0.utf8) }
            out.listen = m.server.listen
            out.workers = m.server.workers > 0 ? m.server.workers : nil
        }
        if let beforeZones, !beforeZones(out) { return out }
        let keys = signingKeys(model: model, zonesDirectory: sources.configPath == nil ? sources.zonesDirectory : nil)
        out.errors += keys.errors
        var signed: [DNSName: ZoneSigning] = [:]
        var transfers = model?.transfers ?? TransferSettings()
        transfers.allow += sources.allowTransfer.map { TransferClient(prefix: $0) }
        // A zone that secondaries copy and whose transferred content moves without a reload
        // (signed: its signatures are refreshed, `SignedTransfers`; or with GSLB names in the
        // `healthy` view, `HealthSerials`) needs its serial to move, so `keep` cannot work.
        // Left to the default, such a zone is served with `unixtime` (which never goes back
        // across restarts); written as `keep`, it is refused where it was written.
        let moving = Set(keys.zones.keys).union((model?.zones ?? []).map { $0.name.lowercased() }.filter { transfers.followsHealth(zone: $0) })
        for origin in moving.sorted(by: <) where !transfers.allow.isEmpty || !(transfers.zoneAllow[origin] ?? []).isEmpty {
            guard (transfers.zoneSerial[origin] ?? transfers.serial) == .keep else { continue }
            let written = transfers.zoneSerial[origin] != nil ? transfers.zoneSerialLocation[origin] : transfers.serialLocation
            if let at = written {
                let what = keys.zones[origin] != nil ? "is signed and transferred: its transferred signatures are refreshed" : "has GSLB names in the healthy transfer view: secondaries follow health"
                out.errors.append("\(at): transfers serial: keep cannot be used for \(origin), which \(what) by moving the serial; use unixtime or increment")
            } else {
                transfers.zoneSerial[origin] = .unixtime
            }
        }
        let settings = transfers
        // A zone whose served serial may move (transfers.serial) is built again each time:
        // its serial follows content the reuse check does not see (the GSLB static view).
        let serialsMove = transfers.serial != .keep || transfers.zoneSerial.values.contains { $0 != .keep }
        let loaded = ZoneLoader.load(zoneSources, dynamicNames: dynamic, reuse: serialsMove ? nil : reuse,
                                     rebuild: Set(keys.zones.keys),
                                     serial: { zone in
                                         servedSerial(zone, router: router, transfers: settings,
                                                      health: settings.followsHealth(zone: zone.origin.lowercased()) ? health : nil)
                                     }) { origin, records in
            guard let k = keys.zones[origin.lowercased()] else { return .success([]) }
            return zoneSigning(origin, records: records.records, keys: k.keys, times: k.times, location: k.location).map {
                signed[origin.lowercased()] = $0
                return $0.apexRecords
            }
        }
        out.errors += loaded.errors.map(\.description)
        if let m = model {
            out.errors += m.validate(againstStaticOwners: loaded.gslbStatic, cuts: loaded.gslbCuts).map(\.description)
            let server = serverSettings(m)
            out.errors += server.problems
            out.secrets = server.secrets
            out.errors += stateDirectoryProblems(m, sources)
            out.errors += Budgets.rtoErrors(m)
            let served = Set(loaded.zones.map { $0.origin.lowercased() })
            for n in m.names where !served.contains(n.zone.lowercased()) && loaded.errors.isEmpty {
                out.errors.append("\(n.location): \(n.owner) is in zone \(n.zone), which is not served")
            }
        }
        guard out.errors.isEmpty else { return out }
        for z in loaded.zones {
            let ms = loaded.loadMilliseconds[z.origin.lowercased()] ?? 0
            let how = loaded.reused.contains(z.origin.lowercased()) ? "unchanged, reused" : "\(Int(ms.rounded())) ms"
            out.summaries.append("zone \(z.origin): \(z.recordCount) records, \(z.nameCount) names (\(z.file ?? "-"), \(how))")
        }
        for z in loaded.zones {
            guard let zs = signed[z.origin.lowercased()] else { continue }
            let roles = zs.keys.map { "\($0.isKeySigningKey ? "KSK" : "ZSK") \($0.algorithm.rawValue)/\($0.keyTag)" }
            out.summaries.append("zone \(z.origin): signed online (\(roles.joined(separator: ", ")))")
            for ds in zs.dsRecords { out.summaries.append("  \(ds)") }
        }
        if let m = model {
            if let r = router, r.geoMapReport.compiled + r.geoMapReport.reused > 0 { out.summaries.append(r.geoMapReport.description) }
            out.summaries.append("gslb: \(m.names.count) names, \(m.endpoints.count) endpoints, \(m.datacenters.count) datacenters, \(m.checks.count) checks")
        }
        out.errors += Notifier.problems(transfers)
        guard out.errors.isEmpty else { return out }
        var zones = loaded.zones
        if let name = transfers.catalog {
            // The serial follows the member list (the clock when it changes), so a restart never goes back.
            var policy = transfers
            policy.zoneSerial[name] = .unixtime
            do {
                var catalog = try Catalog.zone(named: name, members: zones, serial: 1)
                if let n = servedSerial(catalog, router: nil, transfers: policy, health: nil) {
                    catalog = try Catalog.zone(named: name, members: zones, serial: n)
                }
                zones.append(catalog)
            } catch {
                out.errors += error.errors.map(\.description)
                return out
            }
        }
        let zoneSet = ZoneSet(zones: zones)
        let signing = signed.isEmpty ? nil : SigningSet(zones: zoneSet.zones.map { signed[$0.origin.lowercased()] })
        out.snapshot = ServingSnapshot(zones: zoneSet, options: options,
                                       loadedAt: Date().timeIntervalSince1970, generation: generation,
                                       rateLimiter: rateLimiter(for: model?.server.rrl ?? RRLSettings()),
                                       model: model, router: router, signing: signing, transfers: transfers,
                                       transferHealth: transferHealth(zones: zones, transfers: transfers, health: health))
        return out
    }

    /// The health each zone's `healthy` view is written with at a load.
    static func transferHealth(zones: [Zone], transfers: TransferSettings, health: HealthSnapshot?) -> [DNSName: HealthSnapshot] {
        guard let health else { return [:] }
        var out: [DNSName: HealthSnapshot] = [:]
        for z in zones where transfers.followsHealth(zone: z.origin.lowercased()) { out[z.origin.lowercased()] = health }
        return out
    }

    /// The serial each zone was last loaded with, and a digest of its content without the
    /// serial: `transfers.serial` (`increment`, `unixtime`) moves the serial only when the
    /// content changed. Kept for the process (a restart starts again from the files).
    private static let served = Mutex<[DNSName: (serial: UInt32, digest: UInt64)]>([:])

    /// The serial to serve `zone` with under its `transfers.serial` policy; nil keeps the file's.
    /// `health`: what the zone's GSLB names in the `healthy` transfer view are written with.
    static func servedSerial(_ zone: Zone, router: Router?, transfers: TransferSettings, health: HealthSnapshot?) -> UInt32? {
        let origin = zone.origin.lowercased()
        let policy = transfers.zoneSerial[origin] ?? transfers.serial
        guard policy != .keep else { return nil }
        let epoch = SignedTransfers.epoch(origin)
        let digest = Notifier.contentDigest(zone, router: router, transfers: transfers, serial: false, health: health) ^ (epoch == 0 ? 0 : mix64(epoch))
        let file = zone.serial
        return served.withLock { table in
            var next: UInt32
            if let last = table[origin] {
                if last.digest == digest && !SOAData.greater(file, last.serial) { return last.serial }
                next = last.serial &+ 1
                if policy == .unixtime {
                    let now = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
                    if SOAData.greater(now, next) { next = now }
                }
            } else {
                next = policy == .unixtime ? UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970)) : file
            }
            if SOAData.greater(file, next) { next = file }
            table[origin] = (next, digest)
            return next
        }
    }

    struct ZoneKeys {
        var keys: [DNSSECKey]
        var times: ZoneSigning.Times
        var location: SourceLocation
    }

    /// The key pairs of every signed zone, by lowercase origin: the `keys:` folder of a
    /// zone's `dnssec:` block, or, serving a folder of zone files alone, the key files in
    /// that folder and its `keys/` subfolder (a zone is signed when it has key files).
    static func signingKeys(model: ConfigModel?, zonesDirectory: String?) -> (zones: [DNSName: ZoneKeys], errors: [String]) {
        var zones: [DNSName: ZoneKeys] = [:]
        var errors: [String] = []
        for z in model?.zones ?? [] {
            guard let d = z.dnssec else { continue }
            let found = KeyFiles.load(folder: d.keys, zones: [z.name.lowercased()])
            errors += found.errors.map(\.description)
            var times = ZoneSigning.Times()
            times.validity = d.validity; times.refresh = d.refresh; times.inceptionOffset = d.inceptionOffset
            if found.keys.isEmpty {
                if found.errors.isEmpty {
                    errors.append("\(d.location): zone \(z.name): no key files K\(z.name)+*.key in \(d.keys) (make them with meridian keygen \(z.name) --dir \(d.keys))")
                }
                continue
            }
            zones[z.name.lowercased()] = ZoneKeys(keys: found.keys, times: times, location: d.location)
        }
        if let dir = zonesDirectory {
            for folder in [dir, (dir as NSString).appendingPathComponent("keys")] {
                let found = KeyFiles.load(folder: folder, zones: nil)
                errors += found.errors.map(\.description)
                for k in found.keys {
                    let at = SourceLocation(file: k.keyFile, line: 1, column: 1)
                    zones[k.owner.lowercased(), default: ZoneKeys(keys: [], times: ZoneSigning.Times(), location: at)].keys.append(k)
                }
            }
        }
        return (zones, errors)
    }

    /// How zone `origin` is signed, once its records are read: the SOA TTL is the default
    /// TTL of the DNSKEY RRset, and a signed zone's file must not hold the records signing
    /// makes (DNSKEY, RRSIG, NSEC, CDS, CDNSKEY).
    static func zoneSigning(_ origin: DNSName, records: [ResourceRecord], keys: [DNSSECKey], times: ZoneSigning.Times,
                        location: SourceLocation) -> Result<ZoneSigning, ZoneErrors> {
        var problems: [SourceError] = []
        for k in keys where k.owner.lowercased() != origin.lowercased() {
            problems.append(SourceError(SourceLocation(file: k.keyFile, line: 1, column: 1), "key for \(k.owner) named as a key of zone \(origin)"))
        }
        let made: Set<RRType> = [.dnskey, .rrsig, .nsec, .cds, .cdnskey]
        for r in records where made.contains(r.type) {
            problems.append(SourceError(r.location ?? location, "\(r.type) record in zone \(origin), which Meridian signs online: remove it (signing makes these records)"))
        }
        let soaTTL = records.first { $0.type == .soa }?.ttl ?? 3600
        switch ZoneSigning.make(origin: origin, keys: keys, times: times, soaTTL: soaTTL, now: UInt32(time(nil)), location: location) {
        case .success(let zs) where problems.isEmpty: return .success(zs)
        case .success: return .failure(ZoneErrors(problems))
        case .failure(let e): return .failure(ZoneErrors(problems + [e]))
        }
    }

    /// What `serve` refuses at start in the `server:` block, checked while loading so that
    /// `meridian check` refuses it too: listen addresses, the control address and its token
    /// rule, the token file, and (when running as root, as `serve` would switch) the user and
    /// group. Each error carries the file:line:column of its key.
    /// The secret files are read here, once: `serve` uses `secrets` instead of reading them again.
    static func serverSettings(_ m: ConfigModel) -> (problems: [String], secrets: ServerSecrets) {
        let s = m.server
        var out: [String] = []
        var secrets = ServerSecrets()
        func at(_ key: String) -> String { (s.locations[key]?.description ?? m.file) + ": " }
        for l in s.listen {
            do { _ = try ListenAddress(l) } catch { out.append(at("listen") + "server.listen: \(error)") }
        }
        secrets.controlToken = s.controlToken
        if secrets.controlToken == nil, let f = s.controlTokenFile {
            do {
                let (token, warning) = try ControlTokenFile.load(f)
                secrets.controlToken = token
                secrets.warnings += warning.map { [$0] } ?? []
            } catch { out.append(at("control_token_file") + error.message) }
        }
        // An unreadable token file is reported above; the bind rule is then not checked twice.
        if let c = s.control, secrets.controlToken != nil || s.controlTokenFile == nil {
            do { _ = try ControlAPI.bindAddress(c, token: secrets.controlToken) } catch { out.append(at("control") + error.message) }
        }
        if let f = s.fleet, let pw = f.passwordFile {
            do {
                let (password, warning) = try ControlTokenFile.load(pw, key: "fleet.password_file")
                secrets.fleetPassword = password
                secrets.warnings += warning.map { [$0] } ?? []
            } catch {
                out.append((f.locations["password_file"]?.description ?? m.file) + ": " + error.message)
            }
        }
        if let f = s.fleet, f.usesTLS {
            switch FleetAgent.tlsContext(f) {
            case .success(let c): secrets.fleetTLS = c
            case .failure(let e): out.append((f.locations[e.key]?.description ?? m.file) + ": fleet.\(e.key): " + e.message)
            }
        }
        if geteuid() == 0 {
            if let u = s.user, Privileges.lookup(user: u) == nil { out.append(at("user") + Privileges.noSuchUser(u)) }
            if let g = s.group, Privileges.lookup(group: g) == nil { out.append(at("group") + Privileges.noSuchGroup(g)) }
        }
        return (out, secrets)
    }

    /// The state folder must be usable, checked at load so `meridian check` refuses what
    /// `serve` would: the error points at `server.state_dir` when the file sets it.
    static func stateDirectoryProblems(_ m: ConfigModel, _ sources: ConfigSources) -> [String] {
        guard let dir = sources.stateDirectory(for: m), let problem = OverrideFile.directoryProblem(dir) else { return [] }
        let why = "overrides are saved there so that they survive a restart"
        if sources.stateDirectory != nil { return ["--state-dir: \(problem): \(why)"] }
        if let at = m.server.locations["state_dir"] { return ["\(at): server.state_dir: \(problem): \(why)"] }
        return ["\(m.file): server.state_dir (default \(ServerSettings.defaultStateDir)): \(problem): \(why); set server.state_dir or pass --state-dir"]
    }

    /// The process's rate limiter: kept across reloads while its settings stay the same, so
    /// a reload does not reset an attacker's budget.
    private static let limiter = Mutex<ResponseRateLimiter?>(nil)

    static func rateLimiter(for settings: RRLSettings) -> ResponseRateLimiter? {
        guard settings.rate > 0 else { return nil }
        return limiter.withLock { current in
            if let c = current, c.settings == settings { return c }
            let fresh = ResponseRateLimiter(settings: settings)
            current = fresh
            return fresh
        }
    }

    /// The process's dnstap writer: kept across reloads while its settings stay the same
    /// (the connection and the rings stay); replaced, and the old one stopped, when they change.
    private static let dnstapSink = Mutex<DnstapSink?>(nil)

    static func dnstap(for settings: DnstapSettings?, model: ConfigModel?, log: Logger) -> DnstapSink? {
        let (sink, retired) = dnstapSink.withLock { current -> (DnstapSink?, DnstapSink?) in
            if current?.settings == settings { return (current, nil) }
            let old = current
            var fresh: DnstapSink?
            if let settings {
                let s = DnstapSink(settings: settings, logger: Logger(label: "meridian.dnstap"))
                do { try s.start(); fresh = s } catch { log.error("dnstap: cannot start the writer: \(error); queries are not logged") }
            }
            current = fresh
            return (fresh, old)
        }
        if let retired { Thread { retired.stop() }.start() }
        sink?.adopt(model: model)
        return sink
    }

    /// Stops the dnstap writer: what the workers queued is written, then STOP.
    static func stopDnstap() {
        let s = dnstapSink.withLock { current -> DnstapSink? in
            defer { current = nil }
            return current
        }
        s?.stop()
    }

    /// Why `serve` does not start, once the sockets are bound (logged as critical; exit 1).
    struct StartFailure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    /// `meridian serve`: loads, binds, answers until SIGTERM/SIGINT; SIGHUP reloads.
    public static func serve(sources: ConfigSources, listen: [String], workers: Int?, logLevel: Logger.Level,
                             control controlOption: String? = nil, fleetName: String? = nil) -> Int32 {
        // One malloc arena, before any other thread starts (see cshim_limit_malloc_arenas).
        _ = cshim_limit_malloc_arenas(1)
        // Large load-time arrays in their own mappings, freed to the system (see the C side).
        _ = cshim_fix_mmap_threshold(1 << 20)
        bootstrapLogging(logLevel)
        let log = Logger(label: "meridian")
        let started = Date()
        let zoneReuse = ZoneReuse()
        let metrics = QueryMetrics()
        // The workers take the store once they start, after the first publish.
        let storeSlot = Mutex<SnapshotStore?>(nil)
        // The DNS sockets are bound as soon as the configuration says where (before the
        // zones load, which can take seconds): a query that arrives meanwhile waits in the
        // socket's queue and is answered when the workers start, instead of being refused
        // by the kernel, and a port already in use stops the start before the zones load.
        var server: DNSServer?
        var addresses: [ListenAddress] = []
        var startProblem: (message: String, status: Int32)?
        let first = load(sources, generation: 0, reuse: zoneReuse) { sofar in
            // --listen wins over server.listen, which wins over every address on port 53.
            let listenText = !listen.isEmpty ? listen : (!sofar.listen.isEmpty ? sofar.listen : ["0.0.0.0:53", "[::]:53"])
            do { addresses = try listenText.map { try ListenAddress($0) } } catch {
                startProblem = ("\(error)", 2)
                return false
            }
            let s = DNSServer(listen: addresses, workers: workers ?? sofar.workers ?? 0,
                              responderFactory: {
                                  guard let store = storeSlot.withLock({ $0 }) else { preconditionFailure("workers started before the first publish") }
                                  return AuthoritativeResponder(store: store, metrics: metrics)
                              },
                              logger: Logger(label: "meridian.server"))
            // Root may be needed for port 53; privileges are dropped later, before any check runs.
            do { try s.bind() } catch {
                startProblem = ("cannot listen: \(error)", 1)
                return false
            }
            server = s
            return true
        }
        // The load's transients (file bytes, parser batches, groupings) are freed by now.
        _ = cshim_malloc_trim()
        if let (message, status) = startProblem {
            log.critical("\(message)")
            return status
        }
        guard let loaded = first.snapshot, let server else {
            for e in first.errors { log.error("\(e)") }
            log.critical("not starting: \(first.errors.count) error(s) in the configuration")
            return 1
        }
        for s in first.summaries { log.info("loaded \(s)") }
        let publisher = Publisher(loaded)
        let store = publisher.store
        storeSlot.withLock { $0 = store }
        // Order: bind (above), drop privileges, then the first round of health checks (so no
        // check ever runs as root when server.user is set), then answer.
        let reloads = ReloadStats()
        reloads.recordSuccess(at: Date().timeIntervalSince1970)
        let settings = loaded.model?.server
        for w in first.secrets.warnings { log.warning("\(w)") }
        var api: ControlAPI?
        var monitor: HealthMonitor?
        let snapshot: ServingSnapshot, control: ControlContext, fleet: FleetAgent?, quorum: QuorumAgent?
        do throws(StartFailure) {
            // The state folder is fixed for the life of the process (a reload does not move it).
            let (overrideFile, saved) = try openStateFolder(sources.stateDirectory(for: loaded.model), settings: settings)
            fleet = settings?.fleet.map {
                startFleet($0, name: fleetName, secrets: first.secrets, sources: sources, publisher: publisher, overrideFile: overrideFile,
                           dns: addresses.map(\.description), control: controlOption ?? settings?.control)
            }
            quorum = fleet.map { QuorumAgent(fleet: $0, publisher: publisher, log: Logger(label: "meridian.quorum")) }
            control = ControlContext(publisher: publisher, reloads: reloads, sources: sources,
                                     startedAt: started.timeIntervalSince1970, metrics: metrics,
                                     overrideFile: overrideFile, fleet: fleet, quorum: quorum, counters: { server.counters })
            do { api = try startControl(controlOption ?? settings?.control, token: first.secrets.controlToken, context: control, log: log) } catch {
                throw StartFailure("not starting: control API: \(error)")
            }
            try dropPrivileges(settings, log: log)
            // The dnstap writer opens its file or socket with the privileges the server keeps.
            snapshot = loaded.with(dnstap: dnstap(for: settings?.dnstap, model: loaded.model, log: log))
            if let why = ExecChildren.enableOrphanReaping(logger: Logger(label: "meridian.health")) {
                log.warning("exec checks: orphans of checks will not be reaped: \(why)")
            }
            // gdnsd's habit: one round of checks before answering, bounded, so the first
            // answers already reflect health.
            do {
                monitor = try startHealth(for: snapshot, previous: nil, publisher: publisher,
                                          logger: Logger(label: "meridian.health"), initialRoundTimeout: 5)
            } catch { throw StartFailure("health checks: \(error)") }
            if let m = monitor, let model = snapshot.model { restore(saved, into: m, model: model, log: log) }
            publisher.publish(config: snapshot, monitor: monitor)
            SignedTransfers.prepare(snapshot)
            do { try server.start() } catch { throw StartFailure("cannot listen: \(error)") }
        } catch {
            log.critical("\(error.message)")
            api?.stop()
            monitor?.stop()
            server.stop()
            stopDnstap()
            return 1
        }
        let ms = Int(Date().timeIntervalSince(started) * 1000)
        let bound = server.boundAddresses.map(\.description).joined(separator: ", ")
        log.info("meridian \(MeridianVersion.string) started in \(ms) ms: listening on \(bound) (udp+tcp), \(server.workers) workers")

        // Secondaries may hold an older copy than the one just loaded (RFC 1996 4.7).
        Notifier.reloaded(old: nil, new: snapshot, log: Logger(label: "meridian.notify"))
        // After the first publish: the first answers come from the saved overrides, whether
        // or not etcd answers.
        fleet?.start()
        quorum?.start()
        let reloader = makeReloader(sources: sources, publisher: publisher, reloads: reloads, reuse: zoneReuse, log: log,
                                    afterReload: { control.saveOverrides(log: log) })
        reloader.start()
        startSignatureRefresh(publisher: publisher, log: Logger(label: "meridian.notify"))
        // Ready for a service manager: every thread blocks the handled signals and the next
        // statement takes them, so a SIGHUP from now on is a reload (systemd sends
        // ExecReload only after this with Type=notify).
        ServiceNotify.ready(status: "answering on \(bound)")
        return takeSignals(server: server, api: api, fleet: fleet, quorum: quorum, publisher: publisher, reloader: reloader, log: log)
    }

    /// Log lines to standard error at `level`, for every logger of the process.
    static func bootstrapLogging(_ level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }

    /// The state folder (nil: none), prepared for `server.user`/`group`, and the overrides
    /// saved there.
    static func openStateFolder(_ dir: String?, settings: ServerSettings?) throws(StartFailure) -> (OverrideFile?, [SavedOverride]) {
        guard let dir else { return (nil, []) }
        let file = OverrideFile(directory: dir)
        do {
            try OverrideFile.prepare(dir, user: settings?.user, group: settings?.group)
            return (file, try file.load())
        } catch {
            throw StartFailure("not starting: state folder: \(error)")
        }
    }

    /// `server.user` and `server.group`, after binding and before any check runs.
    static func dropPrivileges(_ settings: ServerSettings?, log: Logger) throws(StartFailure) {
        if let error = Privileges.drop(user: settings?.user, group: settings?.group) {
            throw StartFailure("not starting: \(error)")
        }
        if settings?.user != nil || settings?.group != nil {
            log.info("running as uid \(getuid()) gid \(getgid())\(getuid() == 0 ? " (server.user/group apply only when started as root)" : "")")
        }
    }

    /// Once a second, the signed transfer views whose signatures reached their refresh
    /// point: their zones' signature epoch moves and their serials with it, and the NOTIFY
    /// goes out (`SignedTransfers`, `Reserial`). Runs for the life of the process.
    static func startSignatureRefresh(publisher: Publisher, log: Logger) {
        Thread {
            while true {
                Thread.sleep(forTimeInterval: 1)
                let now = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
                let due = SignedTransfers.due(snapshot: publisher.store.load(), now: now)
                guard !due.isEmpty else { continue }
                for d in due {
                    log.info("transferred signatures due for refresh: re-signing with a new serial",
                             metadata: ["zone": "\(d.zone)", "serial": "\(d.serial)", "signed_at": "\(d.view.builtAt)"])
                }
                Reserial.apply(publisher, zones: Set(due.map(\.zone)), why: "transferred signatures refreshed")
            }
        }.start()
    }

    /// Puts the saved overrides back before the first query is answered. Expired ones stay
    /// expired; one whose endpoint or datacenter left the configuration is dropped with a warning.
    static func restore(_ saved: [SavedOverride], into monitor: HealthMonitor, model: ConfigModel, log: Logger) {
        let now = Date().timeIntervalSince1970
        for o in saved {
            if let e = o.expires, e <= now {
                log.info("saved override \(o.target) \(o.state) expired while stopped; not restored")
                continue
            }
            if let problem = o.apply(to: monitor, model: model, now: now) {
                log.warning("saved override \(o.target) \(o.state) dropped: \(problem)")
                continue
            }
            let until = o.expires.map { " until \(Date(timeIntervalSince1970: $0))" } ?? ""
            log.notice("restored override \(o.target) \(o.state)\(until) (set by \(o.author.isEmpty ? "-" : o.author)): \(logQuoted(o.reason))")
        }
    }

    /// The control API on `listen` (nil: off), with the token the loader read.
    static func startControl(_ listen: String?, token: String?, context: ControlContext, log: Logger) throws -> ControlAPI? {
        guard let listen else { return nil }
        let a = try ControlAPI(listen: listen, token: token, context: context, logger: Logger(label: "meridian.control"))
        try a.start()
        log.info("control API on http://\(a.boundAddress)\(token != nil ? " (bearer token required)" : "")")
        return a
    }

    /// The fleet agent (`fleet:`), with etcd's password and TLS context as the loader read
    /// them; `name` is `--fleet-name`. It starts talking to etcd at `start()`.
    static func startFleet(_ settings: FleetSettings, name: String?, secrets: ServerSecrets, sources: ConfigSources, publisher: Publisher,
                           overrideFile: OverrideFile?, dns: [String], control: String?) -> FleetAgent {
        var f = settings
        if let name { f.name = name }
        let bytes = sources.configPath.flatMap { try? InputFile.read($0, limit: InputLimits.configFileBytes) } ?? []
        let fleetLog = Logger(label: "meridian.fleet")
        let credentials = f.username.flatMap { u in secrets.fleetPassword.map { EtcdCredentials(user: u, password: $0) } }
        return FleetAgent(settings: f, credentials: credentials, tls: secrets.fleetTLS, publisher: publisher, save: {
            if let e = overrideFile?.saveCurrent(of: publisher) {
                fleetLog.error("overrides not saved to \(overrideFile?.path ?? "-"): \(e); a restart during an etcd outage would lose them")
            }
        }, configHash: FleetAgent.hash(bytes), log: fleetLog, dns: dns, controlURL: control.map { "http://" + $0 })
    }

    /// The signal loop of a started server; returns the exit status. This thread only takes
    /// signals: every reload runs on the reloader's threads, so SIGTERM is handled at once
    /// even while a reload is blocked.
    static func takeSignals(server: DNSServer, api: ControlAPI?, fleet: FleetAgent? = nil, quorum: QuorumAgent? = nil, publisher: Publisher,
                            reloader: Reloader<(LoadOutcome, Date)>, log: Logger) -> Int32 {
        while true {
            let sig = Signals.wait()
            switch sig {
            case SIGHUP:
                reloader.request()
            case SIGUSR1:
                let c = server.counters
                log.info("status: udp received \(c.udpReceived) sent \(c.udpSent); tcp open \(c.tcpOpen) accepted \(c.tcpAccepted)")
                logHealth(publisher, log)
            default:
                ServiceNotify.stopping()
                log.info("\(Signals.name(sig)) received, stopping")
                reloader.stop()
                ExecChildren.terminateAll()
                publisher.monitor?.stopWithoutWaiting()
                quorum?.stop()
                fleet?.stop()
                api?.stop()
                server.stop()
                stopDnstap()
                log.info("stopped")
                return 0
            }
        }
    }

    /// The reload path: load on the reloader's worker thread, then swap in the snapshot and
    /// hand health state over to a new monitor (the old one is joined on a thread of its own,
    /// since a check in flight may take up to its timeout).
    static func makeReloader(sources: ConfigSources, publisher: Publisher, reloads: ReloadStats, reuse: ZoneReuse,
                             log: Logger, afterReload: @escaping @Sendable () -> Void = {}) -> Reloader<(LoadOutcome, Date)> {
        let deadline = ProcessBounds.reloadDeadline
        return Reloader<(LoadOutcome, Date)>(
            deadline: deadline, maxAbandoned: ProcessBounds.maxAbandonedReloads,
            load: { gen in
                ServiceNotify.reloading()
                log.info("reload \(gen) started")
                let t0 = Date()
                return (load(sources, generation: gen, reuse: reuse, health: publisher.store.load().health), t0)
            },
            apply: { loaded, gen in
                let (next, t0) = loaded
                defer { ServiceNotify.ready(status: "reload \(gen) \(reloads.lastErrors.isEmpty ? "ok" : "failed; serving the previous configuration")") }
                guard let built = next.snapshot else {
                    for e in next.errors { log.error("\(e)") }
                    log.error("reload failed with \(next.errors.count) error(s); still serving the previous configuration")
                    reloads.recordFailure(at: Date().timeIntervalSince1970, errors: next.errors)
                    return
                }
                let previous = publisher.store.load()
                do {
                    let old = publisher.monitor
                    let fresh = try startHealth(for: built, previous: old, publisher: publisher,
                                                logger: Logger(label: "meridian.health"), initialRoundTimeout: nil)
                    // The dnstap writer changes only with a reload that is applied.
                    let s = built.with(dnstap: dnstap(for: built.model?.server.dnstap, model: built.model, log: log))
                    publisher.publish(config: s, monitor: fresh)
                    SignedTransfers.prepare(s)
                    Thread {
                        old?.stop()
                        returnFreedMemory()
                    }.start()
                } catch {
                    log.error("reload failed: health checks: \(error); still serving the previous configuration")
                    reloads.recordFailure(at: Date().timeIntervalSince1970, errors: ["health checks: \(error)"])
                    return
                }
                reloads.recordSuccess(at: Date().timeIntervalSince1970)
                // Endpoint overrides follow names; a renamed or removed endpoint changes the list.
                afterReload()
                let ms = Int(Date().timeIntervalSince(t0) * 1000)
                log.info("reload ok in \(ms) ms: \(next.summaries.joined(separator: "; "))")
                // The journal compares every record of a changed zone: background work.
                ThreadPriority.idle { TransferJournal.shared.record(old: previous, new: built) }
                Notifier.reloaded(old: previous, new: built, log: Logger(label: "meridian.notify"))
            },
            onTimeout: { gen in
                let why = "reload \(gen) abandoned: not finished after \(Int(deadline)) s; still serving the previous configuration"
                log.error("reload failed: \(why)")
                reloads.recordFailure(at: Date().timeIntervalSince1970, errors: [why])
                ServiceNotify.ready(status: why)
            },
            onRefused: { n in
                let why = "reload refused: \(n) abandoned reloads are still blocked (limit \(ProcessBounds.maxAbandonedReloads)); still serving the previous configuration"
                log.error("reload failed: \(why)")
                reloads.recordFailure(at: Date().timeIntervalSince1970, errors: [why])
            },
            onLate: { gen in log.warning("abandoned reload \(gen) finished late; its result was discarded") })
    }

    /// After a reload: once every worker has let go of the old snapshot (each refreshes
    /// within a second, `TCPWorker.refreshInterval`), hands the memory freed by the load and
    /// by the old snapshot back to the system. glibc keeps freed memory in the arena of the
    /// thread that allocated it, and every reload parses on a fresh thread, so without this
    /// resident memory grew over the first reloads (49 to 102 MB at 10,000 names).
    static func returnFreedMemory() {
        Thread.sleep(forTimeInterval: 1.5)
        _ = ThreadPriority.idle { cshim_malloc_trim() }
    }

    /// One line per endpoint (state, check, override) and per override, for SIGUSR1.
    static func logHealth(_ publisher: Publisher, _ log: Logger) {
        guard let model = publisher.config.model else { return }
        guard let monitor = publisher.monitor else {
            log.info("health: no endpoints configured")
            return
        }
        if monitor.specs.isEmpty { log.info("health: no checks configured; endpoints are up unless overridden") }
        if monitor.overrides().isEmpty { log.info("override: none") }
        for e in monitor.endpointStatus() where e.endpoint < model.endpoints.count {
            let o = e.override.map { " override \($0.state) (\(logQuoted($0.reason)))" } ?? ""
            log.info("health: \(model.endpoints[e.endpoint].name) \(e.effective) (check \(e.check ?? "-"): \(e.checked))\(o)")
        }
        for o in monitor.overrides() {
            let expiry = o.expiresAt.map { " expires \(Date(timeIntervalSince1970: $0))" } ?? " until cleared"
            log.info("override: \(o.target.name(in: model)) \(stateText(o.state)) reason \(logQuoted(o.reason))\(expiry)")
        }
    }
}
