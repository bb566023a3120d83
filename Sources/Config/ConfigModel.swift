import Glibc
import DNSWire
import Diagnostics

/// Configuration errors share the type of every input error: `file:line:column: message`.
///
///     ConfigError(SourceLocation(file: "meridian.yaml", line: 3, column: 5), "unknown key \"ttll\" (did you mean \"ttl\"?)")
public typealias ConfigError = SourceError
/// Every error found while loading one configuration; `meridian check` prints them all.
public typealias ConfigErrors = SourceErrors

/// Settings of the server process itself.
public struct ServerSettings: Hashable, Sendable {
    /// Where each key's value was written (`listen`, `control`, `user`, ...), so the server's
    /// own checks of these settings report file:line:column too.
    public var locations: [String: SourceLocation] = [:]
    /// `host:port` strings, `[v6]:port` for IPv6. Parsing them is the server's job.
    public var listen: [String] = ["0.0.0.0:53", "[::]:53"]
    /// Worker threads; 0 means one per core.
    public var workers: Int = 0
    /// Largest UDP response offered with EDNS (DNS Flag Day 2020 recommends 1232).
    public var maxUDPSize: Int = 1232
    /// NSID payload (RFC 5001) as text; nil disables NSID.
    public var nsid: String? = nil
    /// `host:port` of the control and metrics API; nil disables it.
    public var control: String? = nil
    /// Bearer token every control request must carry; required for a non-loopback `control`.
    public var controlToken: String? = nil
    /// A file holding the token (a mounted secret), resolved against the config's folder;
    /// read when the server starts. `control_token` wins when both are set.
    public var controlTokenFile: String? = nil
    /// User and group to switch to after binding, when started as root.
    public var user: String? = nil
    public var group: String? = nil
    /// Response rate limiting over UDP (`server.rrl`); off unless `rate` is set.
    public var rrl = RRLSettings()
    /// Query logging through dnstap (`server.dnstap`); nil when off.
    public var dnstap: DnstapSettings? = nil
    /// The folder where operator overrides are saved so they survive a restart or a crash
    /// (`server.state_dir`, resolved against the config's folder); nil means
    /// `defaultStateDir`. Used only when the configuration has endpoints.
    public var stateDir: String? = nil
    /// `fleet:`: overrides shared through etcd; nil: this server alone.
    public var fleet: FleetSettings? = nil
    /// Where overrides are saved when `state_dir` is not set.
    public static let defaultStateDir = "/var/lib/meridian"
    public init() {}
}

/// `fleet:`: every Meridian instance of a zone shares its overrides through one etcd
/// cluster (its v3 JSON gateway over HTTP) and registers itself there under a lease.
///
///     fleet:
///       etcd: [http://10.0.1.5:2379, http://10.0.2.5:2379, http://10.0.3.5:2379]
///       prefix: /meridian/
///       name: ns1-ams
public struct FleetSettings: Hashable, Sendable {
    public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: UInt16
        /// `https://`: TLS with the server's certificate verified (`ca_file`, or the system store).
        public var tls: Bool
        public init(host: String, port: UInt16, tls: Bool = false) { self.host = host; self.port = port; self.tls = tls }
        public var description: String {
            let scheme = tls ? "https" : "http"
            return host.contains(":") ? "\(scheme)://[\(host)]:\(port)" : "\(scheme)://\(host):\(port)"
        }
    }
    public var endpoints: [Endpoint] = []
    /// Every key lives under it: `PREFIX overrides/TARGET`, `PREFIX instances/NAME`.
    public var prefix: String = "/meridian/"
    /// This instance's name in the fleet; the host name by default.
    public var name: String = FleetSettings.defaultName
    /// Seconds; an instance that stops renewing disappears this long after.
    public var leaseTTL: Double = 10
    /// Seconds `override set` waits for every live instance to apply the change.
    public var ackTimeout: Double = 5
    /// etcd user authentication: the user and a file holding the password (read at start).
    public var username: String? = nil
    public var passwordFile: String? = nil
    /// TLS to `https://` endpoints: the CA file the server's certificate is verified against
    /// (nil: the system store), and the client certificate and key for mutual TLS.
    public var caFile: String? = nil
    public var certFile: String? = nil
    public var keyFile: String? = nil
    public var usesTLS: Bool { endpoints.contains { $0.tls } }
    /// Seconds without reading etcd after which the quorum stops using the fleet's last
    /// vantages and this instance decides from its own observations.
    public var quorumFallback: Double = 30
    public var location: SourceLocation
    /// Where each key's value was written, for the server's own checks.
    public var locations: [String: SourceLocation] = [:]

    public init(location: SourceLocation) { self.location = location }

    public static var defaultName: String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        let h = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return nameProblem(h) == nil ? h : "meridian"
    }

    /// Letters, digits, `.`, `-`, `_`; 1 to 64 bytes (it is part of an etcd key and a table).
    public static func nameProblem(_ n: String) -> String? {
        guard !n.isEmpty, n.utf8.count <= 64,
              n.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 46 || $0 == 45 || $0 == 95 })
        else { return "\"\(n)\" must be 1 to 64 letters, digits, '.', '-' or '_'" }
        return nil
    }

    /// `http://HOST:PORT` (HOST a name, an IPv4 address or `[IPv6]`), nil otherwise.
    public static func parseEndpoint(_ text: String) -> Endpoint? {
        let tls = text.hasPrefix("https://")
        guard tls || text.hasPrefix("http://") else { return nil }
        var rest = Substring(text.dropFirst(tls ? 8 : 7))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let host: Substring, portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            portText = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains("/"), let port = UInt16(portText), port > 0 else { return nil }
        return Endpoint(host: String(host), port: port, tls: tls)
    }
}

/// Query logging through dnstap (`server.dnstap`): Frame Streams to a Unix socket (a
/// collector such as `fstrm_capture`, bidirectional handshake) or to a file (unidirectional),
/// carrying dnstap messages of type AUTH_QUERY and AUTH_RESPONSE.
public struct DnstapSettings: Hashable, Sendable {
    public enum Output: Hashable, Sendable {
        /// A Unix stream socket; the server connects to it and reconnects with backoff.
        case socket(String)
        /// A file written from its start (truncated when the server opens it).
        case file(String)
    }
    public var output: Output
    /// The dnstap `identity` field (default: the host name).
    public var identity: String?
    /// The dnstap `version` field (default: `meridian` and its version).
    public var version: String?
    public var logQueries = true
    public var logResponses = true
    /// Log one query in `sample` (1: every query).
    public var sample = 1
    /// At most this many logged queries per second per worker thread; 0: no cap.
    public var maxPerSecond = 0
    public init(output: Output) { self.output = output }
}

/// Response rate limiting settings (the design NSD, Knot and BIND share: responses per
/// second per client network and kind of response, with a slip ratio).
///
/// Off by default (`rate` 0): a GSLB server's clients are resolvers, and one large public
/// resolver legitimately sends thousands of queries per second from one /24, so any fixed
/// default would throttle whole ISPs without the operator knowing. Turn it on with a rate
/// sized from your own traffic (NSD's default, 200/s, is a reasonable start for small zones).
public struct RRLSettings: Hashable, Sendable {
    /// Responses per second per (client network, kind); 0 disables rate limiting.
    public var rate: Int = 0
    /// Every `slip`-th limited response is sent truncated (TC=1, no records) instead of
    /// dropped, so a real client behind a spoofed flood retries over TCP. 0 never slips;
    /// 1 slips every one. 2 is the usual default (BIND, NSD, Knot).
    public var slip: Int = 2
    public var ipv4Prefix: Int = 24
    public var ipv6Prefix: Int = 56
    /// Networks never limited (monitoring, your own resolvers).
    public var allow: [IPPrefix] = []
    /// Slots in the shared table (a power of two); collisions only share a budget.
    public var tableSize: Int = 1 << 16
    public init() {}
}


/// A zone served from a master file.
public struct ZoneSource: Hashable, Sendable {
    public var name: DNSName
    /// Path as resolved against the configuration file's folder.
    public var file: String
    public var location: SourceLocation
    /// Online DNSSEC signing of the zone; nil serves it unsigned.
    public var dnssec: DNSSECSettings? = nil
}

/// A zone's `dnssec:` block: where its BIND-format key files are and how long its
/// signatures live (docs/dnssec.md).
public struct DNSSECSettings: Hashable, Sendable {
    /// Folder of `K<zone>.+<alg>+<tag>.key`/`.private` pairs, resolved against the
    /// configuration file's folder.
    public var keys: String
    /// Signatures expire this long after they are made (less a random jitter of up to a
    /// tenth of `refresh`, so a burst of signing does not expire all at once).
    public var validity: Double = 14 * 86400
    /// A cached signature is made again once less than this is left of its validity.
    public var refresh: Double = 7 * 86400
    /// Inception is backdated by this much, for validators with slow clocks.
    public var inceptionOffset: Double = 3600
    public var location: SourceLocation
    public init(keys: String, location: SourceLocation) { self.keys = keys; self.location = location }
}

/// A place endpoints live in; `nearest` measures distance to it.
public struct Datacenter: Hashable, Sendable {
    public var name: String
    public var latitude: Double
    public var longitude: Double
    /// ISO 3166-1 alpha-2, upper case, if given.
    public var country: String?
    /// Two-letter continent code (AF AN AS EU NA OC SA), if given.
    public var continent: String?
    public var location: SourceLocation
    /// Below this many healthy endpoints the datacenter counts as down (`min_healthy`).
    public var minHealthy: MinHealthy? = nil
}

/// `min_healthy` of a pool or datacenter: with fewer healthy (up or degraded) members, a
/// policy node standing for the set counts as down, so the policies above it move on
/// (gdnsd's `up_thresh`, Azure Traffic Manager's minimum healthy child endpoints).
///
///     MinHealthy.percent(50).required(of: 3)   // 2: a percentage rounds up
///     MinHealthy.count(2).description          // "2"
public enum MinHealthy: Hashable, Sendable, CustomStringConvertible {
    /// 1...members.
    case count(Int)
    /// 1...100 percent of the members.
    case percent(Int)

    /// Healthy members needed out of `members`; a percentage rounds up, so 50% of 3 is 2
    /// and the set never counts as up with less than the share written.
    public func required(of members: Int) -> Int {
        switch self {
        case .count(let n): return n
        case .percent(let p): return (p * members + 99) / 100
        }
    }

    public var description: String {
        switch self {
        case .count(let n): return "\(n)"
        case .percent(let p): return "\(p)%"
        }
    }
}

/// One answerable target: its addresses, or a host name answered as CNAME.
public struct Endpoint: Hashable, Sendable {
    public var name: String
    public var v4: [IPAddress]
    public var v6: [IPAddress]
    /// When set, the endpoint answers `CNAME cname` and has no addresses.
    public var cname: DNSName?
    /// Index into `ConfigModel.datacenters`.
    public var datacenter: Int?
    /// 0...1000, used by `weighted` and `hashed` over a pool's members.
    public var weight: Int
    /// Index into `ConfigModel.checks`.
    public var check: Int?
    public var location: SourceLocation
}

/// A named set of endpoints.
public struct Pool: Hashable, Sendable {
    public var name: String
    public var endpoints: [Int]
    public var location: SourceLocation
    /// Below this many healthy members the pool counts as down (`min_healthy`).
    public var minHealthy: MinHealthy? = nil
}

/// A file the config names, with the place that names it (for errors found later).
public struct FileReference: Hashable, Sendable {
    public var path: String
    public var location: SourceLocation
}

/// What an operator CIDR map says about a network.
public enum CIDRTarget: Hashable, Sendable {
    /// A free label a `geo` policy can match by name.
    case label(String)
    /// Index into `ConfigModel.datacenters`: the network is located there.
    case datacenter(Int)
    case coordinates(latitude: Double, longitude: Double)
}

public struct CIDREntry: Hashable, Sendable {
    public var prefix: IPPrefix
    public var target: CIDRTarget
    public var location: SourceLocation
}

/// Where client locations come from. CIDR entries win over the databases by longest prefix.
public struct GeoSources: Hashable, Sendable {
    public var database: FileReference? = nil
    public var asnDatabase: FileReference? = nil
    public var cidr: [CIDREntry] = []
    public init() {}
}

/// One key of a `geo` policy, most specific kinds first in matching order.
public enum GeoKey: Hashable, Sendable, CustomStringConvertible {
    /// A CIDR-map label or datacenter name.
    case label(String)
    case asn(UInt32)
    /// Country plus subdivision ISO code, e.g. `US-CA`.
    case subdivision(country: String, code: String)
    case country(String)
    case continent(String)

    public var description: String {
        switch self {
        case .label(let s): return "label \(s)"
        case .asn(let n): return "AS\(n)"
        case .subdivision(let c, let s): return "\(c)-\(s)"
        case .country(let c): return "country \(c)"
        case .continent(let c): return "continent \(c)"
        }
    }
}

/// What a node does when nothing under it is healthy.
public enum WhenAllDown: Hashable, Sendable, CustomStringConvertible {
    /// Answer as if everything under the node were up (Route 53's behaviour).
    case open
    /// Report failure so the parent tries its next choice (at the top: `open`).
    case parent
    case nodata
    /// Fixed records: addresses, or a CNAME target.
    case fallback(addresses: [IPAddress], cname: DNSName?)

    public var description: String {
        switch self {
        case .open: return "open"
        case .parent: return "parent"
        case .nodata: return "nodata"
        case .fallback: return "fallback"
        }
    }
}

/// A node of a policy tree. Trees are stored flat in `ConfigModel.nodes`; children are indices.
public struct PolicyNode: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// All usable members answer. `name` is the pool, datacenter or endpoint it came from.
        case pool(name: String, endpoints: [Int])
        case failover(children: [Int])
        case weighted(children: [Int], weights: [Int])
        case geo(keys: [GeoKey], children: [Int], defaultChild: Int?)
        /// `datacenters[i]` is child i's datacenter; `biasKm[i]` is subtracted from its distance.
        case nearest(children: [Int], datacenters: [Int], biasKm: [Double], count: Int)
        case subnet(prefixes: [IPPrefix], children: [Int], defaultChild: Int?)
        case multivalue(name: String, endpoints: [Int], count: Int)
        case hashed(children: [Int], weights: [Int], v4Prefix: Int, v6Prefix: Int)
    }
    public var kind: Kind
    public var whenAllDown: WhenAllDown
    public var location: SourceLocation
    /// Healthy endpoints (up or degraded, of `ConfigModel.endpointsUnder` this node) it needs
    /// to count as up, resolved from the `min_healthy` of the pool or datacenter the node
    /// stands for; 0 means no minimum. Below it the node answers nothing and its
    /// `when_all_down` decides, as when everything under it is down.
    public var minHealthy: Int = 0

    /// Short kind name used in traces and errors.
    public var kindName: String {
        switch kind {
        case .pool: return "pool"
        case .failover: return "failover"
        case .weighted: return "weighted"
        case .geo: return "geo"
        case .nearest: return "nearest"
        case .subnet: return "subnet"
        case .multivalue: return "multivalue"
        case .hashed: return "hashed"
        }
    }

    /// The nodes this one chooses between, in order; `geo` and `subnet` list their default last.
    public var children: [Int] {
        switch kind {
        case .pool, .multivalue: return []
        case .failover(let c), .weighted(let c, _), .nearest(let c, _, _, _), .hashed(let c, _, _, _): return c
        case .geo(_, let c, let d), .subnet(_, let c, let d): return d.map { c + [$0] } ?? c
        }
    }

    /// Every endpoint the tree at `root` can answer with, each once, in first-seen order
    /// (depth first, children in order). The one walk behind `ConfigModel.endpointsUnder`;
    /// the loader calls it while `nodes` is still growing.
    ///
    ///     PolicyNode.endpoints(under: name.root, in: model.nodes)   // == model.endpointsUnder[name.root]
    public static func endpoints(under root: Int, in nodes: [PolicyNode]) -> [Int] {
        var seen = Set<Int>(), out: [Int] = []
        for n in subtree(root, in: nodes) {
            switch nodes[n].kind {
            case .pool(_, let eps), .multivalue(_, let eps, _):
                for e in eps where seen.insert(e).inserted { out.append(e) }
            default: break
            }
        }
        return out
    }

    /// The most addresses any node's answer can hold, by what the evaluators add: a pool
    /// all its members' addresses (the larger family of each), `multivalue` its `n` largest
    /// members, `nearest` its `n` largest choices, every other kind one choice; a
    /// `fallback` list replaces the node's answer. So it is set by the answers configured,
    /// not by the number of endpoints. At least 1.
    public static func maxAddresses(in nodes: [PolicyNode], endpoints: [Endpoint]) -> Int {
        func size(_ e: Int) -> Int { e >= 0 && e < endpoints.count ? max(endpoints[e].v4.count, endpoints[e].v6.count) : 0 }
        func largest(_ sizes: [Int], _ n: Int) -> Int { sizes.sorted(by: >).prefix(max(n, 0)).reduce(0, +) }
        // Children come before their parents in `nodes` (the loader adds a node after its
        // children), so one pass in order sees every child's size first; a child listed
        // later (not built by the loader) counts as 0 rather than looping.
        var memo = [Int](repeating: 0, count: nodes.count)
        for (i, n) in nodes.enumerated() {
            func child(_ c: Int) -> Int { c >= 0 && c < i ? memo[c] : 0 }
            var m: Int
            switch n.kind {
            case .pool(_, let eps): m = eps.reduce(0) { $0 + size($1) }
            case .multivalue(_, let eps, let count): m = largest(eps.map(size), count)
            case .nearest(let c, _, _, let count): m = largest(c.map(child), count)
            default: m = n.children.map(child).max() ?? 0
            }
            if case .fallback(let addresses, _) = n.whenAllDown { m = max(m, addresses.count) }
            memo[i] = m
        }
        return max(memo.max() ?? 0, 1)
    }

    /// The nodes of the tree at `root`, `root` first, depth first with children in order.
    /// Bounded: each node is visited at most once, so a malformed tree cannot loop.
    public static func subtree(_ root: Int, in nodes: [PolicyNode]) -> [Int] {
        var visited = Set<Int>(), out: [Int] = []
        var stack = [root]
        while let n = stack.popLast() {
            guard n >= 0, n < nodes.count, visited.insert(n).inserted else { continue }
            out.append(n)
            stack.append(contentsOf: nodes[n].children.reversed())
        }
        return out
    }
}

/// A name answered by a policy rather than by the master file.
public struct GSLBName: Hashable, Sendable {
    /// Absolute owner name.
    public var owner: DNSName
    public var zone: DNSName
    public var answersA: Bool
    public var answersAAAA: Bool
    public var ttl: UInt32
    /// The TTL of answers while an endpoint under the name is failing or flapping
    /// (`HealthSnapshot.suspect`): `ttl_when_failing`, by default the smallest check interval
    /// among the name's endpoints (at least 1 s); never above `ttl`.
    public var ttlWhenFailing: UInt32
    /// Index into `ConfigModel.nodes`.
    public var root: Int
    /// Seconds; passed to the health layer.
    public var rto: Double?
    /// False when the operator accepts a failover budget over `rto` (`rto: { target: 30s,
    /// enforce: false }`); otherwise a config whose budget exceeds it does not load.
    public var rtoEnforced: Bool = true
    public var location: SourceLocation
}

/// The validated, immutable configuration. Build it with `ConfigLoader.load(path:)`.
///
///     let model = try ConfigLoader.load(path: "zones/meridian.yaml")
///     let www = model.names[model.nameIndex[try DNSName("www.example.com.")]!]
///     model.endpoints.count   // HealthSnapshot.states is indexed the same way
public final class ConfigModel: Sendable {
    /// The file this was loaded from.
    public let file: String
    public let server: ServerSettings
    public let zones: [ZoneSource]
    public let geo: GeoSources
    public let datacenters: [Datacenter]
    public let endpoints: [Endpoint]
    public let pools: [Pool]
    /// Check templates; `checkSpec(forEndpoint:)` fills in the host.
    public let checks: [CheckSpec]
    public let nodes: [PolicyNode]
    /// Per node (same index as `nodes`): every endpoint its tree can answer with, each once,
    /// in first-seen order. Computed once here for the router (health of a subtree), the
    /// failover budgets, drills and status.
    public let endpointsUnder: [[Int]]
    public let names: [GSLBName]
    /// Owner name (case-insensitive) to index into `names`.
    public let nameIndex: [DNSName: Int]
    /// The most addresses one answer can hold (at least 1): what a routing result and a
    /// cached decision reserve. See `PolicyNode.maxAddresses(in:endpoints:)`.
    public let maxAnswerAddresses: Int
    /// Endpoint name to its index (the first of that name).
    private let endpointByName: [String: Int]
    /// `transfers:`: zone transfer ACLs, TSIG keys and the GSLB view for secondaries.
    public let transfers: TransferSettings

    public init(file: String, server: ServerSettings, zones: [ZoneSource], geo: GeoSources,
                datacenters: [Datacenter], endpoints: [Endpoint], pools: [Pool], checks: [CheckSpec],
                nodes: [PolicyNode], names: [GSLBName], transfers: TransferSettings = TransferSettings()) {
        self.file = file; self.server = server; self.zones = zones; self.geo = geo; self.transfers = transfers
        self.datacenters = datacenters; self.endpoints = endpoints; self.pools = pools
        self.checks = checks; self.nodes = nodes; self.names = names
        endpointsUnder = nodes.indices.map { PolicyNode.endpoints(under: $0, in: nodes) }
        var idx: [DNSName: Int] = [:]
        for (i, n) in names.enumerated() { idx[n.owner] = i }
        self.nameIndex = idx
        var byName: [String: Int] = [:]
        for (i, e) in endpoints.enumerated() where byName[e.name] == nil { byName[e.name] = i }
        endpointByName = byName
        maxAnswerAddresses = PolicyNode.maxAddresses(in: nodes, endpoints: endpoints)
    }

    public func endpointIndex(named name: String) -> Int? { endpointByName[name] }

    /// The check an endpoint runs, with an empty host replaced by the endpoint's first
    /// address (or CNAME target), so one check definition serves many endpoints.
    public func checkSpec(forEndpoint i: Int) -> CheckSpec? {
        guard i < endpoints.count, let c = endpoints[i].check else { return nil }
        return checkSpec(c, host: checkHost(forEndpoint: i))
    }

    /// What makes the GSLB name `n` answer CNAME, or nil when it answers only addresses:
    /// the first CNAME endpoint under its policy, or a `fallback` host name. Such a name
    /// owns every type at its owner (RFC 1034 3.6.2); an address name owns only the types
    /// its `types:` lists, and the master file answers every other type there.
    public func cnameSource(_ n: GSLBName) -> String? {
        for i in PolicyNode.subtree(n.root, in: nodes) {
            if case .fallback(_, let c?) = nodes[i].whenAllDown { return "fallback \(c) at \(nodes[i].location)" }
        }
        return endpointsUnder[n.root].first { endpoints[$0].cname != nil }.map { "CNAME endpoint \"\(endpoints[$0].name)\"" }
    }

    /// Errors for GSLB names that clash with the master file. `staticTypes` maps each zone
    /// apex, then each GSLB owner (both lowercase), to the record types its file holds at
    /// that owner, each with the place of its first record; `cuts` maps them to the first
    /// NS record of a zone cut at or above the owner (below the apex).
    ///
    /// The policy owns A and AAAA (as `types:` lists them), or every type for a name that
    /// answers CNAME; the file keeps the rest. So these are errors: a static record of a
    /// type the policy answers (reported at the record), any static record beside a name
    /// that answers CNAME (CNAME is exclusive, RFC 1034 3.6.2) and a static CNAME beside
    /// any GSLB name (at the record), a CNAME name at the apex, which must keep its SOA and
    /// NS, and a name at or below a zone cut, which the child zone's servers answer (at
    /// the GSLB name).
    public func validate(againstStaticOwners staticTypes: [DNSName: [DNSName: [(type: RRType, location: SourceLocation)]]],
                         cuts: [DNSName: [DNSName: (owner: DNSName, location: SourceLocation)]] = [:]) -> [ConfigError] {
        var out: [ConfigError] = []
        for n in names {
            let zone = n.zone.lowercased(), owner = n.owner.lowercased()
            if let cut = cuts[zone]?[owner] {
                let whereCut = cut.owner == owner ? "at the zone cut" : "below the zone cut \(cut.owner)"
                out.append(ConfigError(n.location, "GSLB name \(n.owner) is \(whereCut) (NS at \(cut.location)): the child zone's servers answer it, not this zone"))
                continue
            }
            let cname = cnameSource(n)
            if let cname, owner == zone {
                out.append(ConfigError(n.location, "GSLB name \(n.owner) (the zone apex) answers CNAME (\(cname)), but the apex must keep its SOA and NS records: a GSLB name at the apex can answer only addresses"))
                continue
            }
            for s in staticTypes[zone]?[owner] ?? [] {
                let here = "static \(s.type) record at \(n.owner) conflicts with the GSLB name at \(n.location)"
                if let cname {
                    out.append(ConfigError(s.location, "\(here), which answers CNAME (\(cname)): a CNAME owns its name (RFC 1034 3.6.2), so no other record may sit beside it"))
                } else if s.type == .cname {
                    out.append(ConfigError(s.location, "\(here): a CNAME owns its name (RFC 1034 3.6.2), so it cannot sit beside the GSLB name's addresses"))
                } else if (s.type == .a && n.answersA) || (s.type == .aaaa && n.answersAAAA) {
                    out.append(ConfigError(s.location, "\(here), whose policy answers \(s.type) (remove the record, or leave \(s.type) out of the name's types)"))
                }
            }
        }
        return out
    }
}
