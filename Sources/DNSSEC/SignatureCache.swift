import DNSWire
import Glibc

/// Signatures already made, keyed by the exact RRset signed (owner, type, class, TTL and
/// the canonical rdata set, hashed to 128 bits) and the key that signed it; shared by every
/// worker and kept for the whole process, so a reload keeps the signatures of unchanged
/// RRsets. A removed key's entries are never found: the key's identity (owner, algorithm,
/// flags, public key) is part of the lookup, and only loaded keys are looked up.
///
/// Bounded: a fixed arena of `slots` entries of `stride` bytes, 4-way set associative,
/// an entry near the end of its life replaced first. Each of 64 stripes of sets has its own
/// mutex, held only to copy 64 bytes in or out; lookups allocate nothing. (PowerDNS keys its
/// signature cache the same way, by the RRset: pdns/dnssecsigner.cc.)
///
///     var e = SignatureCache.Entry()
///     if cache.lookup(h1, h2, key: k.identity, now: now, into: &e) { ... e.signature ... }
public final class SignatureCache: @unchecked Sendable {
    /// One signature: its times and the 64 bytes both algorithms produce.
    public struct Entry {
        public var inception: UInt32 = 0
        public var expiration: UInt32 = 0
        /// After this the signature is made again (expiration - refresh).
        public var refreshAt: UInt32 = 0
        public var signature: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        public init() {}
    }

    // Slot layout: h1, h2, key identity (8 each), then the Entry.
    private static let stride = 24 + MemoryLayout<Entry>.stride
    private static let ways = 4
    private static let stripes = 64
    private let arena: UnsafeMutableRawPointer
    private let sets: Int
    private let locks: UnsafeMutablePointer<pthread_mutex_t>
    public let capacity: Int

    /// `capacity` entries, rounded up to a power of two (at least 256).
    public init(capacity: Int = 1 << 16) {
        var n = 256
        while n < capacity { n <<= 1 }
        self.capacity = n
        sets = n / SignatureCache.ways
        arena = .allocate(byteCount: n * SignatureCache.stride, alignment: 16)
        arena.initializeMemory(as: UInt8.self, repeating: 0, count: n * SignatureCache.stride)
        locks = .allocate(capacity: SignatureCache.stripes)
        for i in 0..<SignatureCache.stripes { pthread_mutex_init(locks + i, nil) }
    }

    deinit {
        for i in 0..<SignatureCache.stripes { pthread_mutex_destroy(locks + i) }
        locks.deallocate()
        arena.deallocate()
    }

    /// Copies the entry for (h1, h2, key) into `entry` if it is there and not due for refresh.
    public func lookup(_ h1: UInt64, _ h2: UInt64, key: UInt64, now: UInt32, into entry: inout Entry) -> Bool {
        let set = Int(truncatingIfNeeded: h1 & UInt64(sets - 1))
        let lock = locks + (set & (SignatureCache.stripes - 1))
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        for w in 0..<SignatureCache.ways {
            let p = arena + (set * SignatureCache.ways + w) * SignatureCache.stride
            if p.load(as: UInt64.self) == h1 && p.load(fromByteOffset: 8, as: UInt64.self) == h2
                && p.load(fromByteOffset: 16, as: UInt64.self) == key {
                let e = (p + 24).load(as: Entry.self)
                guard now < e.refreshAt, now >= e.inception else { return false }
                entry = e
                return true
            }
        }
        return false
    }

    /// Stores an entry, replacing the same key's, an empty way, or the way due soonest.
    public func store(_ h1: UInt64, _ h2: UInt64, key: UInt64, _ entry: Entry) {
        let set = Int(truncatingIfNeeded: h1 & UInt64(sets - 1))
        let lock = locks + (set & (SignatureCache.stripes - 1))
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        var victim = 0
        var soonest = UInt32.max
        for w in 0..<SignatureCache.ways {
            let p = arena + (set * SignatureCache.ways + w) * SignatureCache.stride
            let same = p.load(as: UInt64.self) == h1 && p.load(fromByteOffset: 8, as: UInt64.self) == h2
                && p.load(fromByteOffset: 16, as: UInt64.self) == key
            let due = (p + 24).load(as: Entry.self).refreshAt
            if same { victim = w; break }
            if due < soonest { soonest = due; victim = w }
        }
        let p = arena + (set * SignatureCache.ways + victim) * SignatureCache.stride
        p.storeBytes(of: h1, as: UInt64.self)
        p.storeBytes(of: h2, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: key, toByteOffset: 16, as: UInt64.self)
        (p + 24).storeBytes(of: entry, as: Entry.self)
    }

    /// The process-wide cache: it outlives snapshots so reloads keep it.
    public static let shared = SignatureCache()
}

/// Two independent 64-bit hashes of `bytes` (8 bytes a step through `mix64`), seeded by `seed`.
@inline(__always)
func hash128(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> (UInt64, UInt64) {
    var a = seed ^ 0x243F_6A88_85A3_08D3
    var b = seed &+ 0x1319_8A2E_0370_7344
    var i = 0
    let n = bytes.count
    while i + 8 <= n {
        let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        a = mix64(a ^ w)
        b = mix64(b &+ w &* 0x9E37_79B9_7F4A_7C15)
        i += 8
    }
    var tail: UInt64 = UInt64(n) << 56
    var shift: UInt64 = 0
    while i < n { tail |= UInt64(bytes[i]) << shift; shift += 8; i += 1 }
    return (mix64(a ^ tail), mix64(b &+ tail &* 0xC2B2_AE3D_27D4_EB4F))
}
