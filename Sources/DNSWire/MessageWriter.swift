/// Writes a DNS message into a caller-owned buffer, with name compression
/// (RFC 1035 4.1.4), and never past `limit`.
///
/// One writer is owned by one worker and reused for every response: `reset` clears
/// it without freeing, so steady-state writing allocates nothing. Writes that do not
/// fit throw `.bufferFull`; `mark()`/`rollback(to:)` let a caller drop a whole RRset
/// that did not fit, as RFC 2181 9 requires (never a partial RRset).
///
///     let w = MessageWriter()
///     w.reset(buffer: out, limit: 512)
///     try w.writeU16(id) ...
///     try w.writeName(owner.wire)
public final class MessageWriter {
    // One writer belongs to one worker thread and is never reentered, so the dynamic
    // exclusivity checks Swift would otherwise run on every access (about 9% of a query's
    // CPU in the profile in Benchmarks/RESULTS.md) buy nothing here.
    @exclusivity(unchecked) public private(set) var buffer: UnsafeMutableRawBufferPointer = .init(start: nil, count: 0)
    @exclusivity(unchecked) public private(set) var position: Int = 0
    @exclusivity(unchecked) public private(set) var limit: Int = 0
    /// Offsets of name suffixes written uncompressed, usable as pointer targets: a fixed
    /// buffer of `maxTargets` and a count (no array uniqueness or capacity checks per name).
    private let targets: UnsafeMutablePointer<UInt16>
    @exclusivity(unchecked) private var targetCount = 0
    /// A name `registerName` was asked to register, not yet walked (-1: none): most answers
    /// (prebuilt, cached GSLB) write no name after the question and never need it.
    @exclusivity(unchecked) private var pendingName = -1
    /// Where the rdata of the last record written starts: names in it (a CNAME target, an
    /// NS host) can be pointed to or read back from there.
    @exclusivity(unchecked) public private(set) var lastRDataStart: Int = 0
    /// At most this many targets are remembered: past it a name is written uncompressed,
    /// which only costs size. 128 covers a full 1232-byte answer of short names.
    public static let maxTargets = 128

    public init() { targets = .allocate(capacity: MessageWriter.maxTargets) }

    deinit { targets.deallocate() }

    /// Starts a new message in `buffer`, writing at most `limit` bytes (invariant:
    /// 0 <= position <= limit <= buffer.count).
    public func reset(buffer: UnsafeMutableRawBufferPointer, limit: Int) {
        self.buffer = buffer
        self.limit = min(limit, buffer.count)
        self.position = 0
        targetCount = 0
        pendingName = -1
    }

    /// Raises or lowers the limit (for example after the OPT record's space is reserved).
    public func setLimit(_ l: Int) { limit = min(max(l, position), buffer.count) }

    /// A point to roll back to. It keeps the name still waiting to be registered
    /// (`registerName`) as it is, rather than walking it (most marks are never rolled back
    /// and most answers then write no name): a rollback drops the targets added since and
    /// leaves that name waiting again.
    public struct Mark { public let position: Int; let targets: Int; let pending: Int }
    public func mark() -> Mark {
        Mark(position: position, targets: targetCount, pending: pendingName)
    }
    public func rollback(to m: Mark) {
        position = m.position
        if targetCount > m.targets { targetCount = m.targets }
        pendingName = m.pending
    }

    @inline(__always) public func writeU8(_ v: UInt8) throws(DNSWireError) {
        guard position + 1 <= limit else { throw .bufferFull(position) }
        buffer[position] = v
        position += 1
    }

    @inline(__always) public func writeU16(_ v: UInt16) throws(DNSWireError) {
        guard position + 2 <= limit else { throw .bufferFull(position) }
        buffer[position] = UInt8(v >> 8)
        buffer[position + 1] = UInt8(truncatingIfNeeded: v)
        position += 2
    }

    @inline(__always) public func writeU32(_ v: UInt32) throws(DNSWireError) {
        guard position + 4 <= limit else { throw .bufferFull(position) }
        buffer[position] = UInt8(v >> 24)
        buffer[position + 1] = UInt8(truncatingIfNeeded: v >> 16)
        buffer[position + 2] = UInt8(truncatingIfNeeded: v >> 8)
        buffer[position + 3] = UInt8(truncatingIfNeeded: v)
        position += 4
    }

    public func writeBytes(_ b: UnsafeRawBufferPointer) throws(DNSWireError) {
        let n = b.count
        guard position + n <= limit else { throw .bufferFull(position) }
        // Raw pointers: no slice of the buffer (and its range checks) per copy.
        if n > 0 { (buffer.baseAddress! + position).copyMemory(from: b.baseAddress!, byteCount: n) }
        position &+= n
    }

    public func writeBytes(_ b: [UInt8]) throws(DNSWireError) {
        guard position + b.count <= limit else { throw .bufferFull(position) }
        for (i, x) in b.enumerated() { buffer[position + i] = x }
        position += b.count
    }

    /// Claims `n` bytes at the current position with one bounds check, for the caller to
    /// fill with `setU16`/`buffer` stores; returns where they start.
    @inline(__always) public func claim(_ n: Int) throws(DNSWireError) -> Int {
        guard position + n <= limit else { throw .bufferFull(position) }
        let at = position
        position += n
        return at
    }

    /// Patches a 16-bit value already written (counts, RDLENGTH).
    @inline(__always) public func setU16(_ v: UInt16, at off: Int) {
        buffer[off] = UInt8(v >> 8)
        buffer[off + 1] = UInt8(truncatingIfNeeded: v)
    }

    @inline(__always) public func getU16(at off: Int) -> UInt16 {
        UInt16(buffer[off]) << 8 | UInt16(buffer[off + 1])
    }

    /// Registers a name already in the buffer (for example the question copied from the
    /// query) as a compression target, so later names point at it and keep its case. The
    /// name's bytes must stay as they are: it is walked when a later name first needs the
    /// targets (or at `mark`), not here.
    public func registerName(at start: Int) {
        registerPending()
        pendingName = start
    }

    @inline(__always) private func registerPending() {
        guard pendingName >= 0 else { return }
        var off = pendingName
        pendingName = -1
        while off < position, off < 0x3FFF, targetCount < MessageWriter.maxTargets {
            let len = buffer[off]
            if len == 0 || len & 0xC0 != 0 { return }
            targets[targetCount] = UInt16(off)
            targetCount += 1
            off += Int(len) + 1
        }
    }

    /// Writes an uncompressed wire name, replacing its longest suffix already in the
    /// message with a pointer when `compress` is true.
    public func writeName(_ wire: UnsafeRawBufferPointer, compress: Bool = true) throws(DNSWireError) {
        registerPending()
        var off = 0
        while off < wire.count {
            let len = Int(wire[off])
            if len == 0 { try writeU8(0); return }
            if compress, let target = findTarget(wire, from: off) {
                try writeU16(0xC000 | target)
                return
            }
            guard off + len < wire.count, position + len + 1 <= limit else { throw .bufferFull(position) }
            if position < 0x3FFF && targetCount < MessageWriter.maxTargets {
                targets[targetCount] = UInt16(position)
                targetCount += 1
            }
            for k in off...(off + len) { buffer[position + k - off] = wire[k] }
            position += len + 1
            off += len + 1
        }
    }

    public func writeName(_ name: DNSName, compress: Bool = true) throws(DNSWireError) {
        try withBytes(name.wire) { (p) throws(DNSWireError) in try writeName(p, compress: compress) }
    }

    /// Finds a written name equal (ignoring case) to the suffix of `wire` starting at `from`.
    private func findTarget(_ wire: UnsafeRawBufferPointer, from: Int) -> UInt16? {
        // A target starts with a label length (never a pointer): the first test `matches`
        // makes, done here without the call for the many targets whose length differs.
        let first = wire[from]
        for i in 0..<targetCount where buffer[Int(targets[i])] == first && matches(at: Int(targets[i]), wire, from: from) {
            return targets[i]
        }
        return nil
    }

    private func matches(at start: Int, _ wire: UnsafeRawBufferPointer, from: Int) -> Bool {
        var o = start
        var i = from
        var jumps = 0
        while true {
            let len = buffer[o]
            if len & 0xC0 == 0xC0 {
                jumps += 1
                if jumps > Wire.maxPointers { return false }
                o = Int(UInt16(len & 0x3F) << 8 | UInt16(buffer[o + 1]))
                continue
            }
            if len != wire[i] { return false }
            if len == 0 { return true }
            let l = Int(len)
            // Equal bytes first (names are mostly written in one case): the case-folded
            // compare only for bytes that differ.
            for k in 1...l where buffer[o + k] != wire[i + k] && asciiLower(buffer[o + k]) != asciiLower(wire[i + k]) {
                return false
            }
            o += l + 1
            i += l + 1
        }
    }

    /// Writes one resource record. Names inside the rdata of the RFC 1035 types (NS,
    /// CNAME, PTR, MX, SOA) are compressed; no other type's are (RFC 3597 4).
    public func writeRecord(owner: UnsafeRawBufferPointer, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: UnsafeRawBufferPointer) throws(DNSWireError) {
        try writeName(owner)
        try writeRecordBody(type: type, rrclass: rrclass, ttl: ttl, rdata: rdata)
    }

    /// Writes a record whose owner is a name already in the message at `ownerOffset`
    /// (typically 12, the question, so the answer keeps the case the client sent).
    public func writeRecord(ownerOffset: Int, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: UnsafeRawBufferPointer) throws(DNSWireError) {
        try writeU16(0xC000 | UInt16(ownerOffset))
        try writeRecordBody(type: type, rrclass: rrclass, ttl: ttl, rdata: rdata)
    }

    /// Everything of a record after its owner name.
    public func writeRecordBody(type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: UnsafeRawBufferPointer) throws(DNSWireError) {
        try writeU16(type.rawValue)
        try writeU16(rrclass.rawValue)
        try writeU32(ttl)
        let lenAt = position
        try writeU16(0)
        let start = position
        lastRDataStart = start
        switch type {
        case .ns, .cname, .ptr:
            try writeName(rdata)
        case .mx:
            guard rdata.count >= 3 else { throw .badRData(position) }
            try writeBytes(UnsafeRawBufferPointer(rebasing: rdata[0..<2]))
            try writeName(UnsafeRawBufferPointer(rebasing: rdata[2...]))
        case .soa:
            let m = try Wire.uncompressedNameEnd(rdata, at: 0)
            let r = try Wire.uncompressedNameEnd(rdata, at: m)
            try writeName(UnsafeRawBufferPointer(rebasing: rdata[0..<m]))
            try writeName(UnsafeRawBufferPointer(rebasing: rdata[m..<r]))
            try writeBytes(UnsafeRawBufferPointer(rebasing: rdata[r...]))
        default:
            try writeBytes(rdata)
        }
        setU16(UInt16(position - start), at: lenAt)
    }

    public func writeRecord(owner: DNSName, type: RRType, ttl: UInt32, rdata: [UInt8]) throws(DNSWireError) {
        try withBytes(owner.wire) { (o) throws(DNSWireError) in
            try withBytes(rdata) { (r) throws(DNSWireError) in
                try writeRecord(owner: o, type: type, ttl: ttl, rdata: r)
            }
        }
    }
}

/// `Array.withUnsafeBytes` with a typed-throwing body (the standard one rethrows `any Error`).
@inline(__always)
public func withBytes<R>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(DNSWireError) -> R) throws(DNSWireError) -> R {
    let r: Result<R, DNSWireError> = a.withUnsafeBytes { p in Result { () throws(DNSWireError) in try body(p) } }
    return try r.get()
}
