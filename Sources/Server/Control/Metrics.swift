import Answering
import CShim
import Config
import DNSWire
import Foundation
import Health
import Synchronization

/// Query counters for one worker thread: a fixed table of 64-bit slots that only that
/// worker writes (`cshim_add64`: a relaxed load and store, no locked instruction, no
/// allocation), read by the metrics scrape with relaxed loads. The table is
/// protocol (udp, tcp) x qtype bucket x rcode, plus truncated responses per protocol.
///
///     let block = metrics.register()         // once, on the worker thread
///     block.count(answer, sent: n, tcp: false)
final class QueryCounterBlock: @unchecked Sendable {
    /// The query types counted by name; every other type is `other`.
    static let qtypes: [UInt16] = [1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 48, 64, 65, 255, 257]
    static let qtypeNames = ["A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DS", "DNSKEY",
                             "SVCB", "HTTPS", "ANY", "CAA", "other"]
    static var qtypeBuckets: Int { qtypeNames.count }
    /// RCODE 0...23 (RFC 6895 section 2.3 lists them up to BADCOOKIE 23); larger values share the last.
    static let rcodes = 24
    static var querySlots: Int { 2 * qtypeBuckets * rcodes }
    static var scopeBase: Int { querySlots + 4 }
    static let scopeSlots = 129

    /// Layout: queries [proto][qtype][rcode], then truncated [proto], then dropped [proto],
    /// then responses to ECS queries by the scope prefix length sent (0...128).
    let slots: UnsafeMutablePointer<UInt64>
    let slotCount: Int
    /// GSLB decisions for the configuration the worker serves; replaced (off the query path)
    /// when a reload changes the configuration. Guarded for the scraper by `decisionLock`.
    private(set) var decisions: DecisionCounters?
    /// `decisions`, borrowed for the query path: `if let d = decisions` retained and
    /// released it on every GSLB answer. `decisions` owns it; both change only in `adopt`.
    @exclusivity(unchecked) private var decisionsRef: Unmanaged<DecisionCounters>?
    let decisionLock = Mutex<DecisionCounters?>(nil)

    init() {
        slotCount = QueryCounterBlock.scopeBase + QueryCounterBlock.scopeSlots
        slots = allocateCounterLines(slotCount)
    }

    deinit { slots.deallocate() }

    @inline(__always) static func bucket(_ qtype: UInt16) -> Int {
        for (i, t) in qtypes.enumerated() where t == qtype { return i }
        return qtypes.count
    }

    /// Counts one response from what the answering pipeline reported (no parse of the
    /// bytes): `sent` is the length that went out after rate limiting, 0 when dropped.
    @inline(__always) func count(_ a: Answer, sent: Int, tcp: Bool) {
        let proto = tcp ? 1 : 0
        guard sent >= 12 else {
            cshim_add64(slots + QueryCounterBlock.querySlots + 2 + proto, 1)
            return
        }
        let o = a.outcome
        let rcode = min(Int(o.rcode.rawValue), QueryCounterBlock.rcodes - 1)
        let b = QueryCounterBlock.bucket(o.qdcount > 0 ? o.qtype.rawValue : 0)
        cshim_add64(slots + (proto * QueryCounterBlock.qtypeBuckets + b) * QueryCounterBlock.rcodes + rcode, 1)
        // A response cut to its question by rate limiting (a slip) went out truncated too.
        if o.truncated || sent < a.length { cshim_add64(slots + QueryCounterBlock.querySlots + proto, 1) }
        if o.ecs { cshim_add64(slots + QueryCounterBlock.scopeBase + min(Int(o.scope), QueryCounterBlock.scopeSlots - 1), 1) }
        if a.gslbName >= 0, let ref = decisionsRef {
            ref._withUnsafeGuaranteedRef { d in
                let column = d.column(endpoint: a.endpoint)
                d.count(name: Int(a.gslbName), column: column)
                d.count(node: Int(a.node), column: column)
            }
        }
    }

    /// Called by the worker when it adopts a snapshot whose configuration changed.
    func adopt(model: ConfigModel?) {
        guard let model else { return }
        if decisions?.model === model { return }
        let d = DecisionCounters(model: model)
        decisions = d
        decisionsRef = Unmanaged.passUnretained(d)
        decisionLock.withLock { $0 = d }
    }

    @inline(__always) func load(_ i: Int) -> UInt64 { cshim_load64(slots + i) }
}

/// GSLB decisions per name and datacenter of the answer, for one configuration. The
/// address-to-datacenter map is built when a worker adopts the configuration, so the query
/// path only looks up a dictionary (no allocation).
final class DecisionCounters: @unchecked Sendable {
    let model: ConfigModel
    /// Columns: one per datacenter, then `none` (NODATA, CNAME, or an endpoint without one).
    let columns: Int
    let slots: UnsafeMutablePointer<UInt64>
    let count: Int
    /// The same per policy node that answered: `nodeCount` rows of `columns`.
    let nodeSlots: UnsafeMutablePointer<UInt64>
    let nodeCount: Int
    let datacenterOfEndpoint: [Int]

    init(model: ConfigModel) {
        self.model = model
        columns = model.datacenters.count + 1
        count = max(1, model.names.count * columns)
        slots = allocateCounterLines(count)
        nodeCount = model.nodes.count
        nodeSlots = allocateCounterLines(max(1, nodeCount * columns))
        // The column of each endpoint (its datacenter, else `none`), indexed as the model's
        // endpoints: the router reports which endpoint answered.
        datacenterOfEndpoint = model.endpoints.map { $0.datacenter ?? (model.datacenters.count) }
    }

    deinit { slots.deallocate(); nodeSlots.deallocate() }

    /// The column for an answer led by `endpoint` (-1: no endpoint, as for NODATA).
    @inline(__always) func column(endpoint: Int32) -> Int {
        endpoint >= 0 && Int(endpoint) < datacenterOfEndpoint.count ? datacenterOfEndpoint[Int(endpoint)] : columns - 1
    }

    @inline(__always) func count(name: Int, column: Int) {
        guard name >= 0, name < model.names.count, column >= 0, column < columns else { return }
        cshim_add64(slots + name * columns + column, 1)
    }

    @inline(__always) func count(node: Int, column: Int) {
        guard node >= 0, node < nodeCount, column >= 0, column < columns else { return }
        cshim_add64(nodeSlots + node * columns + column, 1)
    }
}

/// `count` zeroed counters on cache lines of their own: a worker writes its counters per
/// query, and another worker's memory on the same line would be pulled back and forth
/// between the cores (false sharing). Freed with `deallocate()`.
func allocateCounterLines(_ count: Int) -> UnsafeMutablePointer<UInt64> {
    let perLine = 64 / MemoryLayout<UInt64>.stride
    let rounded = (count + perLine - 1) / perLine * perLine
    let raw = UnsafeMutableRawPointer.allocate(byteCount: rounded * MemoryLayout<UInt64>.stride, alignment: 64)
    let p = raw.bindMemory(to: UInt64.self, capacity: rounded)
    p.initialize(repeating: 0, count: rounded)
    return p
}

/// Every worker's counter block, for the scrape. Registration happens once per worker
/// thread at start; blocks live as long as the process.
public final class QueryMetrics: Sendable {
    private let blocks = Mutex<[QueryCounterBlock]>([])
    public init() {}

    func register() -> QueryCounterBlock {
        let b = QueryCounterBlock()
        blocks.withLock { $0.append(b) }
        return b
    }

    var allBlocks: [QueryCounterBlock] { blocks.withLock { $0 } }
}

/// Renders the Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then
/// one sample per line; label values escaped (backslash, quote, newline).
enum MetricsRenderer {
    static func render(_ c: ControlContext, http: ControlHTTPStats? = nil) -> String {
        var out = PromWriter()
        let s = c.snapshot
        out.family("meridian_build_info", "gauge", "Build information; the value is always 1.")
        out.sample("meridian_build_info", [("version", MeridianVersion.string)], 1)

        // Queries by protocol, qtype and rcode, summed over workers.
        let blocks = c.metrics.allBlocks
        var sums = [UInt64](repeating: 0, count: QueryCounterBlock.scopeBase + QueryCounterBlock.scopeSlots)
        for b in blocks { for i in 0..<sums.count { sums[i] &+= b.load(i) } }
        out.family("meridian_dns_responses_total", "counter", "DNS responses sent, by transport, query type and response code.")
        let protos = ["udp", "tcp"]
        for p in 0..<2 {
            for q in 0..<QueryCounterBlock.qtypeBuckets {
                for r in 0..<QueryCounterBlock.rcodes {
                    let v = sums[(p * QueryCounterBlock.qtypeBuckets + q) * QueryCounterBlock.rcodes + r]
                    guard v > 0 else { continue }
                    out.sample("meridian_dns_responses_total",
                               [("protocol", protos[p]), ("qtype", QueryCounterBlock.qtypeNames[q]), ("rcode", rcodeName(r))], Double(v))
                }
            }
        }
        out.family("meridian_dns_responses_truncated_total", "counter", "Responses sent with the TC bit set.")
        out.family("meridian_dns_queries_dropped_total", "counter", "Queries answered with nothing (malformed, or response rate limited).")
        for p in 0..<2 {
            out.sample("meridian_dns_responses_truncated_total", [("protocol", protos[p])], Double(sums[QueryCounterBlock.querySlots + p]))
            out.sample("meridian_dns_queries_dropped_total", [("protocol", protos[p])], Double(sums[QueryCounterBlock.querySlots + 2 + p]))
        }

        // ECS scope prefix lengths sent, as a cumulative histogram.
        out.family("meridian_dns_ecs_scope_prefix_length", "histogram", "SCOPE PREFIX-LENGTH of the Client Subnet option in responses to queries that carried one (RFC 7871 7.2).")
        var cumulative: UInt64 = 0, sum: UInt64 = 0, next = 0
        let bounds = [0, 8, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96, 128]
        for (i, le) in bounds.enumerated() {
            while next <= le { let v = sums[QueryCounterBlock.scopeBase + next]; cumulative &+= v; sum &+= v &* UInt64(next); next += 1 }
            let h = "meridian_dns_ecs_scope_prefix_length"
            out.sample(h + "_bucket", [("le", "\(le)")], Double(cumulative), family: h)
            if i == bounds.count - 1 {
                out.sample(h + "_bucket", [("le", "+Inf")], Double(cumulative), family: h)
                out.sample(h + "_sum", [], Double(sum), family: h)
                out.sample(h + "_count", [], Double(cumulative), family: h)
            }
        }

        let k = c.counters
        out.family("meridian_udp_datagrams_received_total", "counter", "UDP datagrams read from the sockets.")
        out.sample("meridian_udp_datagrams_received_total", [], Double(k.udpReceived))
        out.family("meridian_udp_socket_errors_total", "counter", "UDP socket errors on receive or send.")
        out.sample("meridian_udp_socket_errors_total", [], Double(k.udpErrors))
        out.family("meridian_tcp_connections_open", "gauge", "TCP connections open now.")
        out.sample("meridian_tcp_connections_open", [], Double(k.tcpOpen))
        out.family("meridian_tcp_connections_accepted_total", "counter", "TCP connections accepted.")
        out.sample("meridian_tcp_connections_accepted_total", [], Double(k.tcpAccepted))
        out.family("meridian_tcp_connections_rejected_total", "counter", "TCP connections closed at once because a connection cap was reached.")
        out.sample("meridian_tcp_connections_rejected_total", [], Double(k.tcpRejected))
        out.family("meridian_tcp_timeouts_total", "counter", "TCP connections closed by an idle or read timeout.")
        out.sample("meridian_tcp_timeouts_total", [], Double(k.tcpTimeouts))
        out.family("meridian_zone_transfers_total", "counter", "Zone transfer requests (AXFR, IXFR) by result: transferred, refused (zone or ACL), notauth (TSIG), formerr.")
        for r in ["transferred", "refused", "notauth", "formerr"] {
            out.sample("meridian_zone_transfers_total", [("result", r)], Double(k.transfers[r] ?? 0))
        }

        if let h = http?.snapshot {
            out.family("meridian_control_connections_accepted_total", "counter", "Control API connections accepted.")
            out.sample("meridian_control_connections_accepted_total", [], Double(h.accepted))
            out.family("meridian_control_connections_refused_total", "counter", "Control API connections refused with 503 at a connection limit (every slot busy), by limit.")
            out.family("meridian_control_connections_evicted_total", "counter", "Control API connections still sending their request, closed with 503 to make room for a new one, by limit.")
            for l in ConnectionLimit.allCases {
                out.sample("meridian_control_connections_refused_total", [("reason", l.rawValue)], Double(h.refused[l, default: 0]))
                out.sample("meridian_control_connections_evicted_total", [("reason", l.rawValue)], Double(h.evicted[l, default: 0]))
            }
            out.family("meridian_control_request_timeouts_total", "counter", "Control API connections closed because the request head or body, or the reply, did not move in time, by phase.")
            for p in ReadPhase.allCases {
                out.sample("meridian_control_request_timeouts_total", [("phase", p.rawValue)], Double(h.timeouts[p, default: 0]))
            }
            out.family("meridian_control_bad_requests_total", "counter", "Control API requests refused as malformed or too large (4xx from the HTTP layer).")
            out.sample("meridian_control_bad_requests_total", [], Double(h.badRequests))
        }

        if let rrl = s.rateLimiter {
            out.family("meridian_rrl_limited_total", "counter", "Responses over the rate limit (dropped or, every slip-th, sent truncated).")
            out.sample("meridian_rrl_limited_total", [], Double(rrl.limited.load(ordering: .relaxed)))
            out.family("meridian_rrl_slipped_total", "counter", "Responses sent truncated by response rate limiting (slip).")
            out.sample("meridian_rrl_slipped_total", [], Double(rrl.slipped.load(ordering: .relaxed)))
        }

        if let tap = s.dnstap {
            out.family("meridian_dnstap_queries_total", "counter", "Sampled queries for the dnstap log: queued by the workers, dropped because a worker's queue was full, or not logged because a worker reached max_per_second (each query itself was answered).")
            out.sample("meridian_dnstap_queries_total", [("result", "queued")], Double(tap.queued))
            out.sample("meridian_dnstap_queries_total", [("result", "dropped")], Double(tap.dropped))
            out.sample("meridian_dnstap_queries_total", [("result", "capped")], Double(tap.capped))
            out.family("meridian_dnstap_messages_written_total", "counter", "dnstap messages (AUTH_QUERY, AUTH_RESPONSE) written to the file or socket.")
            out.sample("meridian_dnstap_messages_written_total", [], Double(tap.written.load(ordering: .relaxed)))
            out.family("meridian_dnstap_messages_lost_total", "counter", "dnstap messages lost because a write to the output failed.")
            out.sample("meridian_dnstap_messages_lost_total", [], Double(tap.lost.load(ordering: .relaxed)))
            out.family("meridian_dnstap_connections_total", "counter", "dnstap outputs opened (the first and every reconnection).")
            out.sample("meridian_dnstap_connections_total", [], Double(tap.connections.load(ordering: .relaxed)))
        }

        out.family("meridian_reloads_total", "counter", "Configuration loads by outcome (the first load counts as ok).")
        out.sample("meridian_reloads_total", [("result", "ok")], Double(c.reloads.ok.load(ordering: .relaxed)))
        out.sample("meridian_reloads_total", [("result", "failed")], Double(c.reloads.failed.load(ordering: .relaxed)))
        out.family("meridian_reload_last_success_timestamp_seconds", "gauge", "When the configuration last loaded successfully (Unix time).")
        out.sample("meridian_reload_last_success_timestamp_seconds", [], c.reloads.lastSuccess ?? 0)
        out.family("meridian_config_generation", "gauge", "Generation of the configuration being served (moves on every successful reload).")
        out.sample("meridian_config_generation", [], Double(s.generation))
        out.family("meridian_start_timestamp_seconds", "gauge", "When the process started (Unix time).")
        out.sample("meridian_start_timestamp_seconds", [], c.startedAt)

        guard let model = s.model else { return out.text }
        // Decisions per name and datacenter, summed over the workers serving this configuration.
        let decisions = decisionTotals(blocks, model: model)
        out.family("meridian_gslb_decisions_total", "counter", "GSLB answers by name and the datacenter of the first address (none: NODATA, CNAME or no datacenter); reset on reload.")
        let cols = model.datacenters.count + 1
        for (n, name) in model.names.enumerated() {
            for col in 0..<cols {
                let v = decisions[n * cols + col]
                let dc = col < model.datacenters.count ? model.datacenters[col].name : "none"
                guard v > 0 || col < model.datacenters.count else { continue }
                out.sample("meridian_gslb_decisions_total", [("name", name.owner.description), ("datacenter", dc)], Double(v))
            }
        }

        // The same per policy node that answered, labelled with the node's path from the name's root.
        var byNode = [UInt64](repeating: 0, count: model.nodes.count * cols)
        for b in blocks {
            guard let d = b.decisionLock.withLock({ $0 }), d.model === model, d.nodeCount * d.columns >= byNode.count else { continue }
            for i in 0..<byNode.count { byNode[i] &+= cshim_load64(d.nodeSlots + i) }
        }
        out.family("meridian_gslb_policy_decisions_total", "counter", "GSLB answers by name, the policy node that answered (its path from the name's policy: each step is the kind and the choice taken) and the datacenter of the first address; reset on reload.")
        let paths = PolicyPaths(model)
        var nameOfRoot: [Int: String] = [:]
        for n in model.names { nameOfRoot[n.root] = n.owner.description }
        for node in 0..<model.nodes.count {
            var path: String?
            for col in 0..<cols {
                let v = byNode[node * cols + col]
                guard v > 0 else { continue }
                if path == nil { path = paths.path(of: node) }
                let dc = col < model.datacenters.count ? model.datacenters[col].name : "none"
                out.sample("meridian_gslb_policy_decisions_total",
                           [("name", nameOfRoot[paths.root(of: node)] ?? ""), ("node", path ?? ""), ("datacenter", dc)], Double(v))
            }
        }

        let monitor = c.monitor
        let eps = monitor?.endpointStatus() ?? []
        out.family("meridian_endpoint_health", "gauge", "Effective endpoint health as queries see it: 1 up, 0 down, the weight factor when degraded.")
        out.family("meridian_endpoint_overridden", "gauge", "1 when an operator override forces the endpoint's state.")
        for (i, ep) in model.endpoints.enumerated() {
            let dc = ep.datacenter.map { model.datacenters[$0].name } ?? ""
            let labels = [("endpoint", ep.name), ("datacenter", dc)]
            out.sample("meridian_endpoint_health", labels, s.health.state(i).weightFactor)
            out.sample("meridian_endpoint_overridden", labels, i < eps.count && eps[i].override != nil ? 1 : 0)
        }
        if let m = monitor {
            let checks = m.status()
            out.family("meridian_health_check_up", "gauge", "Checked state of each health check: 1 up, 0 down, the factor when degraded.")
            out.family("meridian_health_check_latency_seconds", "gauge", "Duration of the last attempt of each health check.")
            out.family("meridian_health_check_runs_total", "counter", "Health check attempts.")
            out.family("meridian_health_check_failures_total", "counter", "Health check attempts that failed.")
            for ch in checks {
                let l = [("check", ch.name)]
                out.sample("meridian_health_check_up", l, ch.state.weightFactor)
                if let r = ch.lastResult { out.sample("meridian_health_check_latency_seconds", l, r.latency) }
                out.sample("meridian_health_check_runs_total", l, Double(ch.runs))
                out.sample("meridian_health_check_failures_total", l, Double(ch.failures))
            }
            out.family("meridian_health_overrides", "gauge", "Operator overrides in force.")
            out.sample("meridian_health_overrides", [], Double(m.overrides().count))
        }
        if let f = c.fleet {
            out.family("meridian_fleet_connected", "gauge", "1 while this instance reaches etcd, 0 while it serves its last overrides (fail static).")
            out.sample("meridian_fleet_connected", [], f.connected ? 1 : 0)
            out.family("meridian_fleet_applied_revision", "gauge", "The etcd revision of the fleet overrides this instance has applied.")
            out.sample("meridian_fleet_applied_revision", [], Double(f.appliedRevision))
        }
        if let q = c.quorum {
            out.family("meridian_quorum_fallback", "gauge", "1 while this instance decides endpoint health from its own observations alone because etcd was out of reach longer than fleet.quorum_fallback.")
            out.sample("meridian_quorum_fallback", [], q.fallback ? 1 : 0)
            out.family("meridian_quorum_vantages", "gauge", "Live vantages (instances with an unexpired lease) in the last set read from etcd.")
            out.sample("meridian_quorum_vantages", [], Double(q.vantageCount))
        }
        return out.text
    }

    /// GSLB decisions per (name, datacenter column), summed over the workers serving `model`:
    /// row-major, `model.datacenters.count + 1` columns (the last is `none`).
    static func decisionTotals(_ blocks: [QueryCounterBlock], model: ConfigModel) -> [UInt64] {
        var decisions = [UInt64](repeating: 0, count: model.names.count * (model.datacenters.count + 1))
        for b in blocks {
            guard let d = b.decisionLock.withLock({ $0 }), d.model === model, d.count >= decisions.count else { continue }
            for i in 0..<decisions.count { decisions[i] &+= cshim_load64(d.slots + i) }
        }
        return decisions
    }

    static func rcodeName(_ r: Int) -> String {
        let names = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
                     "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI"]
        if r < names.count { return names[r] }
        if r == 16 { return "BADVERS" }
        if r == 23 { return "BADCOOKIE" }
        return "RCODE\(r)"
    }
}

/// Accumulates exposition text; samples are grouped under their family's HELP and TYPE
/// lines (the format requires a family's samples to be contiguous), in the order the
/// families were declared.
struct PromWriter {
    private var order: [String] = []
    private var headers: [String: String] = [:]
    private var samples: [String: [String]] = [:]

    var text: String {
        var t = ""
        for n in order { t += headers[n, default: ""]; for l in samples[n, default: []] { t += l } }
        return t
    }

    mutating func family(_ name: String, _ type: String, _ help: String) {
        guard headers[name] == nil else { return }
        order.append(name)
        headers[name] = "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    /// One sample; `family` names the family it belongs to when that differs from the
    /// sample's name (a histogram's `_bucket`, `_sum` and `_count`).
    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double, family: String? = nil) {
        var line = name
        if !labels.isEmpty {
            line += "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        line += " " + format(value) + "\n"
        samples[family ?? name, default: []].append(line)
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

/// Paths of policy nodes from a name's root, for metric labels: one step per level, the
/// node's kind and the choice that leads on (`geo:GB`, `failover:1`, `weighted:0`), ending
/// with the answering node (`pool:lon`, or the kind of a node that answered by its
/// `when_all_down`). `geo` and `subnet` name their key or `default`; the other kinds give
/// the child's position in their list.
///
///     let paths = PolicyPaths(model)          // once per configuration
///     paths.path(of: node)                    // "geo:GB/failover:0/pool:lon-1"
struct PolicyPaths {
    let model: ConfigModel
    /// Each node's parent and its position among the parent's children, or -1 at a root.
    private var parent: [Int]
    private var position: [Int]

    init(_ model: ConfigModel) {
        self.model = model
        parent = Array(repeating: -1, count: model.nodes.count)
        position = Array(repeating: -1, count: model.nodes.count)
        for (n, node) in model.nodes.enumerated() {
            for (i, c) in node.children.enumerated() where c >= 0 && c < parent.count {
                parent[c] = n; position[c] = i
            }
        }
    }

    /// The root of the tree that holds `node`.
    func root(of node: Int) -> Int {
        var n = node
        for _ in 0..<64 where n >= 0 && n < parent.count && parent[n] >= 0 { n = parent[n] }
        return n
    }

    func path(of node: Int) -> String {
        guard node >= 0, node < model.nodes.count else { return "none" }
        var steps: [String] = []
        let leaf = model.nodes[node]
        switch leaf.kind {
        case .pool(let name, _), .multivalue(let name, _, _): steps.append("\(leaf.kindName):\(name)")
        default: steps.append(leaf.kindName)
        }
        var n = node
        // Bounded by the tree depth limit; the count guards against a malformed model.
        for _ in 0..<64 {
            let p = parent[n]
            guard p >= 0 else { break }
            let up = model.nodes[p]
            steps.append("\(up.kindName):\(Self.choiceLabel(up, position[n]))")
            n = p
        }
        return steps.reversed().joined(separator: "/")
    }

    static func choiceLabel(_ node: PolicyNode, _ i: Int) -> String {
        switch node.kind {
        case .geo(let keys, let children, let d):
            if d != nil && i == children.count { return "default" }
            guard i < keys.count else { return "\(i)" }
            switch keys[i] {
            case .label(let s), .country(let s), .continent(let s): return s
            default: return keys[i].description
            }
        case .subnet(let prefixes, let children, let d):
            if d != nil && i == children.count { return "default" }
            return i < prefixes.count ? prefixes[i].description : "\(i)"
        default:
            return "\(i)"
        }
    }
}
