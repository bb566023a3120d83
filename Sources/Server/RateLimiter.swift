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

    /// Classifies a response and applies the limit: returns the length to send, 0 to drop,
    /// or a shorter length after rewriting it to an empty TC=1 answer (header + question).
    public func apply(response r: UnsafeMutableRawBufferPointer, length: Int, client: IPAddress, now: UInt32) -> Int {
        guard settings.rate > 0, length >= 12 else { return length }
        let flags = UInt16(r[2]) << 8 | UInt16(r[3])
        let rcode = flags & 0xF
        let ancount = UInt16(r[6]) << 8 | UInt16(r[7])
        let qdcount = UInt16(r[4]) << 8 | UInt16(r[5])
        var qEnd = 12
        var nameHash: UInt64 = 0xcbf29ce484222325
        if qdcount == 1 {
            let view = UnsafeRawBufferPointer(rebasing: r[0..<length])
            guard let end = try? Wire.readName(view, at: 12) else { return length }
            for i in 12..<end { nameHash = (nameHash ^ UInt64(asciiLower(r[i]))) &* 0x100000001b3 }
            qEnd = min(end + 4, length)
            if qEnd >= 4 { nameHash ^= UInt64(r[qEnd - 4]) << 8 | UInt64(r[qEnd - 3]) }
        }
        let kind: Kind
        switch rcode {
        case 0: kind = ancount > 0 ? .answer : (flags & HeaderFlags.aa != 0 ? .nodata : .referral)
        case 3: kind = .nxdomain
        default: kind = .error
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
