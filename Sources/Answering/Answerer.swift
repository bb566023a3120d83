import Config
import DNSSEC
import DNSWire
import Routing
import Zones

/// What answering one query produced: the bytes' length and everything the stages after
/// it (response rate limiting, metrics, query logging) need, so none of them reads the
/// response again.
public struct Answer: Sendable {
    /// Bytes of the response in the output buffer; 0 sends nothing.
    public var length: Int
    /// Kind, RCODE, question type, answer count, TC and ECS scope, as the engine wrote them.
    public var outcome: EngineOutcome
    /// The GSLB name that answered (its index in the configuration), or -1.
    public var gslbName: Int32
    /// The endpoint whose records come first in a GSLB answer, or -1 (NODATA, fallback).
    public var endpoint: Int32
    /// The policy node that answered the GSLB name (`RoutingResult.answeringNode`), or -1.
    public var node: Int32 = -1
}

/// The answering pipeline of one worker: query, zone lookup, policy decision for GSLB
/// names, encoding, OPT. The zone engine (`QueryEngine`) runs the authoritative algorithm
/// and stops at GSLB names; this type asks the router (through a per-worker decision
/// cache) and writes their records with `MessageWriter`, then lets the engine go on
/// (CNAME targets, negative answers).
///
/// One per worker thread: it keeps scratch state and is not thread-safe. It allocates
/// nothing per query once `adopt` sized its storage for the configuration.
///
///     let answerer = Answerer()
///     answerer.adopt(router: snapshot.router)          // on every new configuration
///     let a = answerer.respond(query: q, client: addr, tcp: false, zones: zones,
///                              options: options, health: health, out: buffer, now: now)
///     send(buffer[0..<a.length])
public final class Answerer {
    public let engine = QueryEngine()
    // Per-worker routing state: result storage sized at config time, a decision cache
    // keyed by client network, and a generator for weighted and multivalue choices.
    @exclusivity(unchecked) private var result = RoutingResult(capacity: 0)
    @exclusivity(unchecked) private var cache: DecisionCache?
    @exclusivity(unchecked) private var random = RoutingRandom()
    // Borrowed views for the query path: reading a strong reference held in a var retains
    // and releases it on every query (2-3% of a GSLB query's CPU in the profile). The
    // router is owned by the snapshot the caller keeps; the cache by `cache`.
    // Unmanaged, so `answer` reads them as guaranteed references: binding an
    // `unowned(unsafe)` value to a local still retains and releases it.
    @exclusivity(unchecked) private var router: Unmanaged<Router>?
    @exclusivity(unchecked) private var currentCache: Unmanaged<DecisionCache>?
    /// The engine's writer, read the same way: binding `engine.writer` to a local retained
    /// and released it on every GSLB answer. `engine` (a `let`) owns it for our lifetime.
    private let writer: Unmanaged<MessageWriter>
    // DNSSEC: the signed zones of the snapshot (borrowed, as the router) and this worker's signer.
    @exclusivity(unchecked) private unowned(unsafe) var signing: SigningSet?
    /// Whether `signing` is set: tested first, because `if let signing` retains and releases
    /// it (even nil, through two calls) on every query.
    @exclusivity(unchecked) private var signs = false
    @exclusivity(unchecked) private var signer: Signer?
    private var signingIdentity: ObjectIdentifier?
    // Per-query: what the GSLB step decided.
    @exclusivity(unchecked) private var gslbName: Int32 = -1
    @exclusivity(unchecked) private var endpoint: Int32 = -1
    @exclusivity(unchecked) private var node: Int32 = -1

    public init() {
        writer = Unmanaged.passUnretained(engine.writer)
    }

    /// Takes the routing configuration of a new snapshot. The caller keeps the snapshot
    /// that owns `router` alive while it answers with it.
    public func adopt(router r: Router?, signing s: SigningSet? = nil) {
        // New keys: drop the signer's OpenSSL contexts for the old ones (a context only ever
        // signs for the key identity it was made for, so keeping one would still be correct).
        let identity = s.map { ObjectIdentifier($0) }
        if identity != signingIdentity { signer?.forgetKeys() }
        signingIdentity = identity
        signing = s
        signs = s != nil
        if s != nil && signer == nil { signer = Signer() }
        router = r.map { Unmanaged.passUnretained($0) }
        if let r {
            if cache == nil || result.addresses.capacity < r.maxAddresses {
                result = r.makeResult()
                cache = DecisionCache(router: r)
            }
        }
        // The cache would keep the old router (and its model) alive until the next GSLB query.
        cache?.forget()
        currentCache = cache.map { Unmanaged.passUnretained($0) }
    }

    /// Writes the response to `query` into `out`.
    public func respond(query: UnsafeRawBufferPointer, client: IPAddress, tcp: Bool, zones: ZoneSet,
                        options: EngineOptions, health: HealthSnapshot, out: UnsafeMutableRawBufferPointer,
                        now: UInt32) -> Answer {
        gslbName = -1
        endpoint = -1
        node = -1
        var step = engine.begin(query: query, tcp: tcp, zones: zones, options: options, out: out)
        while case .gslb(let question) = step {
            do {
                let written = try answer(question, source: client, health: health)
                step = engine.resume(written, zones: zones, options: options)
            } catch {
                step = engine.resumeTruncated()
            }
        }
        var length = engine.finish(query: query, client: client, options: options, now: now)
        var outcome = engine.outcome
        // DO set and a signed zone: sign the finished answer (RRSIGs from the shared cache,
        // proofs of denial), once the router has tailored it.
        if signs, length > 0, engine.dnssecOK, let signing, let signer,
           let signed = signer.sign(out, length: length, limit: engine.responseLimit, zones: zones, signing: signing, now: now,
                                       compactOK: engine.compactOK) {
            length = signed.length
            outcome.rcode = signed.rcode
            if signed.truncated { outcome.truncated = true; outcome.answers = 0 }
        }
        return Answer(length: length, outcome: outcome, gslbName: gslbName, endpoint: endpoint, node: node)
    }

    /// Decides a GSLB name and writes its records into the engine's writer. A decision
    /// reused from the cache for an answer owned by the question (offset 12, the common
    /// case) is copied as the bytes written the first time; otherwise it is encoded here.
    private func answer(_ q: GSLBQuestion, source: IPAddress, health: HealthSnapshot) throws(DNSWireError) -> DynamicAnswer {
        guard let router, let currentCache else { return DynamicAnswer(records: 0, scope: 0) }
        let r: Result<DynamicAnswer, DNSWireError> = router._withUnsafeGuaranteedRef { router in
            currentCache._withUnsafeGuaranteedRef { cache in
                writer._withUnsafeGuaranteedRef { writer in
                    Result { () throws(DNSWireError) in
                        try answer(q, source: source, router: router, cache: cache, writer: writer, health: health)
                    }
                }
            }
        }
        return try r.get()
    }

    @inline(__always)
    private func answer(_ q: GSLBQuestion, source: IPAddress, router: Router, cache: DecisionCache, writer: MessageWriter,
                        health: HealthSnapshot) throws(DNSWireError) -> DynamicAnswer {
        let info = ClientInfo(source: source, subnet: engine.clientSubnet)
        let name = Int(q.index)
        gslbName = q.index
        let qtype = q.qtype
        var slot = cache.lookup(router: router, nameIndex: name, qtype: qtype, client: info, health: health)
        if slot >= 0 {
            if q.ownerOffset == 12, let p = cache.payload(slot) {
                try writer.writeBytes(p.bytes)
                endpoint = Int32(truncatingIfNeeded: p.tag)
                node = cache.answeringNode(slot)
                return DynamicAnswer(records: p.records, scope: cache.scope(slot))
            }
            cache.load(slot, into: &result)
        } else {
            slot = cache.store(router: router, nameIndex: name, qtype: qtype, client: info, health: health,
                               random: &random, into: &result)
        }
        let scope = UInt8(clamping: result.scopePrefix)
        endpoint = result.firstEndpoint
        node = result.answeringNode
        if result.nodata {
            if slot >= 0 && q.ownerOffset == 12 {
                cache.setPayload(slot, bytes: UnsafeRawBufferPointer(start: nil, count: 0), records: 0, tag: Int(endpoint))
            }
            return DynamicAnswer(records: 0, scope: scope)
        }
        if let target = result.cname {
            try withBytes(target.wire) { (t) throws(DNSWireError) in
                try writer.writeRecord(ownerOffset: q.ownerOffset, type: .cname, ttl: result.ttl, rdata: t)
            }
            return DynamicAnswer(records: 1, scope: scope, cnameTargetOffset: writer.lastRDataStart)
        }
        let start = writer.position
        var count = 0
        for a in result.addresses {
            let v4 = a.isV4
            guard (qtype == .a && v4) || (qtype == .aaaa && !v4) else { continue }
            try Answerer.writeAddress(a, ownerOffset: q.ownerOffset, ttl: result.ttl, writer: writer)
            count += 1
        }
        if slot >= 0 && q.ownerOffset == 12 {
            cache.setPayload(slot, bytes: UnsafeRawBufferPointer(rebasing: writer.buffer[start..<writer.position]),
                             records: count, tag: Int(endpoint))
        }
        return DynamicAnswer(records: count, scope: scope)
    }

    /// An A or AAAA record for `address`, through the one record encoder.
    @inline(__always)
    static func writeAddress(_ address: IPAddress, ownerOffset: Int, ttl: UInt32, writer: MessageWriter) throws(DNSWireError) {
        // IPAddress keeps its bytes in network order in two words: their big-endian
        // images are the rdata (IPv4 is the first 4 bytes of `hi`).
        var words = (address.hi.bigEndian, address.lo.bigEndian)
        let count = address.isV4 ? 4 : 16
        let written: Result<Void, DNSWireError> = withUnsafeBytes(of: &words) { raw in
            Result { () throws(DNSWireError) in
                try writer.writeRecord(ownerOffset: ownerOffset, type: address.isV4 ? .a : .aaaa, ttl: ttl,
                                       rdata: UnsafeRawBufferPointer(rebasing: raw[0..<count]))
            }
        }
        try written.get()
    }
}
