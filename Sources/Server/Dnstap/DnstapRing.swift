import DNSWire
import Glibc
import Synchronization

/// The fixed part of one logged query, copied into a ring as plain bytes.
struct DnstapRecordHeader {
    static let hasQuery: UInt8 = 1, hasResponse: UInt8 = 2, tcp: UInt8 = 4
    /// Bytes of the whole record, this header included.
    var length: UInt32 = 0
    var flags: UInt8 = 0
    /// 4 or 6.
    var family: UInt8 = 4
    var clientPort: UInt16 = 0
    var localPort: UInt16 = 0
    var clientHi: UInt64 = 0, clientLo: UInt64 = 0
    var localHi: UInt64 = 0, localLo: UInt64 = 0
    var querySec: Int64 = 0
    var queryNsec: Int64 = 0
    var responseSec: Int64 = 0
    var responseNsec: Int64 = 0
    var queryLength: UInt32 = 0
    var responseLength: UInt32 = 0
    /// The decision, for the Meridian `extra` field: GSLB name, answering policy node and
    /// leading endpoint (indices in the configuration, -1 when none), and the ECS scope.
    var gslbName: Int32 = -1
    var node: Int32 = -1
    var endpoint: Int32 = -1
    var scope: UInt8 = 0

    /// Bytes copied into the ring: `size`, not `stride` (withUnsafeBytes(of:) covers `size`).
    static var size: Int { MemoryLayout<DnstapRecordHeader>.size }
}

/// One worker's queue of logged queries: a single-producer, single-consumer byte ring.
/// The worker (producer) copies a header and the query and response bytes in, or counts a
/// drop when they do not fit; it never waits and never allocates. The dnstap writer thread
/// (consumer) copies records out. `head` and `tail` only grow; positions are taken modulo
/// the power-of-two capacity.
final class DnstapRing: @unchecked Sendable {
    static let defaultCapacity = 1 << 22
    let capacity: Int
    private let mask: Int
    private let buffer: UnsafeMutableRawPointer
    /// Bytes ever written (producer) and consumed (consumer).
    private let head = Atomic<Int>(0)
    private let tail = Atomic<Int>(0)
    /// Records the producer could not queue (ring full); written by the producer only.
    let dropped = Atomic<UInt64>(0)
    /// Records queued.
    let queued = Atomic<UInt64>(0)
    /// Sampled queries not logged because this second's cap was reached.
    let capped = Atomic<UInt64>(0)
    /// Producer-only: counts queries for 1-in-N sampling, and those logged this second.
    private var sampleCountdown = 0
    private var capSecond: UInt32 = 0
    private var capCount = 0
    let sample: Int
    /// Logged queries per second at most (0: no cap).
    let maxPerSecond: Int
    let logQueries: Bool
    let logResponses: Bool

    init(capacity: Int = DnstapRing.defaultCapacity, sample: Int, maxPerSecond: Int = 0, logQueries: Bool, logResponses: Bool) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "ring capacity must be a power of two")
        self.capacity = capacity
        mask = capacity - 1
        buffer = .allocate(byteCount: capacity, alignment: 16)
        self.sample = max(1, sample)
        self.maxPerSecond = max(0, maxPerSecond)
        self.logQueries = logQueries; self.logResponses = logResponses
    }

    deinit { buffer.deallocate() }

    /// Producer: true when this query is one of the sampled ones and this second's cap
    /// (`now`: seconds, as the responder read them) is not reached.
    @inline(__always) func sampleNext(now: UInt32) -> Bool {
        if sampleCountdown > 0 { sampleCountdown -= 1; return false }
        sampleCountdown = sample - 1
        guard maxPerSecond > 0 else { return true }
        if now != capSecond { capSecond = now; capCount = 0 }
        guard capCount < maxPerSecond else {
            capped.store(capped.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            return false
        }
        capCount += 1
        return true
    }

    /// Producer: queues one record, or counts a drop when the ring is full.
    func push(_ header: DnstapRecordHeader, query: UnsafeRawBufferPointer, response: UnsafeRawBufferPointer) {
        var h = header
        h.flags |= (logQueries ? DnstapRecordHeader.hasQuery : 0) | (logResponses && response.count > 0 ? DnstapRecordHeader.hasResponse : 0)
        let q = logQueries ? query.count : 0
        let r = h.flags & DnstapRecordHeader.hasResponse != 0 ? response.count : 0
        h.queryLength = UInt32(q)
        h.responseLength = UInt32(r)
        let need = DnstapRecordHeader.size + q + r
        h.length = UInt32(need)
        let start = head.load(ordering: .relaxed)
        let used = start - tail.load(ordering: .acquiring)
        guard capacity - used >= need else {
            dropped.store(dropped.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            return
        }
        var at = start
        withUnsafeBytes(of: &h) { copyIn($0, at: &at) }
        if q > 0 { copyIn(UnsafeRawBufferPointer(rebasing: query[0..<q]), at: &at) }
        if r > 0 { copyIn(UnsafeRawBufferPointer(rebasing: response[0..<r]), at: &at) }
        head.store(start + need, ordering: .releasing)
        queued.store(queued.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    @inline(__always) private func copyIn(_ bytes: UnsafeRawBufferPointer, at position: inout Int) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let offset = position & mask
        let first = min(bytes.count, capacity - offset)
        memcpy(buffer + offset, base, first)
        if first < bytes.count { memcpy(buffer, base + first, bytes.count - first) }
        position += bytes.count
    }

    private func copyOut(_ into: UnsafeMutableRawBufferPointer, at position: Int) {
        guard let base = into.baseAddress, into.count > 0 else { return }
        let offset = position & mask
        let first = min(into.count, capacity - offset)
        memcpy(base, buffer + offset, first)
        if first < into.count { memcpy(base + first, buffer, into.count - first) }
    }

    /// Consumer: the oldest record, or nil when the ring is empty.
    func pop() -> (header: DnstapRecordHeader, query: [UInt8], response: [UInt8])? {
        let t = tail.load(ordering: .relaxed)
        guard head.load(ordering: .acquiring) - t >= DnstapRecordHeader.size else { return nil }
        var h = DnstapRecordHeader()
        withUnsafeMutableBytes(of: &h) { copyOut($0, at: t) }
        let q = Int(h.queryLength), r = Int(h.responseLength)
        var query = [UInt8](repeating: 0, count: q)
        var response = [UInt8](repeating: 0, count: r)
        query.withUnsafeMutableBytes { copyOut($0, at: t + DnstapRecordHeader.size) }
        response.withUnsafeMutableBytes { copyOut($0, at: t + DnstapRecordHeader.size + q) }
        tail.store(t + Int(h.length), ordering: .releasing)
        return (h, query, response)
    }
}
