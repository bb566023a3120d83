import Config
import DNSWire
import Foundation

// Evaluation of a policy tree: one evaluator per policy kind, the "try this choice, fall
// through if it has nothing healthy" step shared in `tryChoice`, and `when_all_down` in
// `whenAllDown`. Evaluators report to a `RoutingTracer` and build no text; the query path
// runs them specialised for `NoTracer`, where every report compiles away.
//
// Contract of every evaluator: true when the node answered (records, fallback or NODATA
// in `result`), false when nothing under it answered, so `evaluate` applies its
// `when_all_down`. They append to `result` only within its capacity (no allocation).
//
// Degraded, one rule for every kind (docs/configuration.md, "Degraded endpoints"): a
// degraded member or choice ranks after fully-up ones and before down ones. Pools and
// multivalue answer fully-up members, degraded ones only when none is fully up; failover
// and nearest take fully-up choices first and degraded ones only after them; weighted and
// hashed, which share traffic by weight, scale a choice's weight by its factor; geo and
// subnet keep the client's match while it has any usable member (locality), so the rule
// applies inside the match. `min_healthy` (`PolicyNode.minHealthy`): a node with fewer
// usable endpoints counts as down, for itself and for `standing` seen from above.

extension Router {
    /// Chooses the answer for GSLB name `nameIndex` (into `model.names`). Pure apart from
    /// `random`; allocates nothing. See `RoutingResult` for the output.
    public func resolve<R: RandomNumberGenerator>(nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot,
                                                  random: inout R, into result: inout RoutingResult) {
        resolve(nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result, tracer: NoTracer())
    }

    /// The same as the generic `resolve`, specialised for the per-worker generator, so
    /// callers in other modules get the allocation-free specialised code.
    public func resolve(nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot,
                        random: inout RoutingRandom, into result: inout RoutingResult) {
        resolve(nameIndex: nameIndex, qtype: qtype, client: client, health: health, random: &random, into: &result, tracer: NoTracer())
    }

    /// `resolve`, reporting each step to `tracer` (`explain` passes an `ExplainTracer`).
    func resolve<R: RandomNumberGenerator, T: RoutingTracer>(nameIndex: Int, qtype: RRType, client: ClientInfo, health: HealthSnapshot,
                                                             random: inout R, into result: inout RoutingResult, tracer: T) {
        result.reset()
        // The name's fields are read in place: copying the `GSLBName` out of the array
        // retains and releases its strings and arrays on every evaluation.
        result.ttl = answerTTL(nameIndex, health)
        let family = Family(qtype)
        let answersType = family == .v4 ? model.names[nameIndex].answersA
            : (family == .v6 ? model.names[nameIndex].answersAAAA : true)
        let root = model.names[nameIndex].root
        var st = EvalState(rng: random, family: family, client: client, health: health, tracer: tracer)
        defer { random = st.rng }
        let can = answerable[nameIndex]
        if !answersType || !(family == .v4 ? can.v4 : (family == .v6 ? can.v6 : can.other)) {
            result.nodata = true
            tracer.noRecords(typeExcluded: !answersType)
            tracer.finished(result)
            return
        }
        tracer.policyStarted()
        if !evaluate(root, &st, &result) {
            // `parent` at the top has no parent to fall to: answer as if all were up.
            tracer.topFailedOpen()
            st.ignoreHealth = true
            if !evaluate(root, &st, &result) { result.nodata = true }
        }
        result.usedRandom = st.usedRandom
        result.scopePrefix = client.allowsScope ? min(st.scope, client.address.bitLength) : 0
        if result.addresses.isEmpty && result.cname == nil { result.nodata = true }
        tracer.finished(result)
    }

    /// `ttl_when_failing` while an endpoint the name can answer with is failing or flapping
    /// (`HealthSnapshot.suspect`, computed by the monitor when it publishes), else `ttl`.
    /// One flag test when nothing is suspect; otherwise a walk over the name's endpoints
    /// (bounded by their number), allocating nothing.
    @inline(__always) func answerTTL(_ nameIndex: Int, _ health: HealthSnapshot) -> UInt32 {
        let ttl = model.names[nameIndex].ttl, whenFailing = model.names[nameIndex].ttlWhenFailing
        guard health.anySuspect, whenFailing < ttl else { return ttl }
        for e in model.endpointsUnder[model.names[nameIndex].root] where health.isSuspect(e) { return whenFailing }
        return ttl
    }

    enum Family {
        case v4, v6, other
        init(_ qtype: RRType) { self = qtype == .a ? .v4 : (qtype == .aaaa ? .v6 : .other) }
    }

    struct EvalState<R: RandomNumberGenerator, T: RoutingTracer> {
        var rng: R
        let family: Family
        let client: ClientInfo
        let health: HealthSnapshot
        let tracer: T
        var ignoreHealth = false
        var located = false
        var loc = ClientLocation()
        var scope = 0
        var usedRandom = false
        /// Records that `node` looked at the client, valid for its `prefix`-bit network.
        /// At least 1: scope 0 tells resolvers the answer suits every client of either
        /// family (many keep scope-0 answers in their plain cache), which is false for a
        /// decision that looked at the address, even one that found no rule for its family.
        @inline(__always) mutating func consulted(_ prefix: Int, by node: Int) {
            scope = max(scope, prefix, 1)
            tracer.consulted(node: node, prefix: prefix)
        }
        init(rng: R, family: Family, client: ClientInfo, health: HealthSnapshot, tracer: T) {
            self.rng = rng; self.family = family; self.client = client; self.health = health; self.tracer = tracer
        }
    }

    // MARK: shared steps

    @inline(__always) func eligible(_ ep: Int, _ f: Family) -> Bool {
        let e = model.endpoints[ep]
        if e.cname != nil { return true }
        switch f {
        case .v4: return !e.v4.isEmpty
        case .v6: return !e.v6.isEmpty
        case .other: return false
        }
    }

    @inline(__always) func usable<R, T>(_ ep: Int, _ st: inout EvalState<R, T>) -> Bool {
        st.ignoreHealth || st.health.state(ep).isUsable
    }

    /// One endpoint's standing: -1 down, else its weight factor (1 fully up, below 1 degraded).
    @inline(__always) func standing<R, T>(endpoint ep: Int, _ st: inout EvalState<R, T>) -> Double {
        if st.ignoreHealth { return 1 }
        let s = st.health.state(ep)
        return s.isUsable ? s.weightFactor : -1
    }

    /// The best standing of what node `n` can answer with, for the asked family: -1 when
    /// nothing can (everything down, or `n` or every way through it below `min_healthy`),
    /// 1 when something is fully up, the best degraded factor otherwise. Walks the subtree
    /// (at most `maxDepth` levels), stopping at the first fully-up answer; allocates nothing.
    func standing<R, T>(_ n: Int, _ st: inout EvalState<R, T>) -> Double {
        if belowMinimum(n, &st) { return -1 }
        var best = -1.0
        switch model.nodes[n].kind {
        case .pool(_, let eps), .multivalue(_, let eps, _):
            for ep in eps where eligible(ep, st.family) {
                best = max(best, standing(endpoint: ep, &st))
                if best >= 1 { break }
            }
        case .failover(let c), .weighted(let c, _), .nearest(let c, _, _, _), .hashed(let c, _, _, _):
            for child in c where best < 1 { best = max(best, standing(child, &st)) }
        case .geo(_, let c, let d), .subnet(_, let c, let d):
            for child in c where best < 1 { best = max(best, standing(child, &st)) }
            if let d, best < 1 { best = max(best, standing(d, &st)) }
        }
        return best
    }

    /// True when `n` has a `min_healthy` and fewer usable endpoints under it (of any family:
    /// the minimum is about the set's capacity, not about one query's type).
    @inline(__always) func belowMinimum<R, T>(_ n: Int, _ st: inout EvalState<R, T>) -> Bool {
        let need = model.nodes[n].minHealthy
        if need == 0 || st.ignoreHealth { return false }
        var have = 0
        for ep in model.endpointsUnder[n] where st.health.state(ep).isUsable {
            have += 1
            if have >= need { return false }
        }
        return true
    }

    /// Whether any eligible member of a pool is fully up, so degraded ones are left out.
    @inline(__always) func anyFullyUp<R, T>(_ eps: [Int], _ st: inout EvalState<R, T>) -> Bool {
        for ep in eps where eligible(ep, st.family) && standing(endpoint: ep, &st) >= 1 { return true }
        return false
    }

    func location<R, T>(_ st: inout EvalState<R, T>) -> ClientLocation {
        if !st.located {
            st.loc = locate(st.client)
            st.located = true
            st.tracer.located(st.loc)
        }
        return st.loc
    }

    func append(_ ep: Int, _ f: Family, _ result: inout RoutingResult) {
        let e = model.endpoints[ep]
        if let c = e.cname {
            if result.cname == nil && result.addresses.isEmpty {
                result.cname = c
                result.firstEndpoint = Int32(ep)
            }
            return
        }
        guard result.cname == nil else { return }
        let list = f == .v4 ? e.v4 : e.v6
        if result.addresses.isEmpty && !list.isEmpty { result.firstEndpoint = Int32(ep) }
        for a in list where !result.addresses.contains(a) {
            if result.addresses.count < result.addresses.capacity { result.addresses.append(a) }
        }
    }

    /// The step every choosing kind shares: report the choice, evaluate `child` one level
    /// down. True when it answered; false sends the caller on to its next choice.
    @inline(__always) func tryChoice<R, T>(_ child: Int, _ choice: Choice, of node: Int,
                                           _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        st.tracer.chose(choice, child: child, of: node)
        st.tracer.descend()
        let ok = evaluate(child, &st, &result)
        st.tracer.ascend()
        return ok
    }

    // MARK: evaluators

    /// Evaluates node `n`: its kind's evaluator, then its `when_all_down` if that found nothing.
    /// Returns false only when nothing under it answered and `when_all_down` is `parent`.
    func evaluate<R, T>(_ n: Int, _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        let answered: Bool
        if belowMinimum(n, &st) {
            st.tracer.belowMinimum(node: n)
            return whenAllDown(n, &st, &result)
        }
        switch model.nodes[n].kind {
        case .pool(_, let eps): answered = pool(n, eps, &st, &result)
        case .multivalue(_, let eps, let count): answered = multivalue(n, eps, count, &st, &result)
        case .failover(let children): answered = failover(n, children, &st, &result)
        case .weighted(let children, let weights): answered = weighted(n, children, weights, &st, &result)
        case .geo(_, let children, let defaultChild): answered = geo(n, children, defaultChild, &st, &result)
        case .subnet(_, _, let defaultChild): answered = subnet(n, defaultChild, &st, &result)
        case .nearest(let children, let dcs, let bias, let count): answered = nearest(n, children, dcs, bias, count, &st, &result)
        case .hashed(let children, let weights, let v4, let v6): answered = hashed(n, children, weights, v4, v6, &st, &result)
        }
        if answered { return true }
        st.tracer.exhausted(node: n)
        return whenAllDown(n, &st, &result)
    }

    /// The members that answer: usable ones, and of those only the fully-up ones when any is.
    @inline(__always) func answers<R, T>(_ ep: Int, onlyFullyUp: Bool, _ st: inout EvalState<R, T>) -> Bool {
        guard eligible(ep, st.family) else { return false }
        let s = standing(endpoint: ep, &st)
        return onlyFullyUp ? s >= 1 : s >= 0
    }

    /// All usable members; degraded ones only when no member is fully up.
    func pool<R, T>(_ n: Int, _ eps: [Int], _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        let fullyUp = anyFullyUp(eps, &st)
        var any = false
        for ep in eps where answers(ep, onlyFullyUp: fullyUp, &st) {
            append(ep, st.family, &result); any = true
        }
        if any {
            st.tracer.answered(node: n, shuffled: nil)
            result.noteAnswering(n)
        }
        return any
    }

    /// `count` usable members drawn at random (a partial Fisher-Yates shuffle); degraded
    /// ones only when no member is fully up.
    func multivalue<R, T>(_ n: Int, _ eps: [Int], _ count: Int, _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        let fullyUp = anyFullyUp(eps, &st)
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: eps.count) { buf in
            var m = 0
            for ep in eps where answers(ep, onlyFullyUp: fullyUp, &st) { buf[m] = ep; m += 1 }
            if m == 0 { return false }
            let take = min(count, m)
            for i in 0..<take {
                let j = Int.random(in: i..<m, using: &st.rng)
                buf.swapAt(i, j)
                append(buf[i], st.family, &result)
            }
            st.usedRandom = true
            st.tracer.answered(node: n, shuffled: (take, m))
            result.noteAnswering(n)
            return true
        }
    }

    /// The first choice, in listed order, that answers; a choice that is only degraded is
    /// passed over until no other choice answered. A down choice keeps its place, so a
    /// `when_all_down` other than `parent` on it still answers there.
    func failover<R, T>(_ n: Int, _ children: [Int], _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        var passed: UInt64 = 0
        for (i, c) in children.enumerated() {
            let s = standing(c, &st)
            if s >= 0 && s < 1 {
                passed |= 1 << UInt64(i)
                st.tracer.passedDegraded(node: n, child: c)
                continue
            }
            if tryChoice(c, .failover(index: i, count: children.count), of: n, &st, &result) { return true }
        }
        for (i, c) in children.enumerated() where passed & (1 << UInt64(i)) != 0 {
            if tryChoice(c, .failover(index: i, count: children.count), of: n, &st, &result) { return true }
        }
        return false
    }

    /// A random choice by weight times health factor; a choice that does not answer is
    /// left out of the next draw.
    func weighted<R, T>(_ n: Int, _ children: [Int], _ weights: [Int], _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        var excluded: UInt64 = 0
        for _ in 0..<children.count {
            var total = 0.0
            for (i, c) in children.enumerated() where excluded & (1 << UInt64(i)) == 0 {
                total += Double(weights[i]) * max(standing(c, &st), 0)
            }
            if total <= 0 { break }
            var x = Double.random(in: 0..<total, using: &st.rng)
            st.usedRandom = true
            var pick = -1, pickWeight = 0.0
            for (i, c) in children.enumerated() where excluded & (1 << UInt64(i)) == 0 {
                let w = Double(weights[i]) * max(standing(c, &st), 0)
                if w <= 0 { continue }
                pick = i; pickWeight = w
                if x < w { break }
                x -= w
            }
            guard pick >= 0 else { break }
            if tryChoice(children[pick], .weighted(index: pick, effective: pickWeight, total: total), of: n, &st, &result) { return true }
            excluded |= 1 << UInt64(pick)
        }
        return false
    }

    /// The best-ranked key that matches the client's location, then the default.
    /// The choice and its scope come from the node's compiled map (GeoMaps.swift); the
    /// client's location is looked up only for a tracer that reports it.
    func geo<R, T>(_ n: Int, _ children: [Int], _ defaultChild: Int?, _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        let hit = compiled[n].map?.lookup(st.client.address) ?? (value: -1, scope: 0)
        st.consulted(hit.scope, by: n)
        var best = Int(hit.value)
        // The map holds one key for keys that answer alike; a tracer reports the client's own.
        if st.tracer.reportsLocation { best = Router.bestGeoKey(compiled[n].geoKeys, location(&st)) }
        if best >= 0 {
            if tryChoice(children[best], .geoKey(index: best), of: n, &st, &result) { return true }
        } else {
            st.tracer.noMatch(node: n)
        }
        if let d = defaultChild, tryChoice(d, .byDefault, of: n, &st, &result) { return true }
        return false
    }

    /// The longest prefix holding the client (the default is a /0 rule), then the default.
    func subnet<R, T>(_ n: Int, _ defaultChild: Int?, _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        let hit = compiled[n].trie.lookup(st.client.address)
        st.consulted(hit.scope, by: n)
        var chosen = -1
        if hit.value >= 0 {
            chosen = compiled[n].targets[Int(hit.value)]
            if tryChoice(chosen, .subnet(prefix: hit.scope), of: n, &st, &result) { return true }
        } else {
            st.tracer.noMatch(node: n)
        }
        if let d = defaultChild, d != chosen, tryChoice(d, .byDefault, of: n, &st, &result) { return true }
        return false
    }

    /// Choices by distance less bias (listed order without a location), skipping those with
    /// nothing healthy, until `count` answered: fully-up choices first, then, when fewer
    /// than `count` answered, the degraded ones passed over, again nearest first.
    func nearest<R, T>(_ n: Int, _ children: [Int], _ dcs: [Int], _ bias: [Double], _ count: Int,
                       _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        guard let map = compiled[n].map else { return false }
        let hit = map.lookup(st.client.address)
        st.consulted(hit.scope, by: n)
        var loc = ClientLocation()
        if st.tracer.reportsLocation {
            loc = location(&st)
            if !loc.record.hasCoordinates { st.tracer.noMatch(node: n) }
        }
        let k = children.count
        let order = map.orders
        let base = Int(hit.value) * k
        guard base >= 0, base + k <= order.count else { return false }
        var taken: UInt64 = 0
        var answered = 0
        for pass in 0..<2 {
            var passed: UInt64 = 0
            for j in 0..<k {
                let pick = Int(order[base + j])
                if (taken | passed) & (1 << UInt64(pick)) != 0 { continue }
                let s = standing(children[pick], &st)
                if s < 0 {
                    taken |= 1 << UInt64(pick)
                    st.tracer.skipped(node: n, index: pick)
                    continue
                }
                if pass == 0 && s < 1 {
                    passed |= 1 << UInt64(pick)
                    st.tracer.passedDegraded(node: n, child: children[pick])
                    continue
                }
                taken |= 1 << UInt64(pick)
                let distance = loc.record.hasCoordinates ? distanceKm(loc.record.latitude, loc.record.longitude, dcs[pick]) - bias[pick] : nil
                if tryChoice(children[pick], .nearest(index: pick, distance: distance), of: n, &st, &result) {
                    answered += 1
                    if answered >= count { return true }
                }
            }
            if passed == 0 { break }
        }
        return answered > 0
    }

    /// Weighted rendezvous hashing of the client's network over the healthy choices, each
    /// weight times the choice's health factor.
    func hashed<R, T>(_ n: Int, _ children: [Int], _ weights: [Int], _ v4: Int, _ v6: Int,
                      _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        let prefix = st.client.address.isV4 ? v4 : v6
        let net = st.client.address.masked(to: prefix)
        st.consulted(prefix, by: n)
        let key = mix64(net.hi ^ mix64(net.lo ^ UInt64(prefix)))
        var excluded: UInt64 = 0
        for _ in 0..<children.count {
            var pick = -1, bestScore = -Double.infinity
            for (i, c) in children.enumerated() where excluded & (1 << UInt64(i)) == 0 && weights[i] > 0 {
                // A degraded choice's weight shrinks by its factor, as under `weighted`: only
                // the clients whose score for it no longer wins move, the rest stay.
                let w = Double(weights[i]) * standing(c, &st)
                if w <= 0 { continue }
                // Removing one choice only moves the clients that scored it highest.
                let h = mix64(key ^ compiled[n].childIDs[i])
                let u = (Double(h >> 11) + 0.5) / 9_007_199_254_740_992.0
                let score = -w / log(u)
                if score > bestScore { bestScore = score; pick = i }
            }
            guard pick >= 0 else { break }
            if tryChoice(children[pick], .hashed(prefix: prefix), of: n, &st, &result) { return true }
            excluded |= 1 << UInt64(pick)
        }
        return false
    }

    /// Node `n` found nothing healthy: its `when_all_down` mode decides.
    func whenAllDown<R, T>(_ n: Int, _ st: inout EvalState<R, T>, _ result: inout RoutingResult) -> Bool {
        switch model.nodes[n].whenAllDown {
        case .parent:
            st.tracer.whenAllDown(node: n)
            return false
        case .open:
            if st.ignoreHealth { return false }
            st.tracer.whenAllDown(node: n)
            st.ignoreHealth = true
            st.tracer.descend()
            let ok = evaluate(n, &st, &result)
            st.tracer.ascend()
            st.ignoreHealth = false
            return ok
        case .nodata:
            st.tracer.whenAllDown(node: n)
            result.nodata = true
            result.noteAnswering(n)
            return true
        case .fallback(let addresses, let cname):
            st.tracer.whenAllDown(node: n)
            result.noteAnswering(n)
            if let cname { result.cname = cname; return true }
            for a in addresses where (a.isV4 && st.family == .v4) || (a.isV6 && st.family == .v6) {
                if result.addresses.count < result.addresses.capacity && !result.addresses.contains(a) { result.addresses.append(a) }
            }
            if result.addresses.isEmpty { result.nodata = true }
            return true
        }
    }

    /// The best-ranked of `keys` that matches `loc` (index), or -1: what a geo node's
    /// compiled map holds for each location.
    static func bestGeoKey(_ keys: [CompiledGeoKey], _ loc: ClientLocation) -> Int {
        var best = -1, bestRank = Int.max
        for (i, k) in keys.enumerated() where k.rank < bestRank && matches(k, loc) {
            best = i; bestRank = k.rank
        }
        return best
    }

    static func matches(_ k: CompiledGeoKey, _ loc: ClientLocation) -> Bool {
        switch k {
        case .label(let l): return loc.label == l
        case .asn(let a): return loc.record.asn == a && a != 0
        case .subdivision(let c, let s):
            return loc.record.country == c && (loc.record.subdivision1 == s || loc.record.subdivision2 == s) && s != 0
        case .country(let c): return loc.record.country == c
        case .continent(let c): return loc.record.continent == c
        }
    }

    func distanceKm(_ lat: Double, _ lon: Double, _ dc: Int) -> Double {
        let d = model.datacenters[dc]
        return greatCircleKm(lat, lon, d.latitude, d.longitude)
    }
}
