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
/// - A name whose decision depends on the client only through its root's compiled lookup
///   (`Router.keyedRoot`: a geo, subnet or nearest root with nothing under it that looks at
///   the client) is keyed by that lookup's value instead of by the client's network: every
///   client with the same value gets the same decision under the same health, so a stream of
///   clients from ever new networks still hits. The scope is the client's own, from the same
///   lookup (`scope(_:)`), and a decision is only kept when its evaluation gave that scope
///   (not when the root was below its `min_healthy` and never looked at the client).
/// - Admission: a decision keyed by the client's network (not scope 0, not keyed by a
///   compiled lookup) is kept only on the second miss from the same /24 or /56 for that
///   name and type (`admitOnSecondSighting`): a stream of ever new client networks (a
///   failover over geo, a hashed name, seen from a realistic spread of resolvers) then
///   neither pays for storing decisions no later query reads nor evicts the ones that are
///   reused. A one-word fingerprint per slot remembers the first miss.
/// Storage is allocated up front: every slot reserves room for the largest answer the
/// router's policies can give (`Router.maxAddresses`, set by the answers configured, not by
/// the endpoint count), up to `maxSlotAddresses`; hits and stores copy addresses without
/// allocating. A larger answer is evaluated on every query instead of being kept, so a
/// worker's cache stays under 8 MB however many endpoints the configuration has.
public final class DecisionCache {
    /// The most addresses one slot keeps. Answers are usually 1-8 addresses; a pool of
    /// hundreds answering every member is rare and costs its evaluation per query.
    public static let maxSlotAddresses = 16

    // What a hit reads (`payload`, `scope`, `answeringNode`) is `@usableFromInline` and
    // those accessors `@inlinable`: the Answerer calls them from another module once per
    // GSLB answer, where each was a call of its own.
    @usableFromInline struct Entry {
        @usableFromInline var nodata = false
        @usableFromInline var ttl: UInt32 = 0
        /// Addresses in use in the slot's region of `addresses`.
        @usableFromInline var addressCount: UInt16 = 0
        @usableFromInline var cname: DNSName? = nil
        @usableFromInline var firstEndpoint: Int32 = -1
        @usableFromInline var answeringNode: Int32 = -1
        /// Bytes of `payload` in use, or -1: nothing stored for this decision yet.
        @usableFromInline var payloadLength: Int32 = -1
        @usableFromInline var payloadRecords: UInt16 = 0
        @usableFromInline var payloadTag: Int32 = 0
    }
    // One cache belongs to one worker thread and is never reentered: no dynamic
    // exclusivity checks (they showed in the query path's profile).
    @usableFromInline @exclusivity(unchecked) var entries: [Entry]
    private let mask: Int
    /// 64 - log2(slots): `keyedSlot` keeps the product's top bits.
    private let keyedShift: UInt64
    /// `slotAddresses` addresses per slot, one allocation for the whole cache.
    private let addresses: UnsafeMutablePointer<IPAddress>
    /// Addresses a slot holds: the router's largest answer, at most `maxSlotAddresses`.
    public let slotAddresses: Int
    @exclusivity(unchecked) private var router: Router?
    @exclusivity(unchecked) private var health: HealthSnapshot?
    /// The identities of `router` and `health` (held above, so not reused while compared),
    /// as address bits, 0 for none: comparing them loads no reference, where reading the
    /// optionals retained each, and is one compare each (optionals took three).
    @exclusivity(unchecked) private var routerID: UInt = 0
    @exclusivity(unchecked) private var healthID: UInt = 0
    /// One fixed-size region per slot where the caller keeps the decision already encoded
    /// (see `payload(_:)`), so a hit is one copy.
    @usableFromInline let payloads: UnsafeMutableRawPointer
    /// Bytes per slot: room for the router's largest answer as AAAA records with a
    /// compressed owner (2 + 10 + 16 bytes each).
    public let payloadCapacity: Int
    @exclusivity(unchecked) public private(set) var hits = 0
    @exclusivity(unchecked) public private(set) var misses = 0
    /// Picks the slot a full set gives up (round robin).
    @exclusivity(unchecked) private var evictions: UInt = 0
    /// What a lookup compares, one small record per slot apart from the entries, so a
    /// lookup reads a few cache lines rather than the entries' arrays and payloads.
    @usableFromInline struct Key {
        @usableFromInline var name: Int32 = -1
        @usableFromInline var family: UInt8 = 0
        @usableFromInline var scope: UInt8 = 0
        @usableFromInline var v6 = false
        @usableFromInline var hi: UInt64 = 0
        @usableFromInline var lo: UInt64 = 0
    }
    @usableFromInline let keys: UnsafeMutablePointer<Key>
    /// Decisions stored with scope 0 (valid for every client); while there are none, a
    /// lookup skips the scope-0 slot.
    @exclusivity(unchecked) private var scopeZero = 0
    /// `Key.family` bit of a decision keyed by its compiled lookup's value (`Key.hi`), not by
    /// a client network; its `Key.scope` is `keyedScope`.
    private static let keyedFamily: UInt8 = 0x10
    @inlinable static var keyedScope: UInt8 { 0xFF }
    /// The ECS scope of the last `lookup` or `store` of a keyed name, for that client.
    @usableFromInline @exclusivity(unchecked) var keyedClientScope: UInt8 = 0
    /// Per slot, a fingerprint of the last (name, type, client /24 or /56) that missed there
    /// without being kept (0: none): the admission filter's memory of a first sighting.
    private let sightings: UnsafeMutablePointer<UInt32>
    /// Whether per-network decisions wait for a second sighting before they are kept.
    public let admitOnSecondSighting: Bool

    /// `slots` is rounded up to a power of two. `admitOnSecondSighting`: see the rules above
    /// (off keeps every storable decision on its first miss).
    public init(router: Router, slots: Int = 8192, admitOnSecondSighting: Bool = true) {
        var n = 1
        while n < max(slots, 4) { n <<= 1 }
        mask = n - 1
        keyedShift = UInt64(64 - n.trailingZeroBitCount)
        entries = Array(repeating: Entry(), count: n)
        slotAddresses = min(max(router.maxAddresses, 1), DecisionCache.maxSlotAddresses)
        addresses = .allocate(capacity: slotAddresses * n)
        addresses.initialize(repeating: IPAddress(v4: 0), count: slotAddresses * n)
        payloadCapacity = 28 * slotAddresses
        payloads = .allocate(byteCount: payloadCapacity * n, alignment: 8)
        keys = .allocate(capacity: n)
        keys.initialize(repeating: Key(), count: n)
        sightings = .allocate(capacity: n)
        sightings.initialize(repeating: 0, count: n)
        self.admitOnSecondSighting = admitOnSecondSighting
        self.router = router
        routerID = UInt(bitPattern: ObjectIdentifier(router))
    }

    deinit { payloads.deallocate(); keys.deallocate(); addresses.deallocate(); sightings.deallocate() }

    @inline(__always) private func slotHash(_ name: Int, _ family: UInt8, _ net: IPAddress, _ bucket: Int) -> UInt64 {
        mix64(UInt64(name) << 8 ^ UInt64(family) ^ mix64(net.hi ^ UInt64(bucket)) ^ mix64(net.lo))
    }

    @inline(__always) private func slot(_ name: Int, _ family: UInt8, _ net: IPAddress, _ bucket: Int) -> Int {
        Int(truncatingIfNeeded: slotHash(name, family, net, bucket)) & mask
    }

    /// The admission filter (see the rules above) for a per-network decision whose bucket
    /// hashes to `h`: false on a first sighting, which it remembers; true on the second.
    @inline(__always) private func admit(_ h: UInt64) -> Bool {
        guard admitOnSecondSighting else { return true }
        let i = Int(truncatingIfNeeded: h) & mask
        // The hash's high half, which the slot index does not use; never 0 (the empty mark).
        let fingerprint = UInt32(truncatingIfNeeded: h >> 32) | 1
        if sightings[i] == fingerprint {
            sightings[i] = 0
            return true
        }
        sightings[i] = fingerprint
        return false
    }

    /// Buckets for networks longer than scope 0: the client's /24 or /56, so neighbours whose
    /// decisions hold at a shorter scope still land in nearby, independent slots.
    @inline(__always) private func bucketPrefix(_ a: IPAddress) -> Int { a.isV4 ? 24 : 56 }

    /// By the type's number: comparing with `.a` and `.aaaa` called their global accessors.
    @inline(__always) private func family(_ qtype: RRType) -> UInt8 { qtype.rawValue == 1 ? 1 : (qtype.rawValue == 28 ? 2 : 3) }

    /// The decision for a name, type and client, through the cache, for the per-worker
    /// generator (specialised; see `store`).
    public func resolve(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo,
                        health: HealthSnapshot, random: inout RoutingRandom, into result: inout RoutingResult) {
        resolveDecision(router: router, nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result)
    }

    /// The decision for a name, type and client, through the cache.
    public func resolve<R: RandomNumberGenerator>(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo,
                                                  health: HealthSnapshot, random: inout R, into result: inout RoutingResult) {
        resolveDecision(router: router, nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result)
    }

    @inline(__always) private func resolveDecision<R: RandomNumberGenerator>(router: Router, nameIndex: Int, qtype: RRType,
                                                                             client: ClientInfo, health: HealthSnapshot,
                                                                             random: inout R, into result: inout RoutingResult) {
        let s = lookup(router: router, nameIndex: nameIndex, qtype: qtype, client: client, health: health)
        if s >= 0 {
            load(s, into: &result)
        } else {
            _ = storeDecision(router: router, nameIndex: nameIndex, qtype: qtype, client: client, health: health,
                              random: &random, into: &result)
        }
    }

    /// Drops the router and health it holds (a reload replaced them), so they can be freed;
    /// the next lookup empties the cache.
    public func forget() {
        router = nil
        health = nil
        routerID = 0
        healthID = 0
    }

    /// The slot holding a decision that applies to this client, or -1 (a miss).
    public func lookup(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot) -> Int {
        if routerID != UInt(bitPattern: ObjectIdentifier(router)) || healthID != UInt(bitPattern: ObjectIdentifier(health)) {
            for i in 0...mask { keys[i].name = -1; sightings[i] = 0 }
            scopeZero = 0
            self.router = router
            self.health = health
            routerID = UInt(bitPattern: ObjectIdentifier(router))
            healthID = UInt(bitPattern: ObjectIdentifier(health))
        }
        guard client.allowsScope else { misses += 1; return -1 }
        let family = family(qtype)
        let a = client.address
        if let k = router.decisionKey(nameIndex, a) {
            keyedClientScope = UInt8(k.scope)
            let set = keyedSlot(nameIndex, family, k.value) & ~3
            for t in set..<(set &+ 4) where keys[t].name == Int32(truncatingIfNeeded: nameIndex)
                && keys[t].family == family | DecisionCache.keyedFamily && keys[t].hi == UInt64(UInt32(bitPattern: k.value)) {
                hits &+= 1
                return t
            }
            misses &+= 1
            return -1
        }
        if scopeZero > 0 {
            let s0 = slot(nameIndex, family, IPAddress(v4: 0), 0)
            if keys[s0].name == Int32(nameIndex) && keys[s0].family == family && keys[s0].scope == 0 {
                hits += 1
                return s0
            }
        }
        let bp = bucketPrefix(a)
        let s = slot(nameIndex, family, a.masked(to: bp), bp)
        // Four-way: a decision lives in one of the four slots of its set, so busy networks
        // that hash alike do not evict each other on every query.
        let set = s & ~3
        for t in set..<(set + 4) where matches(t, nameIndex, family, a) {
            hits += 1
            return t
        }
        misses += 1
        return -1
    }

    /// A keyed decision's slot: name, family and value are small numbers, so one multiply
    /// (Fibonacci hashing: the product's top `log2(slots)` bits, which every input bit
    /// reaches) spreads them; `mix64` twice cost about 30 instructions per GSLB query.
    @inline(__always) private func keyedSlot(_ name: Int, _ family: UInt8, _ value: Int32) -> Int {
        let x = UInt64(truncatingIfNeeded: name) &<< 40 ^ UInt64(family) &<< 32 ^ UInt64(UInt32(bitPattern: value))
        let h = (x ^ 0x6A09_E667_F3BC_C908) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: h &>> keyedShift)
    }

    /// The slot of `set` (four slots) holding what `matches` accepts, else a free one, else
    /// the next in turn.
    @inline(__always) private func place(_ set: Int, _ matches: (Int) -> Bool) -> Int {
        for t in set..<(set + 4) where matches(t) { return t }
        for t in set..<(set + 4) where keys[t].name < 0 { return t }
        evictions &+= 1
        return set + Int((evictions &- 1) & 3)
    }

    @inline(__always) private func matches(_ t: Int, _ nameIndex: Int, _ family: UInt8, _ a: IPAddress) -> Bool {
        let k = keys[t]
        guard k.name == Int32(nameIndex) && k.family == family && k.v6 == a.isV6 else { return false }
        let m = a.masked(to: Int(k.scope))
        return m.hi == k.hi && m.lo == k.lo
    }

    /// Evaluates the policy (after a miss) and keeps the decision when it may be reused.
    /// Returns the slot it went into, or -1 when it is not kept (random choices, ECS
    /// source prefix 0, more addresses than a slot holds, the first sighting of a network).
    public func store<R: RandomNumberGenerator>(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo,
                                                health: HealthSnapshot, random: inout R, into result: inout RoutingResult) -> Int {
        storeDecision(router: router, nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result)
    }

    /// `store` for the per-worker generator: callers in other modules (the Answerer) get the
    /// evaluation specialised for it. A generic call from another module runs the generic
    /// evaluator, which looks its type metadata up at run time and cost a miss about
    /// 800 ns more than `Router.resolve` alone (RoutingBench, 100k clients in different /24s).
    public func store(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo,
                      health: HealthSnapshot, random: inout RoutingRandom, into result: inout RoutingResult) -> Int {
        storeDecision(router: router, nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result)
    }

    @inline(__always) private func storeDecision<R: RandomNumberGenerator>(router: Router, nameIndex: Int, qtype: RRType, client: ClientInfo,
                                                                           health: HealthSnapshot, random: inout R,
                                                                           into result: inout RoutingResult) -> Int {
        router.resolve(nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result)
        guard !result.usedRandom, client.allowsScope, result.addresses.count <= slotAddresses else { return -1 }
        let a = client.address
        let family = family(qtype)
        let scope = result.scopePrefix
        var s: Int
        let key: Key
        if let k = router.decisionKey(nameIndex, a) {
            // Kept only when the evaluation looked at the client as the key says.
            guard scope == k.scope else { return -1 }
            keyedClientScope = UInt8(k.scope)
            let kf = family | DecisionCache.keyedFamily, v = UInt64(UInt32(bitPattern: k.value))
            s = place(keyedSlot(nameIndex, family, k.value) & ~3) { keys[$0].name == Int32(nameIndex) && keys[$0].family == kf && keys[$0].hi == v }
            key = Key(name: Int32(nameIndex), family: kf, scope: DecisionCache.keyedScope, v6: false, hi: v, lo: 0)
        } else {
            if scope == 0 {
                s = slot(nameIndex, family, IPAddress(v4: 0), 0)
            } else {
                let bp = bucketPrefix(a)
                let h = slotHash(nameIndex, family, a.masked(to: bp), bp)
                guard admit(h) else { return -1 }
                s = place(Int(truncatingIfNeeded: h) & mask & ~3) { matches($0, nameIndex, family, a) }
            }
            let net = a.masked(to: scope)
            key = Key(name: Int32(nameIndex), family: family, scope: UInt8(scope), v6: a.isV6, hi: net.hi, lo: net.lo)
        }
        if keys[s].name >= 0 && keys[s].scope == 0 { scopeZero -= 1 }
        if key.scope == 0 { scopeZero += 1 }
        keys[s] = key
        entries[s].nodata = result.nodata
        entries[s].ttl = result.ttl
        entries[s].cname = result.cname
        entries[s].firstEndpoint = result.firstEndpoint
        entries[s].answeringNode = result.answeringNode
        let region = addresses + s * slotAddresses
        for (i, a) in result.addresses.enumerated() { region[i] = a }
        entries[s].addressCount = UInt16(result.addresses.count)
        entries[s].payloadLength = -1
        return s
    }

    /// Copies a stored decision into `result`.
    public func load(_ s: Int, into result: inout RoutingResult) {
        result.reset()
        result.addresses.append(contentsOf: UnsafeBufferPointer(start: addresses + s * slotAddresses,
                                                                count: Int(entries[s].addressCount)))
        result.cname = entries[s].cname
        result.nodata = entries[s].nodata
        result.ttl = entries[s].ttl
        result.firstEndpoint = entries[s].firstEndpoint
        result.answeringNode = entries[s].answeringNode
        result.scopePrefix = Int(scope(s))
    }

    /// The policy node that answered the decision in slot `s` (`RoutingResult.answeringNode`).
    @inlinable @inline(__always) public func answeringNode(_ s: Int) -> Int32 { entries[s].answeringNode }

    /// The ECS scope of the decision in slot `s`, for the client of the last `lookup` or
    /// `store` (a keyed decision's scope is the client's own).
    @inlinable @inline(__always) public func scope(_ s: Int) -> UInt8 {
        let k = keys[s].scope
        return k == DecisionCache.keyedScope ? keyedClientScope : k
    }

    /// The encoded form the caller stored for slot `s` (bytes, record count, a tag of the
    /// caller's), or nil when none is stored. Valid until the slot is stored again.
    @inlinable @inline(__always) public func payload(_ s: Int) -> (bytes: UnsafeRawBufferPointer, records: Int, tag: Int)? {
        let n = Int(entries[s].payloadLength)
        guard n >= 0 else { return nil }
        return (UnsafeRawBufferPointer(start: payloads + s * payloadCapacity, count: n),
                Int(entries[s].payloadRecords), Int(entries[s].payloadTag))
    }

    /// Keeps the caller's encoded form of the decision in slot `s`; ignored if it does not
    /// fit `payloadCapacity`.
    public func setPayload(_ s: Int, bytes: UnsafeRawBufferPointer, records: Int, tag: Int) {
        guard bytes.count <= payloadCapacity, records <= Int(UInt16.max) else { return }
        if bytes.count > 0 { (payloads + s * payloadCapacity).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        entries[s].payloadLength = Int32(bytes.count)
        entries[s].payloadRecords = UInt16(records)
        entries[s].payloadTag = Int32(tag)
    }
}
