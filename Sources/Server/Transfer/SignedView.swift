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
/// Built on the first transfer request for a zone version (by the TCP worker that received
/// it), then cached until the zone or the GSLB configuration changes (`SignedTransfers`).
///
///     let v = SignedTransfers.view(zone: zone, index: zi, snapshot: snapshot)
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
            for r in set.rdatas { records.append(TransferRecord(owner: owner, type: set.type, ttl: set.ttl, rdata: r)) }
            guard signed, let sigs = signer.rrsigs(owner: owner, type: set.type, ttl: set.ttl, rdatas: set.rdatas,
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
                    if let sigs = signer.rrsigs(owner: owner, type: .soa, ttl: s.ttl, rdatas: s.rdatas, zones: snapshot.zones,
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

/// The type bitmap of an NSEC record (RFC 4034 4.1.2): per window of 256 types, the window
/// number, the length of its bitmap, then the bits (type 0 is the first bit).
enum NSECBitmap {
    static func encode(_ types: [RRType]) -> [UInt8] {
        let sorted = Set(types.map(\.rawValue)).sorted()
        var out: [UInt8] = []
        var k = 0
        while k < sorted.count {
            let window = sorted[k] >> 8
            var bits = [UInt8](repeating: 0, count: 32)
            var used = 0
            while k < sorted.count && sorted[k] >> 8 == window {
                let low = Int(sorted[k] & 0xFF)
                bits[low / 8] |= UInt8(0x80 >> (low % 8))
                used = max(used, low / 8 + 1)
                k += 1
            }
            out += [UInt8(window), UInt8(used)] + bits[0..<used]
        }
        return out
    }
}

/// The signed transfer views, one per zone, and the refresh of their signatures.
///
/// A view is kept while its zone and router are the snapshot's. When its signatures reach
/// their refresh point, the zone's *signature epoch* moves: the epoch is part of the content
/// the served serial follows (`Runtime.servedSerial`), so `Reserial` moves the serial
/// (`increment` or `unixtime`) and sends the NOTIFY, and the next transfer builds the view
/// again with fresh signatures.
enum SignedTransfers {
    private static let views = Mutex<[DNSName: SignedTransferView]>([:])
    private static let epochs = Mutex<[DNSName: UInt64]>([:])

    /// The signed view of `zone` (index `index` of the snapshot's zones); nil for an
    /// unsigned zone.
    static func view(zone: Zone, index: Int, snapshot: ServingSnapshot) -> SignedTransferView? {
        guard let signing = snapshot.signing, index < signing.zones.count, let zs = signing.zones[index] else { return nil }
        let origin = zone.origin.lowercased()
        if let v = views.withLock({ $0[origin] }), v.zone === zone, v.router === snapshot.router { return v }
        let now = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
        let v = SignedTransferView.build(zone: zone, snapshot: snapshot, signing: signing, zoneSigning: zs, now: now)
        views.withLock { $0[origin] = v }
        return v
    }

    /// The signature epoch of zone `origin` (lowercase): 0 until its first refresh.
    static func epoch(_ origin: DNSName) -> UInt64 { epochs.withLock { $0[origin] ?? 0 } }

    /// The zones of `snapshot` whose cached view is due for refresh at `now`: their epoch
    /// moves (once per view) and their views are dropped. The caller reloads.
    static func due(snapshot: ServingSnapshot, now: UInt32) -> [(zone: DNSName, serial: UInt32, view: SignedTransferView)] {
        var out: [(zone: DNSName, serial: UInt32, view: SignedTransferView)] = []
        views.withLock { all in
            for (origin, v) in all {
                guard snapshot.zones.zones.contains(where: { $0 === v.zone }) else { continue }
                guard !SOAData.greater(v.refreshAt, now) else { continue }
                out.append((origin, v.zone.serial, v))
                all[origin] = nil
            }
        }
        epochs.withLock { e in for d in out { e[d.zone, default: 0] += 1 } }
        return out
    }
}
