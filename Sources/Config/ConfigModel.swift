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
    public init() {}
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
    /// the loader calls it while `nodes` is still growing. Bounded: each node is visited at
    /// most once, so a malformed tree cannot loop.
    ///
    ///     PolicyNode.endpoints(under: name.root, in: model.nodes)   // == model.endpointsUnder[name.root]
    public static func endpoints(under root: Int, in nodes: [PolicyNode]) -> [Int] {
        var visited = Set<Int>(), seen = Set<Int>(), out: [Int] = []
        var stack = [root]
        while let n = stack.popLast() {
            guard n >= 0, n < nodes.count, visited.insert(n).inserted else { continue }
            switch nodes[n].kind {
            case .pool(_, let eps), .multivalue(_, let eps, _):
                for e in eps where seen.insert(e).inserted { out.append(e) }
            default:
                stack.append(contentsOf: nodes[n].children.reversed())
            }
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

    public init(file: String, server: ServerSettings, zones: [ZoneSource], geo: GeoSources,
                datacenters: [Datacenter], endpoints: [Endpoint], pools: [Pool], checks: [CheckSpec],
                nodes: [PolicyNode], names: [GSLBName]) {
        self.file = file; self.server = server; self.zones = zones; self.geo = geo
        self.datacenters = datacenters; self.endpoints = endpoints; self.pools = pools
        self.checks = checks; self.nodes = nodes; self.names = names
        endpointsUnder = nodes.indices.map { PolicyNode.endpoints(under: $0, in: nodes) }
        var idx: [DNSName: Int] = [:]
        for (i, n) in names.enumerated() { idx[n.owner] = i }
        self.nameIndex = idx
    }

    public func endpointIndex(named name: String) -> Int? { endpoints.firstIndex { $0.name == name } }

    /// The check an endpoint runs, with an empty host replaced by the endpoint's first
    /// address (or CNAME target), so one check definition serves many endpoints.
    public func checkSpec(forEndpoint i: Int) -> CheckSpec? {
        guard i < endpoints.count, let c = endpoints[i].check else { return nil }
        return checkSpec(c, host: checkHost(forEndpoint: i))
    }

    /// Errors for GSLB names that are also owners in a master file (a name is either
    /// static or GSLB). `staticOwners` maps each zone apex to the owner names its file holds.
    public func validate(againstStaticOwners staticOwners: [DNSName: Set<DNSName>]) -> [ConfigError] {
        var out: [ConfigError] = []
        for n in names {
            if let owners = staticOwners[n.zone], owners.contains(n.owner) {
                out.append(ConfigError(n.location, "\(n.owner) is both a static name in zone \(n.zone) and a GSLB name"))
            }
        }
        return out
    }
}
