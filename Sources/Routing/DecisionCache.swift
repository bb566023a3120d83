import Config
import DNSWire

/// A per-worker cache of routing decisions, keyed by the client network each decision
/// depended on (its ECS scope), so a geo lookup and tree walk happen once per network and
/// name rather than once per query. Not thread-safe: one per worker thread.
///
///     let cache = DecisionCache(router: router)
///     cache.resolve(router: router, nameIndex: i, qtype: .a, client: client,
///                   health: snapshot, random: &rng, into: &result)
///
/// Rules (why it is safe):
/// - An entry holds for the addresses in `network/scope`; scope 0 entries hold for everyone.
/// - Answers shaped by a random choice (weighted, multivalue) are never stored.
/// - Answers for ECS source prefix 0 are not stored (their scope is forced to 0 though the
///   decision used the source address).
/// - A different `Router` (config reload) or `HealthSnapshot` (health change) empties the cache.
/// Storage is allocated up front: every slot reserves the router's maximum answer size, so
/// hits and stores copy addresses without allocating.
public final class DecisionCache {
    struct Entry {
        var name: Int32 = -1
        var family: UInt8 = 0
        var scope: UInt8 = 0
        var nodata = false
        var ttl: UInt32 = 0
        var network = IPAddress(v4: 0)
        var addresses: [IPAddress] = []
        var cname: DNSName? = nil
    }
    private var entries: [Entry]
    private let mask: Int
    private var router: Router?
    private var health: HealthSnapshot?
    public private(set) var hits = 0
    public private(set) var misses = 0

    /// `slots` is rounded up to a power of two.
    public init(router: Router, slots: Int = 4096) {
        var n = 1
        while n < max(slots, 2) { n <<= 1 }
        mask = n - 1
        var e = Entry()
        e.addresses.reserveCapacity(max(router.maxAddresses, 1))
        entries = []
        entries.reserveCapacity(n)
        for _ in 0..<n {
            var copy = e
            copy.addresses = []
            copy.addresses.reserveCapacity(max(router.maxAddresses, 1))
            entries.append(copy)
        }
        self.router = router
    }

    @inline(__always) private func slot(_ name: Int, _ family: UInt8, _ net: IPAddress, _ bucket: Int) -> Int {
        let h = mix64(UInt64(name) << 8 ^ UInt64(family) ^ mix64(net.hi ^ UInt64(bucket)) ^ mix64(net.lo))
        return Int(truncatingIfNeeded: h) & mask
    }

    /// Buckets for networks longer than scope 0: the client's /24 or /56, so neighbours whose
    /// decisions hold at a shorter scope still land in nearby, independent slots.
    @inline(__always) private func bucketPrefix(_ a: IPAddress) -> Int { a.isV4 ? 24 : 56 }

    public func resolve<R: RandomNumberGenerator>(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo,
                                                  health: HealthSnapshot, random: inout R, into result: inout RoutingResult) {
        if self.router !== router || self.health !== health {
            for i in entries.indices { entries[i].name = -1 }
            self.router = router
            self.health = health
        }
        let family: UInt8 = qtype == .a ? 1 : (qtype == .aaaa ? 2 : 3)
        let a = client.address
        if client.allowsScope {
            let s0 = slot(nameIndex, family, IPAddress(v4: 0), 0)
            if entries[s0].name == Int32(nameIndex) && entries[s0].family == family && entries[s0].scope == 0 {
                load(s0, into: &result); hits += 1; return
            }
            let bp = bucketPrefix(a)
            let s = slot(nameIndex, family, a.masked(to: bp), bp)
            let e = entries[s]
            if e.name == Int32(nameIndex) && e.family == family && e.network.family == a.family
                && a.masked(to: Int(e.scope)) == e.network {
                load(s, into: &result); hits += 1; return
            }
        }
        misses += 1
        router.resolve(nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result)
        guard !result.usedRandom, client.allowsScope else { return }
        let scope = result.scopePrefix
        let s = scope == 0 ? slot(nameIndex, family, IPAddress(v4: 0), 0)
                           : slot(nameIndex, family, a.masked(to: bucketPrefix(a)), bucketPrefix(a))
        entries[s].name = Int32(nameIndex)
        entries[s].family = family
        entries[s].scope = UInt8(scope)
        entries[s].network = a.masked(to: scope)
        entries[s].nodata = result.nodata
        entries[s].ttl = result.ttl
        entries[s].cname = result.cname
        entries[s].addresses.removeAll(keepingCapacity: true)
        entries[s].addresses.append(contentsOf: result.addresses)
    }

    private func load(_ s: Int, into result: inout RoutingResult) {
        result.reset()
        result.addresses.append(contentsOf: entries[s].addresses)
        result.cname = entries[s].cname
        result.nodata = entries[s].nodata
        result.ttl = entries[s].ttl
        result.scopePrefix = Int(entries[s].scope)
    }
}
