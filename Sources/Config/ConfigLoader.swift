import DNSWire
import Foundation
import Yams
import Diagnostics
import Platform

/// Loads and validates `meridian.yaml` (schema in docs/configuration.md).
///
///     do {
///         let model = try ConfigLoader.load(path: "zones/meridian.yaml")
///         print(model.names.count)
///     } catch {
///         print(error)   // every error, one `file:line:column: message` per line
///     }
///
/// Loading never stops at the first error: it checks everything it can and throws all of them.
public enum ConfigLoader {
    /// The top-level keys of a configuration file, in the order errors list them (the
    /// documentation test sorts ```yaml blocks into configurations and other text by them).
    public static let sections = ["server", "defaults", "zones", "zones_dir", "geo", "datacenters", "endpoints", "checks", "pools", "fleet", "transfers"]

    /// `zonesDirectory` (the command line's `--zones`) takes the place of the file's
    /// `zones_dir`: every `*.zone` file there is served, and zones the file lists without
    /// `file:` are found there.
    public static func load(path: String, zonesDirectory: String? = nil) throws(ConfigErrors) -> ConfigModel {
        let text: String
        do {
            text = try InputFile.readText(path, limit: InputLimits.configFileBytes)
        } catch {
            throw ConfigErrors([ConfigError(SourceLocation(file: path, line: 1, column: 1), "cannot read configuration file: \(error.reason)")])
        }
        let base = (path as NSString).deletingLastPathComponent
        return try load(yaml: text, file: path, baseDirectory: base.isEmpty ? "." : base, zonesDirectory: zonesDirectory)
    }

    /// Loads from text; relative paths in it resolve against `baseDirectory`.
    public static func load(yaml: String, file: String, baseDirectory: String, zonesDirectory: String? = nil) throws(ConfigErrors) -> ConfigModel {
        // Before Yams composes anything: an aliased key or an alias bomb would spin or eat memory there.
        if let e = YAMLShape.check(yaml, file: file) { throw ConfigErrors([e]) }
        let root: Node?
        do {
            // No implicit tags: the reader takes every scalar as text and parses numbers,
            // booleans and durations itself. With Yams's default resolver, hashing each
            // mapping key for its duplicate check ran a dozen regular expressions per key:
            // 40% of loading a 100,000-name config.
            root = try Yams.compose(yaml: yaml, .basic)
        } catch let e as YamlError {
            throw ConfigErrors([yamlError(e, file: file, text: yaml)])
        } catch {
            throw ConfigErrors([ConfigError(SourceLocation(file: file, line: 1, column: 1), "\(error)")])
        }
        let b = Builder(file: file, base: baseDirectory)
        b.zonesDirectory = zonesDirectory
        guard let root else {
            throw ConfigErrors([ConfigError(SourceLocation(file: file, line: 1, column: 1), "empty configuration")])
        }
        let model = b.build(root)
        if !b.r.errors.isEmpty || model == nil {
            let sorted = b.r.errors.sorted { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }
            throw ConfigErrors(sorted)
        }
        return model!
    }

    static func yamlError(_ e: YamlError, file: String, text: String) -> ConfigError {
        func at(_ m: Mark) -> SourceLocation { SourceLocation(file: file, line: m.line, column: m.column) }
        switch e {
        case .scanner(_, let problem, let m, _), .parser(_, let problem, let m, _), .composer(_, let problem, let m, _):
            return ConfigError(at(m), "YAML syntax: \(problem)")
        case .duplicatedKeysInMapping(let dups, let ctx):
            // Yams marks the first occurrence; the editor wants the repeated one: later on the
            // same line (flow style), else the next line holding the key at the same column.
            var mark = at(ctx.mark)
            if let key = dups.first {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.unicodeScalars) }
                let col = ctx.mark.column - 1
                let patterns = [key + ":", "\"\(key)\":", "'\(key)':"].map { Array($0.unicodeScalars) }
                func keyAt(_ l: [Unicode.Scalar], _ c: Int) -> Bool {
                    c >= 0 && patterns.contains { p in c + p.count <= l.count && Array(l[c..<(c + p.count)]) == p }
                }
                let first = ctx.mark.line - 1
                var found = false
                if first < lines.count {
                    let l = lines[first]
                    // Marks come from the YAML library: never trust them to fit the line
                    // (an empty key at column 0 indexed l[-2]; found by FuzzConfig).
                    var c = max(1, col + key.unicodeScalars.count)
                    while c < l.count && !found {
                        let boundary = l[c - 1] == " " || l[c - 1] == "{" || l[c - 1] == ","
                        if boundary && keyAt(l, c) { mark = SourceLocation(file: file, line: first + 1, column: c + 1); found = true }
                        c += 1
                    }
                }
                var i = first + 1
                while !found && i < lines.count {
                    if keyAt(lines[i], col) { mark = SourceLocation(file: file, line: i + 1, column: col + 1); found = true }
                    i += 1
                }
            }
            return ConfigError(mark, "duplicate key \(dups.map { "\"\($0)\"" }.joined(separator: ", "))")
        default:
            return ConfigError(SourceLocation(file: file, line: 1, column: 1), "YAML: \(e)")
        }
    }
}

/// The continent codes MaxMind uses; in `geo` keys these two letters mean the continent.
let continentCodes: Set<String> = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"]

/// Children per policy node are limited so the evaluator can track them in one 64-bit mask.
let maxChildren = 64
/// `geo` and `subnet` look keys up rather than track them in a mask; this only bounds load time.
let maxRules = 100_000
/// Policy trees deeper than this are almost certainly a mistake and would cost stack per query.
let maxDepth = 16

final class Builder {
    let r: YAMLReader
    let base: String
    var server = ServerSettings()
    var datacenters: [Datacenter] = []
    var endpoints: [Endpoint] = []
    var pools: [Pool] = []
    var checks: [CheckSpec] = []
    var geo = GeoSources()
    var zones: [ZoneSource] = []
    var nodes: [PolicyNode] = []
    var names: [GSLBName] = []
    // Lookups by name, filled as each section is read (the first definition wins, as a
    // scan in file order would find it), so loading stays linear in what the file holds.
    var datacenterIndex: [String: Int] = [:]
    var endpointIndex: [String: Int] = [:]
    var poolIndex: [String: Int] = [:]
    var checkIndex: [String: Int] = [:]
    /// Per datacenter, its endpoints in file order (filled once `endpoints:` is read, present
    /// or not).
    var datacenterEndpoints: [[Int]] = []
    /// GSLB owner (lowercase) to its index in `names`.
    var nameIndex: [DNSName: Int] = [:]
    /// The `watch: true` value of each check that has one, by check index (for the cap's error).
    var watchNodes: [(check: Int, node: Node)] = []
    var defaultTTL: UInt32 = 30
    /// `defaults.ttl_when_failing`; each name takes the smaller of it and its own `ttl`.
    var defaultTTLWhenFailing: UInt32?
    var defaultA = true, defaultAAAA = true
    /// Each datacenter's `min_healthy` value, checked against its endpoint count once the
    /// endpoints are read.
    var datacenterMinimums: [(dc: Int, node: Node)] = []
    /// `transfers:`, and where it names zones and GSLB names (checked once those are read).
    var transfers = TransferSettings()
    var transferZoneRefs: [(DNSName, Node)] = []
    var transferNameRefs: [(DNSName, Node)] = []
    var catalogRef: Node?

    /// The command line's zone folder, which replaces `zones_dir`.
    var zonesDirectory: String?
    init(file: String, base: String) { r = YAMLReader(file: file); self.base = base }

    func path(_ p: String) -> String { p.hasPrefix("/") ? p : base + "/" + p }

    func build(_ root: Node) -> ConfigModel? {
        guard let top = r.mapping(root, "configuration") else { return nil }
        r.checkKeys(top, allowed: ConfigLoader.sections, "the top level")
        func section(_ k: String) -> Node? { top.first { $0.key == k }?.value }
        if let n = section("server") { parseServer(n) }
        if let n = section("fleet") { parseFleet(n) }
        if let n = section("defaults") { parseDefaults(n) }
        if let n = section("datacenters") { parseDatacenters(n) }
        if let n = section("checks") { parseChecks(n) }
        if let n = section("endpoints") { parseEndpoints(n) }
        // Also without an `endpoints:` section: datacenters are then empty, not missing.
        datacenterEndpoints = Array(repeating: [], count: datacenters.count)
        for (i, ep) in endpoints.enumerated() { if let d = ep.datacenter { datacenterEndpoints[d].append(i) } }
        checkDatacenterMinimums()
        if let n = section("pools") { parsePools(n) }
        if let n = section("geo") { parseGeo(n) }
        parseZones(section("zones"), dir: section("zones_dir"))
        if let n = section("transfers") { parseTransfers(n); checkTransferReferences() }
        guard r.errors.isEmpty else { return nil }
        let model = ConfigModel(file: r.file, server: server, zones: zones, geo: geo, datacenters: datacenters,
                                endpoints: endpoints, pools: pools, checks: checks, nodes: nodes, names: names,
                                transfers: transfers)
        checkWatchedConnections(model)
        return r.errors.isEmpty ? model : nil
    }

    // MARK: server and defaults

    func parseServer(_ node: Node) {
        guard let m = r.mapping(node, "server") else { return }
        r.checkKeys(m, allowed: ["listen", "workers", "max_udp_size", "nsid", "control", "control_token", "control_token_file", "user", "group", "rrl", "dnstap", "state_dir"], "server")
        for e in m {
            server.locations[e.key] = r.loc(e.value)
            switch e.key {
            case "listen": if let l = r.strings(e.value, "server.listen") { server.listen = l.map(\.0) }
            case "workers": if let v = r.int(e.value, "server.workers", 0...1024) { server.workers = v }
            case "max_udp_size": if let v = r.int(e.value, "server.max_udp_size", 512...65535) { server.maxUDPSize = v }
            case "nsid": server.nsid = r.string(e.value, "server.nsid")
            case "control": server.control = r.string(e.value, "server.control")
            case "control_token": server.controlToken = r.string(e.value, "server.control_token")
            case "control_token_file": server.controlTokenFile = r.string(e.value, "server.control_token_file").map(path)
            case "user": server.user = r.string(e.value, "server.user")
            case "group": server.group = r.string(e.value, "server.group")
            case "rrl": parseRRL(e.value)
            case "dnstap": parseDnstap(e.value)
            case "state_dir": server.stateDir = r.string(e.value, "server.state_dir").map(path)
            default: break
            }
        }
    }

    /// `fleet:`: the etcd cluster every instance shares its overrides through.
    func parseFleet(_ node: Node) {
        guard let m = r.mapping(node, "fleet") else { return }
        r.checkKeys(m, allowed: ["etcd", "prefix", "name", "lease_ttl", "ack_timeout", "username", "password_file", "quorum_fallback", "ca_file", "cert_file", "key_file"], "fleet")
        var f = FleetSettings(location: r.loc(node))
        for e in m {
            f.locations[e.key] = r.loc(e.value)
            switch e.key {
            case "username": f.username = r.string(e.value, "fleet.username")
            case "password_file": f.passwordFile = r.string(e.value, "fleet.password_file").map(path)
            case "ca_file", "cert_file", "key_file":
                guard let v = r.string(e.value, "fleet.\(e.key)") else { break }
                let full = path(v)
                let problem = e.key == "ca_file" ? caFileProblem(full) : pemFileProblem(full, what: e.key == "cert_file" ? "certificate file" : "key file")
                if let problem { r.error(e.value, "fleet.\(e.key): \(problem): \(full)"); break }
                switch e.key {
                case "ca_file": f.caFile = full
                case "cert_file": f.certFile = full
                default: f.keyFile = full
                }
            case "etcd":
                guard let list = r.strings(e.value, "fleet.etcd") else { break }
                for (text, n) in list {
                    if let ep = FleetSettings.parseEndpoint(text) { f.endpoints.append(ep) } else {
                        r.error(n, "fleet.etcd: \"\(text)\" is not http://HOST:PORT or https://HOST:PORT")
                    }
                }
                if f.endpoints.contains(where: \.tls) && f.endpoints.contains(where: { !$0.tls }) {
                    r.error(e.value, "fleet.etcd: mixes http:// and https:// endpoints; one cluster is reached one way")
                }
            case "prefix":
                guard let v = r.string(e.value, "fleet.prefix") else { break }
                if v.isEmpty || !v.hasPrefix("/") || !v.hasSuffix("/") || v.utf8.count > 256 {
                    r.error(e.value, "fleet.prefix: \"\(v)\" must start and end with / (e.g. /meridian/), at most 256 bytes")
                } else { f.prefix = v }
            case "name":
                guard let v = r.string(e.value, "fleet.name") else { break }
                if let problem = FleetSettings.nameProblem(v) { r.error(e.value, "fleet.name: \(problem)") } else { f.name = v }
            case "lease_ttl":
                if let v = r.duration(e.value, "fleet.lease_ttl") {
                    if v >= 2 && v <= 300 { f.leaseTTL = v.rounded(.up) } else { r.error(e.value, "fleet.lease_ttl: expected 2s to 5m") }
                }
            case "ack_timeout":
                if let v = r.duration(e.value, "fleet.ack_timeout") {
                    if v > 0 && v <= 300 { f.ackTimeout = v } else { r.error(e.value, "fleet.ack_timeout: expected more than 0 and at most 5m") }
                }
            case "quorum_fallback":
                if let v = r.duration(e.value, "fleet.quorum_fallback") {
                    if v >= 1 && v <= 3600 { f.quorumFallback = v } else { r.error(e.value, "fleet.quorum_fallback: expected 1s to 1h") }
                }
            default: break
            }
        }
        if f.endpoints.isEmpty && !m.contains(where: { $0.key == "etcd" }) {
            r.error(node, "fleet: etcd is required (a list of http://HOST:PORT or https://HOST:PORT client URLs)")
        }
        if (f.username == nil) != (f.passwordFile == nil) {
            r.error(node, "fleet: username and password_file go together (etcd user authentication)")
        }
        if (f.locations["cert_file"] == nil) != (f.locations["key_file"] == nil) {
            r.error(node, "fleet: cert_file and key_file go together (the client certificate for etcd's --client-cert-auth)")
        }
        if !f.usesTLS && !f.endpoints.isEmpty, let key = ["ca_file", "cert_file", "key_file"].first(where: { f.locations[$0] != nil }), let n = m.first(where: { $0.key == key }) {
            r.error(n.value, "fleet.\(key): only with https:// endpoints in fleet.etcd")
        }
        server.fleet = f
    }

    func parseRRL(_ node: Node) {
        guard let m = r.mapping(node, "server.rrl") else { return }
        r.checkKeys(m, allowed: ["rate", "slip", "ipv4_prefix", "ipv6_prefix", "allow", "table_size"], "server.rrl")
        for e in m {
            switch e.key {
            case "rate": if let v = r.int(e.value, "server.rrl.rate", 0...1_000_000) { server.rrl.rate = v }
            case "slip": if let v = r.int(e.value, "server.rrl.slip", 0...100) { server.rrl.slip = v }
            case "ipv4_prefix": if let v = r.int(e.value, "server.rrl.ipv4_prefix", 8...32) { server.rrl.ipv4Prefix = v }
            case "ipv6_prefix": if let v = r.int(e.value, "server.rrl.ipv6_prefix", 16...128) { server.rrl.ipv6Prefix = v }
            case "table_size": if let v = r.int(e.value, "server.rrl.table_size", 1024...(1 << 24)) { server.rrl.tableSize = v }
            case "allow":
                guard let list = r.strings(e.value, "server.rrl.allow") else { break }
                for (text, n) in list {
                    guard let p = IPPrefix(text, strict: true) else {
                        r.error(n, "bad CIDR \"\(text)\" (bits set past the prefix length?)"); continue
                    }
                    server.rrl.allow.append(p)
                }
            default: break
            }
        }
    }

    /// `server.dnstap`: exactly one of `socket` and `file`, the identity and version strings,
    /// what to log and the sampling ratio.
    func parseDnstap(_ node: Node) {
        let what = "server.dnstap"
        guard let m = r.mapping(node, what) else { return }
        r.checkKeys(m, allowed: ["socket", "file", "identity", "version", "log_queries", "log_responses", "sample", "max_per_second"], what)
        var output: DnstapSettings.Output?
        var identity: String?, version: String?
        var queries = true, responses = true, sample = 1, cap = 0
        for e in m {
            switch e.key {
            case "socket", "file":
                guard let p = r.string(e.value, "\(what).\(e.key)") else { break }
                if output != nil { r.error(e.keyNode, "\(what): give either socket or file, not both"); break }
                let full = path(p)
                if p.isEmpty { r.error(e.value, "\(what).\(e.key): empty path"); break }
                if e.key == "socket" {
                    // sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
                    if full.utf8.count > 107 { r.error(e.value, "\(what).socket: path longer than 107 bytes (\(full.utf8.count)), which a Unix socket address cannot hold"); break }
                    output = .socket(full)
                } else {
                    let folder = (full as NSString).deletingLastPathComponent
                    var isDir: ObjCBool = false
                    if !FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) || !isDir.boolValue {
                        r.error(e.value, "\(what).file: folder \(folder) does not exist"); break
                    }
                    output = .file(full)
                }
            case "identity", "version":
                guard let s = r.string(e.value, "\(what).\(e.key)") else { break }
                if s.utf8.count > 255 { r.error(e.value, "\(what).\(e.key): longer than 255 bytes"); break }
                if e.key == "identity" { identity = s } else { version = s }
            case "log_queries": if let b = r.bool(e.value, "\(what).log_queries") { queries = b }
            case "log_responses": if let b = r.bool(e.value, "\(what).log_responses") { responses = b }
            case "sample": if let v = r.int(e.value, "\(what).sample", 1...1_000_000) { sample = v }
            case "max_per_second": if let v = r.int(e.value, "\(what).max_per_second", 0...10_000_000) { cap = v }
            default: break
            }
        }
        guard let output else {
            if !m.contains(where: { $0.key == "socket" || $0.key == "file" }) {
                r.error(node, "\(what): needs socket (a Unix socket path) or file")
            }
            return
        }
        if !queries && !responses {
            r.error(node, "\(what): log_queries and log_responses are both false, so nothing would be logged (remove dnstap instead)")
            return
        }
        var d = DnstapSettings(output: output)
        d.identity = identity; d.version = version
        d.logQueries = queries; d.logResponses = responses; d.sample = sample; d.maxPerSecond = cap
        server.dnstap = d
    }

    func parseDefaults(_ node: Node) {
        guard let m = r.mapping(node, "defaults") else { return }
        r.checkKeys(m, allowed: ["ttl", "ttl_when_failing", "types"], "defaults")
        for e in m {
            switch e.key {
            case "ttl": if let t = ttl(e.value, "defaults.ttl") { defaultTTL = t }
            case "ttl_when_failing": if let t = ttl(e.value, "defaults.ttl_when_failing") { defaultTTLWhenFailing = t }
            case "types": if let t = types(e.value, "defaults.types") { (defaultA, defaultAAAA) = t }
            default: break
            }
        }
    }

    func ttl(_ node: Node, _ what: String) -> UInt32? {
        if case .scalar(let s) = node, let v = Int(s.string) {
            guard (0...604_800).contains(v) else { r.error(node, "\(what) \(v) out of range 0...604800"); return nil }
            return UInt32(v)
        }
        guard let d = r.duration(node, what) else { return nil }
        guard d <= 604_800 else { r.error(node, "\(what) out of range 0...604800 seconds"); return nil }
        return UInt32(d)
    }

    func types(_ node: Node, _ what: String) -> (Bool, Bool)? {
        guard let list = r.strings(node, what) else { return nil }
        var a = false, aaaa = false
        for (t, n) in list {
            switch t.uppercased() {
            case "A": a = true
            case "AAAA": aaaa = true
            default: r.error(n, "\(what): \"\(t)\" is not answered by policies (use A and/or AAAA)")
            }
        }
        return (a, aaaa)
    }

    // MARK: datacenters

    func parseDatacenters(_ node: Node) {
        guard let m = r.mapping(node, "datacenters") else { return }
        for e in m {
            let what = "datacenter \(e.key)"
            guard let f = r.mapping(e.value, what) else { continue }
            r.checkKeys(f, allowed: ["lat", "lon", "country", "continent", "min_healthy"], what)
            var dc = Datacenter(name: e.key, latitude: 0, longitude: 0, country: nil, continent: nil, location: r.loc(e.keyNode))
            var haveLat = false, haveLon = false
            for x in f {
                switch x.key {
                case "lat": if let v = r.double(x.value, "\(what): lat", -90...90) { dc.latitude = v; haveLat = true }
                case "lon": if let v = r.double(x.value, "\(what): lon", -180...180) { dc.longitude = v; haveLon = true }
                case "country":
                    if let s = r.string(x.value, "\(what): country") {
                        if s.count == 2 && s.allSatisfy({ $0.isLetter && $0.isASCII }) { dc.country = s.uppercased() }
                        else { r.error(x.value, "\(what): country \"\(s)\" is not a two-letter ISO 3166 code") }
                    }
                case "continent":
                    if let s = r.string(x.value, "\(what): continent") {
                        if continentCodes.contains(s.uppercased()) { dc.continent = s.uppercased() }
                        else { r.error(x.value, "\(what): continent \"\(s)\" is not one of AF AN AS EU NA OC SA") }
                    }
                case "min_healthy": datacenterMinimums.append((datacenters.count, x.value))
                default: break
                }
            }
            if !haveLat || !haveLon { r.error(e.keyNode, "\(what): needs lat and lon") }
            if datacenterIndex[dc.name] == nil { datacenterIndex[dc.name] = datacenters.count }
            datacenters.append(dc)
        }
    }

    /// A datacenter's endpoints are known only after `endpoints:`, so its `min_healthy` is
    /// checked against their count here.
    func checkDatacenterMinimums() {
        for (d, node) in datacenterMinimums {
            let members = datacenterEndpoints[d].count
            datacenters[d].minHealthy = minHealthy(node, "datacenter \(datacenters[d].name)", members: members, noun: "endpoint")
        }
    }

    /// `min_healthy`: a count (1...members) or a percentage (1%...100%).
    func minHealthy(_ node: Node, _ what: String, members: Int, noun: String) -> MinHealthy? {
        guard let s = r.string(node, "\(what): min_healthy") else { return nil }
        if s.hasSuffix("%") {
            guard let p = Int(s.dropLast()), (1...100).contains(p) else {
                r.error(node, "\(what): min_healthy \"\(s)\" is not a percentage 1%...100%"); return nil
            }
            return .percent(p)
        }
        guard let n = Int(s) else {
            r.error(node, "\(what): min_healthy \"\(s)\" is not a count or a percentage (e.g. 2 or 50%)"); return nil
        }
        guard n >= 1 && n <= members else {
            r.error(node, "\(what): min_healthy \(n) out of range 1...\(members) (it has \(members) \(noun)\(members == 1 ? "" : "s"))"); return nil
        }
        return .count(n)
    }

    /// The resolved `min_healthy` of the pool or datacenter a policy names (looked up in
    /// `leaf`'s order), or 0: a plain endpoint, a nested policy, no minimum.
    func minimum(_ node: Node) -> Int {
        guard case .scalar(let s) = node else { return 0 }
        if let p = poolIndex[s.string].map({ pools[$0] }) { return p.minHealthy?.required(of: p.endpoints.count) ?? 0 }
        if let d = datacenterIndex[s.string] {
            return datacenters[d].minHealthy?.required(of: datacenterEndpoints[d].count) ?? 0
        }
        return 0
    }

    // MARK: checks

    static let checkKeys = ["type", "host", "port", "path", "method", "host_header", "headers", "expect", "body",
                            "verify_cert", "ca_file", "server_name", "name", "qtype", "rcode", "answer",
                            "command", "file", "checks", "min", "interval", "timeout", "rise", "fall",
                            "degraded_above", "degraded_factor", "initial", "watch", "quorum", "source"]
    static let checkTypes = ["tcp", "http", "https", "dns", "exec", "file", "calculated"]

    func parseChecks(_ node: Node) {
        guard let m = r.mapping(node, "checks") else { return }
        var defaults: [(key: String, keyNode: Node, value: Node)] = []
        if let d = m.first(where: { $0.key == "defaults" }), let dm = r.mapping(d.value, "checks.defaults") {
            r.checkKeys(dm, allowed: ["interval", "timeout", "rise", "fall", "degraded_above", "degraded_factor", "initial", "quorum"], "checks.defaults")
            defaults = dm
        }
        var specs: [(CheckSpec, [(String, Node)], Node)] = []
        for e in m where e.key != "defaults" {
            let what = "check \(e.key)"
            guard let f = r.mapping(e.value, what) else { continue }
            r.checkKeys(f, allowed: Builder.checkKeys, what)
            func v(_ k: String) -> Node? { f.first { $0.key == k }?.value }
            guard let tn = v("type") else { r.error(e.keyNode, "\(what): needs a type (\(Builder.checkTypes.joined(separator: ", ")))"); continue }
            guard let type = r.string(tn, "\(what): type") else { continue }
            func port(_ def: UInt16?) -> UInt16? {
                if let p = v("port") { return r.int(p, "\(what): port", 1...65535).map { UInt16($0) } }
                if def == nil { r.error(e.keyNode, "\(what): needs a port") }
                return def
            }
            let host = v("host").flatMap { r.string($0, "\(what): host") } ?? ""
            var kind: CheckSpec.Kind
            var calculated: [(String, Node)] = []
            switch type {
            case "tcp":
                guard let p = port(nil) else { continue }
                kind = .tcp(host: host, port: p)
            case "http", "https":
                guard let p = port(type == "https" ? 443 : 80) else { continue }
                var h = CheckSpec.HTTPCheck(tls: type == "https", host: host, port: p)
                if let n = v("path"), let s = r.string(n, "\(what): path") { h.path = s }
                if let n = v("method"), let s = r.string(n, "\(what): method") { h.method = s.uppercased() }
                if let n = v("host_header"), let s = r.string(n, "\(what): host_header") { h.hostHeader = s }
                if let n = v("headers"), let hm = r.mapping(n, "\(what): headers") {
                    for x in hm { if let s = r.string(x.value, "\(what): header \(x.key)") { h.headers[x.key] = s } }
                }
                if let n = v("expect") {
                    if case .sequence(let s) = n { h.expectStatus = s.compactMap { r.int($0, "\(what): expect", 100...599) } }
                    else if let c = r.int(n, "\(what): expect", 100...599) { h.expectStatus = [c] }
                }
                if let n = v("body"), let s = r.string(n, "\(what): body") { h.expectBody = s }
                if let n = v("verify_cert"), let b = r.bool(n, "\(what): verify_cert") { h.verifyCertificate = b }
                if let n = v("ca_file"), let s = r.string(n, "\(what): ca_file") { h.caFile = path(s) }
                if let n = v("server_name"), let s = r.string(n, "\(what): server_name") { h.serverName = s }
                kind = .http(h)
            case "dns":
                guard let p = port(53) else { continue }
                guard let qn = v("name"), let name = r.string(qn, "\(what): name") else {
                    r.error(e.keyNode, "\(what): needs the name to query"); continue
                }
                let qtype = v("qtype").flatMap { r.string($0, "\(what): qtype") } ?? "SOA"
                if RRType(mnemonic: qtype) == nil { r.error(v("qtype")!, "\(what): unknown record type \"\(qtype)\"") }
                let rcode = v("rcode").flatMap { r.string($0, "\(what): rcode") } ?? "NOERROR"
                kind = .dns(server: host, port: p, name: name, type: qtype.uppercased(), expectRcode: rcode.uppercased(),
                            expectAnswer: v("answer").flatMap { r.string($0, "\(what): answer") })
            case "exec":
                guard let c = v("command"), let parts = r.strings(c, "\(what): command") else {
                    r.error(e.keyNode, "\(what): needs a command"); continue
                }
                kind = .exec(command: parts.map(\.0))
            case "file":
                guard let c = v("file"), let s = r.string(c, "\(what): file") else {
                    r.error(e.keyNode, "\(what): needs a file"); continue
                }
                kind = .file(path: path(s))
            case "calculated":
                guard let c = v("checks"), let list = r.strings(c, "\(what): checks") else {
                    r.error(e.keyNode, "\(what): needs checks"); continue
                }
                calculated = list
                let minimum = v("min").flatMap { r.int($0, "\(what): min", 1...max(1, list.count)) } ?? list.count
                kind = .calculated(checks: list.map(\.0), minimum: minimum)
            default:
                r.error(tn, "\(what): unknown type \"\(type)\"\(suggestion(type, Builder.checkTypes)) (one of \(Builder.checkTypes.joined(separator: ", ")))")
                continue
            }
            var spec = CheckSpec(name: e.key, kind: kind)
            for x in defaults + f { applyTiming(&spec, x.key, x.value, what) }
            if let n = v("watch") { spec.watch = parseWatch(n, kind: kind, type: type, what: what, check: specs.count) }
            if let n = v("source") { spec.source = parseSource(n, type: type, what: what) }
            if let n = v("quorum"), type == "file" {
                r.error(n, "\(what): a file check is this host's own switch and is not decided by quorum (use an override for the whole fleet)")
            }
            checkRules(spec, defaults: defaults, f, keyNode: e.keyNode, what: what)
            specs.append((spec, calculated, e.keyNode))
        }
        let known = Set(specs.map(\.0.name))
        for (spec, refs, _) in specs {
            for (ref, n) in refs where !known.contains(ref) {
                r.error(n, "check \(spec.name): unknown check \"\(ref)\"\(suggestion(ref, Array(known)))")
            }
        }
        checkCalculatedCycles(specs)
        checks = specs.map(\.0)
        for (i, c) in checks.enumerated() where checkIndex[c.name] == nil { checkIndex[c.name] = i }
    }

    func applyTiming(_ spec: inout CheckSpec, _ key: String, _ value: Node, _ what: String) {
        switch key {
        case "interval": if let d = r.duration(value, "\(what): interval") { spec.interval = d }
        case "timeout": if let d = r.duration(value, "\(what): timeout") { spec.timeout = d }
        case "rise": if let v = r.int(value, "\(what): rise", 1...100) { spec.rise = v }
        case "fall": if let v = r.int(value, "\(what): fall", 1...100) { spec.fall = v }
        case "degraded_above": if let d = r.duration(value, "\(what): degraded_above") { spec.degradedAbove = d }
        case "degraded_factor": if let v = r.double(value, "\(what): degraded_factor", 0...1) { spec.degradedFactor = v }
        case "quorum":
            // A number or a word: the YAML scalar's text either way.
            if let s = r.string(value, "\(what): quorum") {
                if let q = Quorum(text: s) { spec.quorum = q } else if !r.errors.contains(where: { $0.location == r.loc(value) }) {
                    // A bad default is reported once, not once per check that inherits it.
                    r.error(value, "quorum must be majority, any, all or a count from 1 to 1000, not \"\(s)\"")
                }
            }
        case "initial":
            if let s = r.string(value, "\(what): initial") {
                switch s { case "up": spec.initialState = .up
                case "down": spec.initialState = .down
                default: r.error(value, "\(what): initial must be up or down") }
            }
        default: break
        }
    }

    /// `source:` of a check: a literal address of this host that probes are sent from.
    func parseSource(_ n: Node, type: String, what: String) -> String? {
        guard let s = r.string(n, "\(what): source") else { return nil }
        guard ["tcp", "http", "https", "dns"].contains(type) else {
            r.error(n, "\(what): source applies to tcp, http, https and dns checks, not \(type)"); return nil
        }
        guard let ip = IPAddress(s) else { r.error(n, "\(what): source \"\(s)\" is not an IPv4 or IPv6 address"); return nil }
        // serve would fail every probe: the address must be one of this host's.
        let a = SocketAddress(isV4: ip.isV4, hi: ip.hi, lo: ip.lo, port: 0)
        let fd = socket(a.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let bound = fd >= 0 && a.withSockaddr { bind(fd, $0, $1) } == 0
        let why = String(cString: strerror(errno))
        if fd >= 0 { close(fd) }
        guard bound else { r.error(n, "\(what): source \(s) cannot be bound on this host (\(why))"); return nil }
        return s
    }

    // MARK: endpoints and pools

    func parseEndpoints(_ node: Node) {
        guard let m = r.mapping(node, "endpoints") else { return }
        for e in m {
            let what = "endpoint \(e.key)"
            guard let f = r.mapping(e.value, what) else { continue }
            r.checkKeys(f, allowed: ["v4", "v6", "cname", "dc", "weight", "check"], what)
            var ep = Endpoint(name: e.key, v4: [], v6: [], cname: nil, datacenter: nil, weight: 100, check: nil, location: r.loc(e.keyNode))
            let errorsBefore = r.errors.count
            for x in f {
                switch x.key {
                case "v4", "v6":
                    for (s, n) in r.strings(x.value, "\(what): \(x.key)") ?? [] {
                        guard let a = IPAddress(s), a.isV4 == (x.key == "v4") else {
                            r.error(n, "\(what): \"\(s)\" is not an \(x.key == "v4" ? "IPv4" : "IPv6") address"); continue
                        }
                        if x.key == "v4" { ep.v4.append(a) } else { ep.v6.append(a) }
                    }
                case "cname":
                    if let s = r.string(x.value, "\(what): cname") {
                        do { ep.cname = try DNSName(s.hasSuffix(".") ? s : s + ".").lowercased() }
                        catch { r.error(x.value, "\(what): bad cname \"\(s)\": \(error)") }
                    }
                case "dc":
                    if let s = r.string(x.value, "\(what): dc") {
                        if let i = datacenterIndex[s] { ep.datacenter = i }
                        else { r.error(x.value, "\(what): unknown datacenter \"\(s)\"\(suggestion(s, datacenters.map(\.name)))") }
                    }
                case "weight": if let v = r.int(x.value, "\(what): weight", 0...1000) { ep.weight = v }
                case "check":
                    if let s = r.string(x.value, "\(what): check") {
                        if let i = checkIndex[s] { ep.check = i }
                        else { r.error(x.value, "\(what): unknown check \"\(s)\"\(suggestion(s, checks.map(\.name)))") }
                    }
                default: break
                }
            }
            if ep.cname != nil && !(ep.v4.isEmpty && ep.v6.isEmpty) {
                r.error(e.keyNode, "\(what): has both cname and addresses; an endpoint is one or the other")
            } else if ep.cname == nil && ep.v4.isEmpty && ep.v6.isEmpty && r.errors.count == errorsBefore {
                r.error(e.keyNode, "\(what): needs v4, v6 or cname")
            }
            if endpointIndex[ep.name] == nil { endpointIndex[ep.name] = endpoints.count }
            endpoints.append(ep)
        }
    }

    func parsePools(_ node: Node) {
        guard let m = r.mapping(node, "pools") else { return }
        for e in m {
            let what = "pool \(e.key)"
            var pool = Pool(name: e.key, endpoints: [], location: r.loc(e.keyNode))
            // `web: [a, b]`, or `web: { members: [a, b], min_healthy: 2 }`.
            var members: Node? = e.value, minimumNode: Node? = nil
            if case .mapping = e.value, let f = r.mapping(e.value, what) {
                r.checkKeys(f, allowed: ["members", "min_healthy"], what)
                members = f.first { $0.key == "members" }?.value
                minimumNode = f.first { $0.key == "min_healthy" }?.value
                if members == nil { r.error(e.keyNode, "\(what): needs members") }
            }
            var listed = Set<Int>()
            for (s, n) in members.flatMap({ r.strings($0, what) }) ?? [] {
                guard let i = endpointIndex[s] else {
                    r.error(n, "\(what): unknown endpoint \"\(s)\"\(suggestion(s, endpoints.map(\.name)))"); continue
                }
                if !listed.insert(i).inserted { r.error(n, "\(what): endpoint \"\(s)\" listed twice"); continue }
                pool.endpoints.append(i)
            }
            let cn = pool.endpoints.filter { endpoints[$0].cname != nil }.count
            if cn > 0 && cn < pool.endpoints.count {
                r.error(e.keyNode, "\(what): mixes cname endpoints with address endpoints")
            }
            if let minimumNode { pool.minHealthy = minHealthy(minimumNode, what, members: pool.endpoints.count, noun: "member") }
            if poolIndex[pool.name] == nil { poolIndex[pool.name] = pools.count }
            pools.append(pool)
        }
    }

    // MARK: geo

    func parseGeo(_ node: Node) {
        guard let m = r.mapping(node, "geo") else { return }
        r.checkKeys(m, allowed: ["database", "asn_database", "cidr", "cidr_file"], "geo")
        var seen: [IPPrefix: SourceLocation] = [:]
        func add(_ e: CIDREntry) {
            if let prev = seen[e.prefix] { r.error(e.location, "duplicate CIDR \(e.prefix) (first at \(prev))"); return }
            seen[e.prefix] = e.location
            geo.cidr.append(e)
        }
        for e in m {
            switch e.key {
            case "database", "asn_database":
                guard let s = r.string(e.value, "geo.\(e.key)") else { continue }
                let ref = FileReference(path: path(s), location: r.loc(e.value))
                if let problem = mmdbProblem(ref.path) { r.error(e.value, "geo.\(e.key): \(problem): \(ref.path)"); continue }
                if e.key == "database" { geo.database = ref } else { geo.asnDatabase = ref }
            case "cidr":
                guard let cm = r.mapping(e.value, "geo.cidr") else { continue }
                for x in cm {
                    guard let t = r.string(x.value, "geo.cidr \(x.key)") else { continue }
                    if let entry = cidrEntry(x.key, t, r.loc(x.keyNode), r.loc(x.value)) { add(entry) }
                }
            case "cidr_file":
                for (s, n) in r.strings(e.value, "geo.cidr_file") ?? [] {
                    let p = path(s)
                    let text: String
                    do { text = try InputFile.readText(p, limit: InputLimits.cidrFileBytes) } catch {
                        r.error(n, "geo.cidr_file: cannot read \(p): \(error.reason)"); continue
                    }
                    for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                        let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                        let trimmed = String(content).trimmingSpaces()
                        if trimmed.isEmpty { continue }
                        let lead = content.prefix { $0 == " " || $0 == "\t" }.count
                        let at = SourceLocation(file: p, line: i + 1, column: lead + 1)
                        guard let colon = trimmed.firstIndex(of: ":"), trimmed[trimmed.index(after: colon)...].first == " " else {
                            r.error(at, "expected \"prefix: target\""); continue
                        }
                        let key = String(trimmed[..<colon])
                        let value = String(trimmed[trimmed.index(after: colon)...]).trimmingSpaces()
                        let vcol = lead + 1 + trimmed.distance(from: trimmed.startIndex, to: colon) + 2
                        if let entry = cidrEntry(key, value, at, SourceLocation(file: p, line: i + 1, column: vcol)) { add(entry) }
                    }
                }
            default: break
            }
        }
    }

    func cidrEntry(_ key: String, _ target: String, _ at: SourceLocation, _ targetAt: SourceLocation) -> CIDREntry? {
        guard let prefix = IPPrefix(key, strict: true), key.contains("/") else {
            let loose = IPPrefix(key) != nil && key.contains("/")
            r.error(at, "bad CIDR \"\(key)\"" + (loose ? " (bits set past the prefix length)" : ""))
            return nil
        }
        let parts = target.split(separator: ",")
        if parts.count == 2, let la = Double(parts[0].trimmingCharacters(in: .whitespaces)),
           let lo = Double(parts[1].trimmingCharacters(in: .whitespaces)) {
            guard (-90...90).contains(la), (-180...180).contains(lo) else {
                r.error(targetAt, "coordinates \"\(target)\" out of range"); return nil
            }
            return CIDREntry(prefix: prefix, target: .coordinates(latitude: la, longitude: lo), location: at)
        }
        if let i = datacenterIndex[target] {
            return CIDREntry(prefix: prefix, target: .datacenter(i), location: at)
        }
        return CIDREntry(prefix: prefix, target: .label(target), location: at)
    }

    /// A cheap sanity check without libmaxminddb (Config does not link it): the file is
    /// readable and ends with the MaxMind DB metadata marker. Routing opens it for real.
    func mmdbProblem(_ p: String) -> String? {
        let marker: [UInt8] = [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)
        do {
            return try InputFile.withOpened(p, limit: InputLimits.geoDatabaseBytes) { (fd, size) throws(InputFileError) -> String? in
                // The metadata section sits in the last 128 KiB (MaxMind DB spec, "Database Metadata").
                let tail = min(size, 128 * 1024)
                var bytes = [UInt8](repeating: 0, count: tail)
                let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, tail, off_t(size - tail)) }
                guard n == tail else { return "cannot read MaxMind database" }
                if bytes.count >= marker.count {
                    for i in stride(from: bytes.count - marker.count, through: 0, by: -1) where bytes[i] == 0xAB {
                        if Array(bytes[i..<(i + marker.count)]) == marker { return nil }
                    }
                }
                return "not a MaxMind database"
            }
        } catch {
            return error.kind == .notFound ? "MaxMind database not found" : "cannot read MaxMind database (\(error.reason))"
        }
    }

    // MARK: zones and names

    func parseZones(_ node: Node?, dir: Node?) {
        var fromDir: [String: String] = [:]
        func list(_ p: String) -> Bool {
            guard let files = InputFile.zoneFiles(inFolder: p) else { return false }
            for f in files {
                fromDir[String(f.dropLast(5)).lowercased()] = p + "/" + f
            }
            return true
        }
        if let override = zonesDirectory {
            // Checked by the caller (Runtime reports a missing folder once, as for --zones alone).
            _ = list(override)
        } else if let dir, let d = r.string(dir, "zones_dir") {
            let p = path(d)
            if !list(p) { r.error(dir, "zones_dir: cannot list folder \(p)") }
        }
        var declared = Set<String>()
        if let node, let m = r.mapping(node, "zones") {
            for e in m {
                let what = "zone \(e.key)"
                let apexText = e.key.hasSuffix(".") ? e.key : e.key + "."
                guard let apex = try? DNSName(apexText).lowercased() else { r.error(e.keyNode, "\(what): bad zone name"); continue }
                let key = String(apexText.dropLast()).lowercased()
                declared.insert(key)
                let f = r.mapping(e.value, what) ?? []
                r.checkKeys(f, allowed: ["file", "names", "dnssec"], what)
                var file = fromDir[key] ?? path(key + ".zone")
                var fileNode = e.keyNode
                if let fn = f.first(where: { $0.key == "file" }) {
                    fileNode = fn.value
                    if let s = r.string(fn.value, "\(what): file") { file = path(s) }
                }
                if !FileManager.default.fileExists(atPath: file) {
                    r.error(fileNode, "\(what): zone file not found: \(file)")
                }
                var source = ZoneSource(name: apex, file: file, location: r.loc(e.keyNode))
                if let d = f.first(where: { $0.key == "dnssec" }) { source.dnssec = parseDNSSEC(d.value, what) }
                zones.append(source)
                if let nn = f.first(where: { $0.key == "names" })?.value { parseNames(nn, zone: apex) }
            }
        }
        let listed = dir.map { r.loc($0) } ?? SourceLocation(file: r.file, line: 1, column: 1)
        for (k, file) in fromDir.sorted(by: { $0.key < $1.key }) where !declared.contains(k) {
            guard let apex = try? DNSName(k + ".").lowercased() else {
                r.error(listed, "zones_dir: bad zone file name \(file)")
                continue
            }
            zones.append(ZoneSource(name: apex, file: file, location: listed))
        }
    }

    /// `dnssec: { keys: DIR, validity: 14d, refresh: 7d, inception_offset: 1h }`.
    func parseDNSSEC(_ node: Node, _ zone: String) -> DNSSECSettings? {
        let what = "\(zone): dnssec"
        guard let m = r.mapping(node, what) else { return nil }
        r.checkKeys(m, allowed: ["keys", "validity", "refresh", "inception_offset"], what)
        guard let k = m.first(where: { $0.key == "keys" }) else {
            r.error(node, "\(what): keys (the folder of the zone's key files) is required")
            return nil
        }
        guard let folder = r.string(k.value, "\(what): keys") else { return nil }
        var s = DNSSECSettings(keys: path(folder), location: r.loc(k.value))
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: s.keys, isDirectory: &isDir) || !isDir.boolValue {
            r.error(k.value, "\(what): keys: no such folder \(s.keys)")
        }
        for e in m {
            switch e.key {
            case "validity": if let d = r.duration(e.value, "\(what): validity") { s.validity = d }
            case "refresh": if let d = r.duration(e.value, "\(what): refresh") { s.refresh = d }
            case "inception_offset": if let d = r.duration(e.value, "\(what): inception_offset") { s.inceptionOffset = d }
            default: break
            }
        }
        // A signature must outlive the validators' caching of it, and be made again before
        // it expires: validity > refresh > 0, and at most 90 days (RFC 6781 4.4.2 advises
        // keeping validity short enough that a replayed signature expires).
        if s.validity < 3600 || s.validity > 90 * 86400 {
            r.error(node, "\(what): validity must be between 1h and 90d")
        } else if s.refresh <= 0 || s.refresh >= s.validity {
            r.error(node, "\(what): refresh must be more than 0 and less than validity (\(DurationText.format(s.validity)))")
        }
        if s.inceptionOffset < 0 || s.inceptionOffset > 86400 {
            r.error(node, "\(what): inception_offset must be between 0s and 1d")
        }
        return s
    }

    func parseNames(_ node: Node, zone: DNSName) {
        guard let m = r.mapping(node, "names of \(zone)") else { return }
        for e in m {
            let what = "name \(e.key)"
            let owner: DNSName
            do {
                owner = try (e.key == "@" ? zone : DNSName(e.key, origin: zone)).lowercased()
            } catch { r.error(e.keyNode, "\(what): bad name: \(error)"); continue }
            guard owner.isSubdomain(of: zone) else { r.error(e.keyNode, "\(what): \(owner) is not inside zone \(zone)"); continue }
            if let prev = nameIndex[owner].map({ names[$0] }) {
                r.error(e.keyNode, "duplicate GSLB name \(owner) (first at \(prev.location))"); continue
            }
            guard let f = r.mapping(e.value, what) else { continue }
            r.checkKeys(f, allowed: ["ttl", "ttl_when_failing", "types", "policy", "when_all_down", "fallback", "rto"], what)
            var ttlValue = defaultTTL, a = defaultA, aaaa = defaultAAAA, rto: Double? = nil, enforce = true
            var short: (value: UInt32, node: Node)? = nil
            var policy: Node? = nil
            var wad: [(key: String, keyNode: Node, value: Node)] = []
            for x in f {
                switch x.key {
                case "ttl": if let t = ttl(x.value, "\(what): ttl") { ttlValue = t }
                case "types": if let t = types(x.value, "\(what): types") { (a, aaaa) = t }
                case "ttl_when_failing": if let t = ttl(x.value, "\(what): ttl_when_failing") { short = (t, x.value) }
                case "rto": (rto, enforce) = parseRTO(x.value, "\(what): rto")
                case "policy": policy = x.value
                case "when_all_down", "fallback": wad.append(x)
                default: break
                }
            }
            guard let policy else { r.error(e.keyNode, "\(what): needs a policy"); continue }
            guard let root = parseNode(policy, depth: 0, what: "\(what) policy", inherited: wad) else { continue }
            if let short, short.value > ttlValue {
                r.error(short.node, "\(what): ttl_when_failing \(short.value) is above its ttl \(ttlValue)")
            }
            let whenFailing = min(short?.value ?? defaultTTLWhenFailing ?? shortestInterval(under: root) ?? ttlValue, ttlValue)
            nameIndex[owner] = names.count
            names.append(GSLBName(owner: owner, zone: zone, answersA: a, answersAAAA: aaaa, ttl: ttlValue, ttlWhenFailing: whenFailing,
                                  root: root, rto: rto, rtoEnforced: enforce, location: r.loc(e.keyNode)))
        }
    }

    /// `rto: 30s`, or `rto: { target: 30s, enforce: false }` for an operator who accepts a
    /// failover budget over it (then the config loads and `check` only reports it).
    func parseRTO(_ node: Node, _ what: String) -> (Double?, Bool) {
        guard case .mapping = node else { return (r.duration(node, what), true) }
        guard let m = r.mapping(node, what) else { return (nil, true) }
        r.checkKeys(m, allowed: ["target", "enforce"], what)
        var target: Double?, enforce = true
        for x in m {
            switch x.key {
            case "target": target = r.duration(x.value, "\(what).target")
            case "enforce": enforce = r.bool(x.value, "\(what).enforce") ?? true
            default: break
            }
        }
        if target == nil && !m.contains(where: { $0.key == "target" }) { r.error(node, "\(what): needs a target (e.g. { target: 30s, enforce: false })") }
        return (target, enforce)
    }

    /// The default `ttl_when_failing`: the smallest probe interval among the checked
    /// endpoints under `root`, in whole seconds and at least 1 (a calculated check probes as
    /// often as its quickest member). nil when no endpoint there has a check.
    func shortestInterval(under root: Int) -> UInt32? {
        // Bounded: a calculated chain longer than the number of checks is a cycle (an error
        // reported elsewhere); here it just stops.
        func interval(_ c: CheckSpec, depth: Int) -> Double {
            guard case .calculated(let members, _) = c.kind, depth <= checks.count else { return c.interval }
            return members.compactMap { checkIndex[$0].map { interval(checks[$0], depth: depth + 1) } }.min() ?? c.interval
        }
        let seconds = PolicyNode.endpoints(under: root, in: nodes).compactMap { e in
            endpoints[e].check.map { interval(checks[$0], depth: 0) }
        }.min()
        return seconds.map { UInt32(min(max(1, $0.rounded(.down)), 604_800)) }
    }

    // MARK: policies

    static let kinds = ["pool", "failover", "weighted", "geo", "nearest", "subnet", "multivalue", "hashed"]

    /// Endpoints a leaf name stands for: a pool, else a datacenter's endpoints, else one endpoint.
    func leaf(_ name: String, _ node: Node, _ what: String) -> [Int]? {
        if let p = poolIndex[name].map({ pools[$0] }) {
            if p.endpoints.isEmpty { r.error(node, "\(what): pool \"\(name)\" is empty") ; return nil }
            return p.endpoints
        }
        if let d = datacenterIndex[name] {
            let eps = datacenterEndpoints[d]
            if eps.isEmpty { r.error(node, "\(what): datacenter \"\(name)\" has no endpoints"); return nil }
            return eps
        }
        if let i = endpointIndex[name] { return [i] }
        let all = pools.map(\.name) + datacenters.map(\.name) + endpoints.map(\.name)
        r.error(node, "\(what): unknown pool, datacenter or endpoint \"\(name)\"\(suggestion(name, all))")
        return nil
    }

    /// `minHealthy`: the node stands for the pool or datacenter named by that text (see `minimum`).
    func addNode(_ kind: PolicyNode.Kind, _ wad: WhenAllDown, _ node: Node, minHealthy: Node? = nil) -> Int {
        nodes.append(PolicyNode(kind: kind, whenAllDown: wad, location: r.loc(node), minHealthy: minHealthy.map { minimum($0) } ?? 0))
        return nodes.count - 1
    }

    /// One leaf per endpoint, so choosing nodes over a pool choose single endpoints.
    func expand(_ eps: [Int], _ node: Node) -> [Int] {
        eps.map { addNode(.pool(name: endpoints[$0].name, endpoints: [$0]), .parent, node) }
    }

    func limitChildren(_ count: Int, _ node: Node, _ what: String, max limit: Int = maxChildren) -> Bool {
        if count == 0 { r.error(node, "\(what): needs at least one choice"); return false }
        if count > limit { r.error(node, "\(what): more than \(limit) choices"); return false }
        return true
    }

    /// `geo` and `subnet`: at most `maxRules` keys or prefixes; `default` is not one of them.
    func limitRules(_ m: [(key: String, keyNode: Node, value: Node)], _ node: Node, _ what: String) -> Bool {
        let rules = m.count - (m.contains { $0.key == "default" } ? 1 : 0)
        // A lone `default` is still one choice.
        return limitChildren(m.isEmpty ? 0 : max(rules, 1), node, what, max: maxRules)
    }

    func whenAllDown(_ entries: [(key: String, keyNode: Node, value: Node)], isRoot: Bool, _ what: String) -> WhenAllDown {
        var mode: WhenAllDown = isRoot ? .open : .parent
        let fb = entries.first { $0.key == "fallback" }
        if let w = entries.first(where: { $0.key == "when_all_down" }), let s = r.string(w.value, "\(what): when_all_down") {
            switch s {
            case "open": mode = .open
            case "parent": mode = .parent
            case "nodata": mode = .nodata
            case "fallback":
                guard let fb else { r.error(w.value, "\(what): when_all_down fallback needs a fallback: list"); break }
                var addrs: [IPAddress] = []
                var cname: DNSName? = nil
                for (t, n) in r.strings(fb.value, "\(what): fallback") ?? [] {
                    if let a = IPAddress(t) { addrs.append(a) }
                    else if cname == nil && addrs.isEmpty, let c = try? DNSName(t.hasSuffix(".") ? t : t + ".") { cname = c.lowercased() }
                    else { r.error(n, "\(what): fallback \"\(t)\" is not an address (or a single host name)") }
                }
                mode = .fallback(addresses: addrs, cname: cname)
            default:
                r.error(w.value, "\(what): when_all_down \"\(s)\" is not one of open, parent, fallback, nodata\(suggestion(s, ["open", "parent", "fallback", "nodata"]))")
            }
        } else if let fb {
            r.error(fb.keyNode, "\(what): fallback is only used with when_all_down: fallback")
        }
        return mode
    }

    /// Parses one policy node; `extra` keys (e.g. `weight` in a weighted list) are returned, not errors.
    func parseNode(_ node: Node, depth: Int, what: String, inherited: [(key: String, keyNode: Node, value: Node)] = [],
                   extra: [String] = [], extras: UnsafeMutablePointer<[String: Node]>? = nil) -> Int? {
        guard depth < maxDepth else { r.error(node, "\(what): policy nested deeper than \(maxDepth)"); return nil }
        let isRoot = depth == 0
        if case .scalar(let s) = node {
            guard let eps = leaf(s.string, node, what) else { return nil }
            return addNode(.pool(name: s.string, endpoints: eps), whenAllDown(inherited, isRoot: isRoot, what), node, minHealthy: node)
        }
        guard let m = r.mapping(node, what) else { return nil }
        let kindEntries = m.filter { Builder.kinds.contains($0.key) }
        guard kindEntries.count == 1, let ke = kindEntries.first else {
            if kindEntries.count > 1 { r.error(kindEntries[1].keyNode, "\(what): one policy kind per node, found \(kindEntries.map(\.key).joined(separator: " and "))") }
            else {
                let unknown = m.first { !["when_all_down", "fallback", "n", "bias", "v4_prefix", "v6_prefix"].contains($0.key) && !extra.contains($0.key) }
                if let u = unknown {
                    r.error(u.keyNode, "unknown key \"\(u.key)\" in \(what)\(suggestion(u.key, Builder.kinds + extra))")
                } else {
                    r.error(node, "\(what): needs a policy kind (\(Builder.kinds.joined(separator: ", ")))")
                }
            }
            return nil
        }
        let kind = ke.key
        var allowed = [kind, "when_all_down", "fallback"] + extra
        switch kind {
        case "nearest": allowed += ["n", "bias"]
        case "multivalue": allowed += ["n"]
        case "hashed": allowed += ["v4_prefix", "v6_prefix"]
        default: break
        }
        r.checkKeys(m, allowed: allowed, "\(kind) policy")
        if let extras { for e in m where extra.contains(e.key) { extras.pointee[e.key] = e.value } }
        let p = PolicyText(node: node, options: m, body: ke.value, what: "\(what) > \(kind)", depth: depth,
                           whenAllDown: whenAllDown(m.filter { $0.key == "when_all_down" || $0.key == "fallback" } + inherited,
                                                    isRoot: isRoot, what))
        switch kind {
        case "pool": return parsePool(p)
        case "failover": return parseFailover(p)
        case "weighted": return parseWeighted(p)
        case "hashed": return parseHashed(p)
        case "multivalue": return parseMultivalue(p)
        case "nearest": return parseNearest(p)
        case "geo": return parseGeo(p)
        case "subnet": return parseSubnet(p)
        default: return nil
        }
    }

    /// One policy node as written: the node, its keys, the body of its kind key, the path
    /// for errors (`www > geo`), its depth and its resolved `when_all_down`.
    struct PolicyText {
        var node: Node
        var options: [(key: String, keyNode: Node, value: Node)]
        var body: Node
        var what: String
        var depth: Int
        var whenAllDown: WhenAllDown
        func option(_ k: String) -> Node? { options.first { $0.key == k }?.value }
    }

    /// Choices of a node: a scalar is a pool expanded to one child per endpoint (weights from
    /// the endpoints); with weights, a mapping is `name: weight`; a list is one child per
    /// item, and items may carry `weight`.
    func policyChildren(_ p: PolicyText, weightsAllowed: Bool) -> (children: [Int], weights: [Int])? {
        let body = p.body, sub = p.what
        if case .scalar(let s) = body {
            guard let eps = leaf(s.string, body, sub) else { return nil }
            guard limitChildren(eps.count, body, sub) else { return nil }
            return (expand(eps, body), eps.map { endpoints[$0].weight })
        }
        if weightsAllowed, case .mapping = body {
            guard let cm = r.mapping(body, sub), limitChildren(cm.count, body, sub) else { return nil }
            var c: [Int] = [], w: [Int] = []
            for x in cm {
                guard let eps = leaf(x.key, x.keyNode, sub), let wt = r.int(x.value, "\(sub): weight", 0...1000) else { continue }
                c.append(addNode(.pool(name: x.key, endpoints: eps), .parent, x.keyNode, minHealthy: x.keyNode)); w.append(wt)
            }
            return (c, w)
        }
        guard let items = r.sequence(body, sub), limitChildren(items.count, body, sub) else { return nil }
        var c: [Int] = [], w: [Int] = []
        for (i, item) in items.enumerated() {
            var ex: [String: Node] = [:]
            guard let n = parseNode(item, depth: p.depth + 1, what: "\(sub)[\(i)]", extra: weightsAllowed ? ["weight"] : [], extras: &ex) else { continue }
            var wt = 1
            if let wn = ex["weight"] { wt = r.int(wn, "\(sub)[\(i)]: weight", 0...1000) ?? 1 }
            else if case .pool(_, let eps) = nodes[n].kind, eps.count == 1 { wt = endpoints[eps[0]].weight }
            c.append(n); w.append(wt)
        }
        return (c, w)
    }

    /// `pool: NAME`: every healthy member answers.
    func parsePool(_ p: PolicyText) -> Int? {
        guard case .scalar(let s) = p.body else { r.error(p.body, "\(p.what): expected a pool name"); return nil }
        guard let eps = leaf(s.string, p.body, p.what) else { return nil }
        return addNode(.pool(name: s.string, endpoints: eps), p.whenAllDown, p.node, minHealthy: p.body)
    }

    /// `failover: [a, b, ...]` or `failover: POOL`: the first choice with a healthy member.
    func parseFailover(_ p: PolicyText) -> Int? {
        guard let (c, _) = policyChildren(p, weightsAllowed: false) else { return nil }
        return addNode(.failover(children: c), p.whenAllDown, p.node, minHealthy: p.body)
    }

    /// `weighted: { a: 3, b: 1 }`, a list with `weight:`, or a pool by endpoint weight.
    func parseWeighted(_ p: PolicyText) -> Int? {
        guard let (c, w) = policyChildren(p, weightsAllowed: true) else { return nil }
        if !w.isEmpty && w.count == c.count && w.allSatisfy({ $0 == 0 }) { r.error(p.body, "\(p.what): every weight is 0") }
        return addNode(.weighted(children: c, weights: w), p.whenAllDown, p.node, minHealthy: p.body)
    }

    /// `hashed:` choices like `weighted`, with `v4_prefix` (24) and `v6_prefix` (56).
    func parseHashed(_ p: PolicyText) -> Int? {
        guard let (c, w) = policyChildren(p, weightsAllowed: true) else { return nil }
        let v4 = p.option("v4_prefix").flatMap { r.int($0, "\(p.what): v4_prefix", 0...32) } ?? 24
        let v6 = p.option("v6_prefix").flatMap { r.int($0, "\(p.what): v6_prefix", 0...128) } ?? 56
        return addNode(.hashed(children: c, weights: w, v4Prefix: v4, v6Prefix: v6), p.whenAllDown, p.node, minHealthy: p.body)
    }

    /// `multivalue: POOL` with `n` (8, at most 64).
    func parseMultivalue(_ p: PolicyText) -> Int? {
        guard case .scalar(let s) = p.body else { r.error(p.body, "\(p.what): expected a pool name"); return nil }
        guard let eps = leaf(s.string, p.body, p.what) else { return nil }
        let n = p.option("n").flatMap { r.int($0, "\(p.what): n", 1...64) } ?? 8
        return addNode(.multivalue(name: s.string, endpoints: eps, count: n), p.whenAllDown, p.node, minHealthy: p.body)
    }

    /// `nearest:` choices each in one datacenter, with `n` (1) and `bias` (km per datacenter).
    func parseNearest(_ p: PolicyText) -> Int? {
        let sub = p.what
        guard let (c, _) = policyChildren(p, weightsAllowed: false) else { return nil }
        var dcs: [Int] = []
        for child in c {
            let eps = PolicyNode.endpoints(under: child, in: nodes)
            let set = Set(eps.map { endpoints[$0].datacenter ?? -1 })
            if set.count == 1, let d = set.first, d >= 0 { dcs.append(d) }
            else {
                r.error(nodes[child].location, "\(sub): every choice must sit in one datacenter (endpoints need dc:)")
                dcs.append(0)
            }
        }
        var bias = Array(repeating: 0.0, count: c.count)
        if let bn = p.option("bias"), let bm = r.mapping(bn, "\(sub): bias") {
            for x in bm {
                guard let d = datacenterIndex[x.key] else {
                    r.error(x.keyNode, "\(sub): bias names unknown datacenter \"\(x.key)\"\(suggestion(x.key, datacenters.map(\.name)))"); continue
                }
                guard let km = r.double(x.value, "\(sub): bias \(x.key)", -20_000...20_000) else { continue }
                for (i, dc) in dcs.enumerated() where dc == d { bias[i] = km }
            }
        }
        let n = p.option("n").flatMap { r.int($0, "\(sub): n", 1...64) } ?? 1
        return addNode(.nearest(children: c, datacenters: dcs, biasKm: bias, count: n), p.whenAllDown, p.node, minHealthy: p.body)
    }

    /// `geo: { KEY: choice, ..., default: choice }`: labels, ASNs, subdivisions, countries,
    /// continents.
    func parseGeo(_ p: PolicyText) -> Int? {
        let sub = p.what
        guard let gm = r.mapping(p.body, sub) else { return nil }
        guard limitRules(gm, p.body, sub) else { return nil }
        var keys: [GeoKey] = [], c: [Int] = [], def: Int? = nil
        var seen = Set<GeoKey>()
        for x in gm {
            let key = x.key == "default" ? nil : geoKey(x.key, x.keyNode, sub)
            if x.key != "default" && key == nil { continue }
            guard let child = parseNode(x.value, depth: p.depth + 1, what: "\(sub) \(x.key)") else { continue }
            if let key {
                if !seen.insert(key).inserted { r.error(x.keyNode, "\(sub): \(key) listed twice"); continue }
                keys.append(key); c.append(child)
            } else { def = child }
        }
        return addNode(.geo(keys: keys, children: c, defaultChild: def), p.whenAllDown, p.node)
    }

    /// `subnet: { CIDR: choice, ..., default: choice }`: the longest matching prefix.
    func parseSubnet(_ p: PolicyText) -> Int? {
        let sub = p.what
        guard let sm = r.mapping(p.body, sub) else { return nil }
        guard limitRules(sm, p.body, sub) else { return nil }
        var prefixes: [IPPrefix] = [], c: [Int] = [], def: Int? = nil
        var seen = Set<IPPrefix>()
        for x in sm {
            var prefix: IPPrefix? = nil
            if x.key != "default" {
                guard let pp = IPPrefix(x.key, strict: true), x.key.contains("/") else {
                    r.error(x.keyNode, "\(sub): bad CIDR \"\(x.key)\""); continue
                }
                if !seen.insert(pp).inserted { r.error(x.keyNode, "\(sub): duplicate CIDR \(pp)"); continue }
                prefix = pp
            }
            guard let child = parseNode(x.value, depth: p.depth + 1, what: "\(sub) \(x.key)") else { continue }
            if let prefix { prefixes.append(prefix); c.append(child) } else { def = child }
        }
        return addNode(.subnet(prefixes: prefixes, children: c, defaultChild: def), p.whenAllDown, p.node)
    }

    /// `EU` continent, `DE` country, `US-CA` subdivision, `AS64500` ASN, explicit `country:NA`,
    /// `continent:EU`, `asn:64500`, `label:x`; any other word is a CIDR-map label or datacenter.
    func geoKey(_ key: String, _ node: Node, _ what: String) -> GeoKey? {
        func isAlpha(_ s: Substring) -> Bool { s.allSatisfy { $0.isASCII && $0.isLetter } }
        if let colon = key.firstIndex(of: ":") {
            let kind = key[..<colon], v = key[key.index(after: colon)...]
            switch kind {
            case "country" where v.count == 2 && isAlpha(v): return .country(v.uppercased())
            case "continent" where continentCodes.contains(v.uppercased()): return .continent(v.uppercased())
            case "asn": if let n = UInt32(v) { return .asn(n) }
            case "label" where !v.isEmpty: return .label(String(v))
            default: break
            }
            r.error(node, "\(what): bad geo key \"\(key)\""); return nil
        }
        if continentCodes.contains(key) { return .continent(key) }
        if key.count == 2 && isAlpha(Substring(key)) && key == key.uppercased() { return .country(key) }
        if key.hasPrefix("AS"), key.count > 2, let n = UInt32(key.dropFirst(2)) { return .asn(n) }
        let parts = key.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 2, parts[0].count == 2, isAlpha(parts[0]), parts[0] == parts[0].uppercased(),
           (1...3).contains(parts[1].count), parts[1].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
            return .subdivision(country: String(parts[0]), code: parts[1].uppercased())
        }
        let labels = Set(geo.cidr.compactMap { e -> String? in
            switch e.target { case .label(let l): return l; case .datacenter(let d): return datacenters[d].name; default: return nil }
        })
        if labels.contains(key) || datacenters.contains(where: { $0.name == key }) { return .label(key) }
        r.error(node, "\(what): \"\(key)\" is not a continent, country, subdivision, ASN or CIDR-map label\(suggestion(key, Array(labels)))")
        return nil
    }
}
