import Diagnostics
import DNSWire
import Zones

/// How one zone is signed: its keys (published and signing), the records they add at the
/// apex (DNSKEY, CDS, CDNSKEY), and the signature times. Built at load; read-only after.
///
/// The DNSKEY RRset (and CDS/CDNSKEY) is signed by the active KSKs; every other RRset by
/// the active ZSKs, or by the KSKs when the zone has no ZSK (a CSK). Every active key of a
/// role signs, so adding a key and reloading double-signs until the old key is removed
/// (RFC 6781 4.1.1.2), and a key whose BIND `Activate` time is still ahead is only
/// published (pre-publication, RFC 6781 4.1.1.1).
public final class ZoneSigning: Sendable {
    public let origin: DNSName
    /// Every published key (the DNSKEY RRset).
    public let keys: [DNSSECKey]
    let dnskeySigners: [DNSSECKey]
    let zoneSigners: [DNSSECKey]
    /// The apex in lowercase wire form: the RRSIG signer name.
    let signerName: [UInt8]
    let validity: UInt32
    let refresh: UInt32
    let inceptionOffset: UInt32
    /// TTL of the DNSKEY, CDS and CDNSKEY RRsets.
    public let keyTTL: UInt32
    /// A signature is made again when less than this is left (seconds, `refresh`).
    public var refreshSeconds: UInt32 { refresh }

    public struct Times: Sendable {
        public var validity: Double = 14 * 86400
        public var refresh: Double = 7 * 86400
        public var inceptionOffset: Double = 3600
        public init() {}
    }

    /// Nil with an error when the keys cannot sign the zone (no active key of a role).
    public static func make(origin: DNSName, keys all: [DNSSECKey], times: Times, soaTTL: UInt32, now: UInt32,
                            location: SourceLocation) -> Result<ZoneSigning, SourceError> {
        let keys = all.filter { $0.isPublished(at: now) }
        let ksk = keys.filter { $0.isKeySigningKey && $0.isActive(at: now) }
        let zsk = keys.filter { !$0.isKeySigningKey && $0.isActive(at: now) }
        guard !ksk.isEmpty else {
            let files = all.map(\.keyFile).joined(separator: ", ")
            return .failure(SourceError(location, "zone \(origin): no active key-signing key (flags 257) among \(files.isEmpty ? "no key files" : files)"))
        }
        let hasZSK = keys.contains { !$0.isKeySigningKey }
        if hasZSK && zsk.isEmpty {
            return .failure(SourceError(location, "zone \(origin): the zone-signing keys (flags 256) are published but none is active yet"))
        }
        // RFC 6840 5.11: every algorithm in the DNSKEY RRset signs every RRset, so the KSKs
        // and ZSKs must use the same algorithms.
        if hasZSK && Set(ksk.map(\.algorithm)) != Set(zsk.map(\.algorithm)) {
            let files = (ksk + zsk).map { "\($0.keyFile) (algorithm \($0.algorithm.rawValue))" }.joined(separator: ", ")
            return .failure(SourceError(location, "zone \(origin): the key-signing and zone-signing keys must use the same algorithms (RFC 6840 5.11): \(files)"))
        }
        let ttl = keys.compactMap(\.ttl).min() ?? soaTTL
        return .success(ZoneSigning(origin: origin, keys: keys, dnskeySigners: ksk, zoneSigners: hasZSK ? zsk : ksk,
                                    times: times, keyTTL: ttl))
    }

    init(origin: DNSName, keys: [DNSSECKey], dnskeySigners: [DNSSECKey], zoneSigners: [DNSSECKey], times: Times, keyTTL: UInt32) {
        self.origin = origin
        self.keys = keys
        self.dnskeySigners = dnskeySigners
        self.zoneSigners = zoneSigners
        signerName = origin.lowercased().wire
        validity = UInt32(times.validity)
        refresh = UInt32(times.refresh)
        inceptionOffset = UInt32(times.inceptionOffset)
        self.keyTTL = keyTTL
    }

    /// The DNSKEY RRset, and CDS/CDNSKEY (RFC 7344) for the active key-signing keys: the
    /// records signing adds at the apex.
    public var apexRecords: [ResourceRecord] {
        var out: [ResourceRecord] = []
        for k in keys { out.append(ResourceRecord(name: origin, type: .dnskey, ttl: keyTTL, rdata: k.rdata)) }
        for k in dnskeySigners {
            out.append(ResourceRecord(name: origin, type: .cds, ttl: keyTTL, rdata: k.dsRData))
            out.append(ResourceRecord(name: origin, type: .cdnskey, ttl: keyTTL, rdata: k.rdata))
        }
        return out
    }

    /// DS records for the parent: one per active key-signing key.
    public var dsRecords: [String] { dnskeySigners.map(\.dsRecord) }
}

/// The signing state of a snapshot: per zone (by its index in the `ZoneSet`), how it is
/// signed, or nil for an unsigned zone; and the signature cache, shared across reloads.
public final class SigningSet: Sendable {
    public let zones: [ZoneSigning?]
    public let cache: SignatureCache
    public init(zones: [ZoneSigning?], cache: SignatureCache = .shared) {
        self.zones = zones; self.cache = cache
    }
}
