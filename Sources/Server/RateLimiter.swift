import Answering
import CShim
import Config
import DNSWire
import Synchronization

/// A lock-free table of per-second response counters shared by all UDP workers.
///
/// Each slot is one 64-bit word: a 24-bit tag of the key, the low 16 bits of the second
/// and a 24-bit count, updated with compare-and-swap. A tag mismatch or a new second
/// resets the count, so the table never needs sweeping and its memory is fixed at start.
public final class ResponseRateLimiter: @unchecked Sendable {
    // @unchecked: `slots` is fixed-size memory touched only through cshim's atomics.
    public enum Verdict: Sendable { case pass, drop, slip }

    public let settings: RRLSettings
    private let slots: UnsafeMutablePointer<UInt64>
    private let mask: Int
    public let limited = Atomic<UInt64>(0)
    public let slipped = Atomic<UInt64>(0)

    public init(settings: RRLSettings) {
        var size = 1024
        while size < settings.tableSize { size <<= 1 }
        self.settings = settings
        self.mask = size - 1
        slots = .allocate(capacity: size)
        slots.initialize(repeating: 0, count: size)
    }

    deinit { slots.deallocate() }

    /// Kinds of response counted apart (RFC-less but common: answers, NXDOMAIN, errors).
    public enum Kind: UInt64 { case answer = 1, nodata = 2, nxdomain = 3, referral = 4, error = 5 }

    /// Decides for one UDP response. `nameHash` separates positive answers by question.
    public func check(client: IPAddress, kind: Kind, nameHash: UInt64, now: UInt32) -> Verdict {
        let s = settings
        guard s.rate > 0 else { return .pass }
        for p in s.allow where p.contains(client) { return .pass }
        let net = client.masked(to: client.isV4 ? s.ipv4Prefix : s.ipv6Prefix)
        var h = (net.hi &* 0x9E3779B97F4A7C15) ^ (net.lo &* 0xC2B2AE3D27D4EB4F) ^ (kind.rawValue << 59)
        if kind == .answer || kind == .nodata || kind == .referral { h ^= nameHash &* 0x165667B19E3779F9 }
        h ^= h >> 31
        let tag = (h >> 40) & 0xFFFFFF
        let second = UInt64(now & 0xFFFF)
        let slot = slots + (Int(truncatingIfNeeded: h) & mask)
        var count: UInt64 = 0
        while true {
            let old = cshim_load64(slot)
            let same = (old >> 40) == tag && ((old >> 24) & 0xFFFF) == second
            count = same ? min((old & 0xFFFFFF) + 1, 0xFFFFFF) : 1
            let new = tag << 40 | second << 24 | count
            if cshim_cas64(slot, old, new) != 0 { break }
        }
        guard count > UInt64(s.rate) else { return .pass }
        limited.add(1, ordering: .relaxed)
        if s.slip > 0 && (count - UInt64(s.rate)) % UInt64(s.slip) == 0 {
            slipped.add(1, ordering: .relaxed)
            return .slip
        }
        return .drop
    }

    /// Applies the limit to one UDP response, classified by what the answering pipeline
    /// reported (no second parse of the response): returns the length to send, 0 to drop,
    /// or a shorter length after rewriting it to an empty TC=1 answer (header + question).
    public func apply(_ a: Answer, response r: UnsafeMutableRawBufferPointer, client: IPAddress, now: UInt32) -> Int {
        let length = a.length
        guard settings.rate > 0, length >= 12 else { return length }
        let o = a.outcome
        var qEnd = 12
        var nameHash: UInt64 = 0xcbf29ce484222325
        if o.qdcount == 1 && o.questionEnd <= length {
            // The question is echoed uncompressed at offset 12: hash its bytes as they
            // stand (label lengths are below "A", so lowercasing leaves them alone).
            qEnd = o.questionEnd
            for i in 12..<(qEnd - 4) { nameHash = (nameHash ^ UInt64(asciiLower(r[i]))) &* 0x100000001b3 }
            nameHash ^= UInt64(o.qtype.rawValue)
        }
        let kind: Kind
        switch o.kind {
        case .answer: kind = .answer
        case .nodata: kind = .nodata
        case .referral: kind = .referral
        case .nxdomain: kind = .nxdomain
        case .error, .none: kind = .error
        }
        switch check(client: client, kind: kind, nameHash: nameHash, now: now) {
        case .pass: return length
        case .drop: return 0
        case .slip:
            // TC=1 with the question only: a client that is real retries over TCP.
            r[2] |= 0x02
            for i in 6..<12 { r[i] = 0 }
            return qEnd
        }
    }
}
