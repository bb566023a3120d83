import DNSSEC
import DNSWire
import Foundation
import Routing
import Synchronization
import Zones

/// A DNSSEC-signed zone as a transfer carries it: the transfer view (static records and each
/// GSLB name's static view) signed as a whole, so a secondary serves a zone that validates
/// and proves denial by itself.
///
/// - every authoritative RRset with its RRSIGs (DNSKEY, CDS and CDNSKEY by the key-signing
///   keys), through the DNSSEC module's `Signer` and the shared signature cache;
/// - an NSEC chain (RFC 4034 4, not the compact denial Meridian answers with online: a
///   secondary needs a chain to prove denial without a signer), over every name that has
///   records in the view, in canonical order (RFC 4034 6.1), signed, with the zone's
///   negative TTL (RFC 9077);
/// - at a delegation, the NS RRset unsigned and the DS RRset signed, and an NSEC whose
///   bitmap lists NS (and DS); names below a cut (glue) go out unsigned and outside the chain
///   (RFC 4035 2.2, 2.3).
///
/// Built in the background when a zone version is published, or on the first transfer
/// request for it, then kept until the zone or the GSLB configuration changes
/// (`SignedTransfers`).
///
///     let build = SignedTransfers.request(zone: zone, index: zi, snapshot: snapshot)
///     if let v = build?.view { ... v.records ... }
final class SignedTransferView: Sendable {
    let zone: Zone
    let router: Router?
    /// Everything between the two SOAs of an AXFR, the SOA's own RRSIGs included.
    let records: [TransferRecord]
    /// When the view must be signed again (Unix seconds): the earliest of its signatures'
    /// refresh points (expiration - `refresh`), and never sooner than `minimumLife` after it
    /// was built, so a configuration with almost no room between `refresh` and `validity`
    /// cannot turn into a reload loop.
    let refreshAt: UInt32
    let builtAt: UInt32
    let milliseconds: Int
    static let minimumLife: UInt32 = 5

    init(zone: Zone, router: Router?, records: [TransferRecord], refreshAt: UInt32, builtAt: UInt32, milliseconds: Int) {
        self.zone = zone; self.router = router; self.records = records
        self.refreshAt = refreshAt; self.builtAt = builtAt; self.milliseconds = milliseconds
    }

    static func build(zone: Zone, snapshot: ServingSnapshot, signing: SigningSet, zoneSigning zs: ZoneSigning,
                      now: UInt32) -> SignedTransferView {
        let t0 = monotonicMilliseconds()
        let signer = Signer()
        defer { signer.forgetKeys() }
        let n = zone.nodes.count
        let names = zone.nodes.map { $0.name.lowercased() }
        let originLength = zone.origin.wire.count
        let cuts = Set(zone.nodes.indices.filter { zone.nodes[$0].isDelegation }.map { names[$0].wire })
        /// True for a name strictly below a zone cut (glue, or anything else the child owns).
        func belowCut(_ i: Int) -> Bool {
            guard !cuts.isEmpty else { return false }
            let w = names[i].wire
            var off = Int(w[0]) + 1
            while w.count - off > originLength {
                if cuts.contains(Array(w[off...])) { return true }
                off += Int(w[off]) + 1
            }
            return false
        }
        var sets: [[RRSet]] = []
        sets.reserveCapacity(n)
        var chain: [Int] = []
        var glue: [Int] = []
        for i in 0..<n {
            var s = ZoneTransfer.rrsets(of: i, zone: zone, snapshot: snapshot)
            if i == zone.apexIndex { s.insert(zone.soa, at: 0) }
            sets.append(s)
            guard !s.isEmpty else { continue }
            if belowCut(i) { glue.append(i) } else { chain.append(i) }
        }
        // Canonical order (RFC 4034 6.1): labels from the root, each compared as lowercase
        // octets; the keys are made once so the sort allocates nothing per comparison.
        let keys = names.map { Array($0.labels.reversed()) }
        chain.sort { a, b in
            for (x, y) in zip(keys[a], keys[b]) where x != y { return x.lexicographicallyPrecedes(y) }
            return keys[a].count < keys[b].count
        }
        var records: [TransferRecord] = []
        records.reserveCapacity(zone.recordCount * 3)
        var earliest = UInt32.max
        func add(_ owner: DNSName, _ set: RRSet, signed: Bool) {
            for r in set.rdatas { records.append(TransferRecord(owner: owner, type: set.type, ttl: set.ttl, rdata: r.bytes)) }
            guard signed, let sigs = signer.rrsigs(owner: owner, type: set.type, ttl: set.ttl, rdatas: set.rdatas.map(\.bytes),
                                                    zones: snapshot.zones, signing: signing, now: now) else { return }
            for r in sigs {
                records.append(TransferRecord(owner: owner, type: .rrsig, ttl: set.ttl, rdata: r))
                // RFC 4034 3.1.5: the expiration is at offset 8 of the RRSIG rdata.
                let expiration = UInt32(r[8]) << 24 | UInt32(r[9]) << 16 | UInt32(r[10]) << 8 | UInt32(r[11])
                earliest = min(earliest, expiration &- zs.refreshSeconds)
            }
        }
        for (k, i) in chain.enumerated() {
            let node = zone.nodes[i]
            let owner = node.name
            var types: [RRType] = [.rrsig, .nsec]
            for s in sets[i] {
                types.append(s.type)
                // The SOA goes first and last, outside the list; its signatures go in it.
                if i == zone.apexIndex && s.type == .soa {
                    if let sigs = signer.rrsigs(owner: owner, type: .soa, ttl: s.ttl, rdatas: s.rdatas.map(\.bytes), zones: snapshot.zones,
                                                signing: signing, now: now) {
                        for r in sigs { records.append(TransferRecord(owner: owner, type: .rrsig, ttl: s.ttl, rdata: r)) }
                    }
                    continue
                }
                // At a cut only the DS is the parent's to sign (RFC 4035 2.2).
                add(owner, s, signed: !node.isDelegation || s.type == .ds)
            }
            let next = names[chain[(k + 1) % chain.count]]
            let nsec = RRSet(type: .nsec, ttl: zone.negativeTTL, rdatas: [next.wire + NSECBitmap.encode(types)])
            add(owner, nsec, signed: true)
        }
        for i in glue {
            for s in sets[i] { add(zone.nodes[i].name, s, signed: false) }
        }
        let floor = now &+ minimumLife
        let due = earliest == .max || SOAData.greater(floor, earliest) ? floor : earliest
        return SignedTransferView(zone: zone, router: snapshot.router, records: records, refreshAt: due, builtAt: now,
                                  milliseconds: Int(monotonicMilliseconds() - t0))
    }
}

/// One build of a zone's signed view, shared by every transfer that asks for that zone
/// version; the view appears when the background build finishes.
final class SignedTransferBuild: Sendable {
    let zone: Zone
    let router: Router?
    private struct State {
        var view: SignedTransferView?
        /// Called once when the view appears: the TCP workers whose transfers wait for it.
        var waiters: [@Sendable () -> Void] = []
    }
    private let state = Mutex(State())
    init(zone: Zone, router: Router?) { self.zone = zone; self.router = router }
    var view: SignedTransferView? { state.withLock { $0.view } }

    /// Calls `ready` once the view is there: now if it already is, else from the thread
    /// that finishes the build. A waiting transfer's worker sleeps in poll() until then.
    func whenReady(_ ready: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.view != nil { return true }
            s.waiters.append(ready)
            return false
        }
        if now { ready() }
    }

    func finish(_ v: SignedTransferView) {
        let waiters = state.withLock { s -> [@Sendable () -> Void] in
            s.view = v
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w() }
    }
}

/// The signed transfer views, one per zone, and the refresh of their signatures.
///
/// Views are built on a thread of their own, never by a TCP worker: `prepare` starts the
/// builds of a newly published snapshot (start, reload, serial move), and a transfer that
/// arrives before its view is ready waits for it (`ZoneTransfer.isWaiting`) while its
/// worker goes on serving other connections.
///
/// A view is kept while its zone and router are the snapshot's. When its signatures reach
/// their refresh point, the zone's *signature epoch* moves: the epoch is part of the content
/// the served serial follows (`Runtime.servedSerial`), so `Reserial` moves the serial
/// (`increment` or `unixtime`) and sends the NOTIFY, and the next view is built with fresh
/// signatures.
enum SignedTransfers {
    private static let builds = Mutex<[DNSName: SignedTransferBuild]>([:])
    private static let epochs = Mutex<[DNSName: UInt64]>([:])

    /// The build of the signed view of `zone` (index `index` of the snapshot's zones),
    /// started now if there is none for this version; nil for an unsigned zone.
    static func request(zone: Zone, index: Int, snapshot: ServingSnapshot) -> SignedTransferBuild? {
        guard let signing = snapshot.signing, index < signing.zones.count, let zs = signing.zones[index] else { return nil }
        let origin = zone.origin.lowercased()
        let (build, fresh) = builds.withLock { all -> (SignedTransferBuild, Bool) in
            if let b = all[origin], b.zone === zone, b.router === snapshot.router { return (b, false) }
            let b = SignedTransferBuild(zone: zone, router: snapshot.router)
            all[origin] = b
            return (b, true)
        }
        if fresh {
            Thread {
                let now = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
                let v = SignedTransferView.build(zone: zone, snapshot: snapshot, signing: signing, zoneSigning: zs, now: now)
                build.finish(v)
                Reserial.log.info("signed transfer view built", metadata: ["zone": "\(zone.origin)", "serial": "\(zone.serial)",
                                                                         "records": "\(v.records.count)", "ms": "\(v.milliseconds)"])
            }.start()
        }
        return build
    }

    /// Starts building the views of the signed zones of `snapshot` that someone may
    /// transfer, so the first transfer after a change finds its view ready or under way.
    static func prepare(_ snapshot: ServingSnapshot) {
        guard let signing = snapshot.signing else { return }
        let t = snapshot.transfers
        for (i, zone) in snapshot.zones.zones.enumerated() where i < signing.zones.count && signing.zones[i] != nil {
            let origin = zone.origin.lowercased()
            guard !t.allow.isEmpty || !(t.zoneAllow[origin] ?? []).isEmpty else { continue }
            _ = request(zone: zone, index: i, snapshot: snapshot)
        }
    }

    /// The signature epoch of zone `origin` (lowercase): 0 until its first refresh.
    static func epoch(_ origin: DNSName) -> UInt64 { epochs.withLock { $0[origin] ?? 0 } }

    /// The zones of `snapshot` whose view is due for refresh at `now`: their epoch moves
    /// (once per view) and their views are dropped. The caller moves their serials.
    static func due(snapshot: ServingSnapshot, now: UInt32) -> [(zone: DNSName, serial: UInt32, view: SignedTransferView)] {
        var out: [(zone: DNSName, serial: UInt32, view: SignedTransferView)] = []
        builds.withLock { all in
            for (origin, b) in all {
                guard let v = b.view, snapshot.zones.zones.contains(where: { $0 === v.zone }) else { continue }
                guard !SOAData.greater(v.refreshAt, now) else { continue }
                out.append((origin, v.zone.serial, v))
                all[origin] = nil
            }
        }
        epochs.withLock { e in for d in out { e[d.zone, default: 0] += 1 } }
        return out
    }
}
