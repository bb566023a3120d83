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
    //
    // The state is `@usableFromInline` and the small writers below `@inlinable`: the query
    // path (Zones, Answering) calls them from other modules, where a public function is a
    // real call (SwiftPM builds each module on its own, without cross-module optimization)
    // and `@inline(__always)` alone does not cross the module boundary. They are also
    // `@inline(__always)`: as plain `@inlinable` functions `reset`, `setLimit` and
    // `writeBytes` stayed calls from the engine's large `begin` and `finish` (callgrind). Read-only views
    // (`buffer`, `position`, `limit`) keep the stored fields settable only from here.
    @usableFromInline @exclusivity(unchecked) var _buffer: UnsafeMutableRawBufferPointer = .init(start: nil, count: 0)
    @usableFromInline @exclusivity(unchecked) var _position: Int = 0
    @usableFromInline @exclusivity(unchecked) var _limit: Int = 0
    /// Offsets of name suffixes written uncompressed, usable as pointer targets: a fixed
    /// buffer of `maxTargets` and a count (no array uniqueness or capacity checks per name).
    @usableFromInline let targets: UnsafeMutablePointer<UInt16>
    @usableFromInline @exclusivity(unchecked) var targetCount = 0
    /// A name `registerName` was asked to register, not yet walked (-1: none): most answers
    /// (prebuilt, cached GSLB) write no name after the question and never need it.
    @usableFromInline @exclusivity(unchecked) var pendingName = -1
    /// Where the rdata of the last record written starts: names in it (a CNAME target, an
    /// NS host) can be pointed to or read back from there.
    @usableFromInline @exclusivity(unchecked) var _lastRDataStart: Int = 0
    /// At most this many targets are remembered: past it a name is written uncompressed,
    /// which only costs size. 128 covers a full 1232-byte answer of short names.
    @inlinable public static var maxTargets: Int { 128 }

    /// The buffer of the current message (`reset`).
    @inlinable public var buffer: UnsafeMutableRawBufferPointer { _buffer }
    /// Bytes written so far: where the next write goes.
    @inlinable public var position: Int { _position }
    /// Writes stop here (`reset`, `setLimit`).
    @inlinable public var limit: Int { _limit }
    /// Where the rdata of the last record written starts.
    @inlinable public var lastRDataStart: Int { _lastRDataStart }

    public init() { targets = .allocate(capacity: MessageWriter.maxTargets) }

    deinit { targets.deallocate() }

    /// Starts a new message in `buffer`, writing at most `limit` bytes (invariant:
    /// 0 <= position <= limit <= buffer.count).
    @inlinable @inline(__always) public func reset(buffer: UnsafeMutableRawBufferPointer, limit: Int) {
        _buffer = buffer
        _limit = min(limit, buffer.count)
        _position = 0
        targetCount = 0
        pendingName = -1
    }

    /// Raises or lowers the limit (for example after the OPT record's space is reserved).
    @inlinable @inline(__always) public func setLimit(_ l: Int) { _limit = min(max(l, _position), _buffer.count) }

    /// A point to roll back to. It keeps the name still waiting to be registered
    /// (`registerName`) as it is, rather than walking it (most marks are never rolled back
    /// and most answers then write no name): a rollback drops the targets added since and
    /// leaves that name waiting again.
    public struct Mark {
        public let position: Int
        @usableFromInline let targets: Int
        @usableFromInline let pending: Int
        @inlinable init(position: Int, targets: Int, pending: Int) {
            self.position = position; self.targets = targets; self.pending = pending
        }
    }
    @inlinable @inline(__always) public func mark() -> Mark {
        Mark(position: _position, targets: targetCount, pending: pendingName)
    }
    @inlinable @inline(__always) public func rollback(to m: Mark) {
        _position = m.position
        if targetCount > m.targets { targetCount = m.targets }
        pendingName = m.pending
    }

    @inlinable @inline(__always) public func writeU8(_ v: UInt8) throws(DNSWireError) {
        guard _position + 1 <= _limit else { throw .bufferFull(_position) }
        _buffer[_position] = v
        _position += 1
    }

    @inlinable @inline(__always) public func writeU16(_ v: UInt16) throws(DNSWireError) {
        guard _position + 2 <= _limit else { throw .bufferFull(_position) }
        _buffer.baseAddress!.storeBytes(of: v.bigEndian, toByteOffset: _position, as: UInt16.self)
        _position += 2
    }

    @inlinable @inline(__always) public func writeU32(_ v: UInt32) throws(DNSWireError) {
        guard _position + 4 <= _limit else { throw .bufferFull(_position) }
        _buffer.baseAddress!.storeBytes(of: v.bigEndian, toByteOffset: _position, as: UInt32.self)
        _position += 4
    }

    @inlinable @inline(__always) public func writeBytes(_ b: UnsafeRawBufferPointer) throws(DNSWireError) {
        let n = b.count
        guard _position + n <= _limit else { throw .bufferFull(_position) }
        // Raw pointers: no slice of the buffer (and its range checks) per copy.
        let to = _buffer.baseAddress! + _position
        if n >= 8 && n <= 32 {
            // The usual sizes (a question, a cached answer's records): two overlapping
            // fixed-width copies, both loads before the stores (as a memmove), instead of a
            // call into the C library's memmove (about 40 instructions with the call).
            let from = b.baseAddress!
            if n >= 16 {
                let head = from.loadUnaligned(as: SIMD16<UInt8>.self)
                let tail = (from + (n &- 16)).loadUnaligned(as: SIMD16<UInt8>.self)
                to.storeBytes(of: head, as: SIMD16<UInt8>.self)
                (to + (n &- 16)).storeBytes(of: tail, as: SIMD16<UInt8>.self)
            } else {
                let head = from.loadUnaligned(as: UInt64.self)
                let tail = (from + (n &- 8)).loadUnaligned(as: UInt64.self)
                to.storeBytes(of: head, as: UInt64.self)
                (to + (n &- 8)).storeBytes(of: tail, as: UInt64.self)
            }
        } else if n > 0 {
            to.copyMemory(from: b.baseAddress!, byteCount: n)
        }
        _position &+= n
    }

    public func writeBytes(_ b: [UInt8]) throws(DNSWireError) {
        guard _position + b.count <= _limit else { throw .bufferFull(_position) }
        for (i, x) in b.enumerated() { _buffer[_position + i] = x }
        _position += b.count
    }

    /// Claims `n` bytes at the current position with one bounds check, for the caller to
    /// fill with `setU16`/`buffer` stores; returns where they start.
    @inlinable @inline(__always) public func claim(_ n: Int) throws(DNSWireError) -> Int {
        guard _position + n <= _limit else { throw .bufferFull(_position) }
        let at = _position
        _position += n
        return at
    }

    /// Patches a 16-bit value already written (counts, RDLENGTH).
    @inlinable @inline(__always) public func setU16(_ v: UInt16, at off: Int) {
        _buffer[off] = UInt8(v >> 8)
        _buffer[off + 1] = UInt8(truncatingIfNeeded: v)
    }

    @inlinable @inline(__always) public func getU16(at off: Int) -> UInt16 {
        UInt16(_buffer[off]) << 8 | UInt16(_buffer[off + 1])
    }

    /// Registers a name already in the buffer (for example the question copied from the
    /// query) as a compression target, so later names point at it and keep its case. The
    /// name's bytes must stay as they are: it is walked when a later name first needs the
    /// targets (or at `mark`), not here.
    @inlinable @inline(__always) public func registerName(at start: Int) {
        if pendingName >= 0 { registerPending() }
        pendingName = start
    }

    /// Walks the name `registerName` left waiting, if any, into `targets`.
    @usableFromInline func registerPending() {
        guard pendingName >= 0 else { return }
        var off = pendingName
        pendingName = -1
        while off < _position, off < 0x3FFF, targetCount < MessageWriter.maxTargets {
            let len = _buffer[off]
            if len == 0 || len & 0xC0 != 0 { return }
            targets[targetCount] = UInt16(off)
            targetCount += 1
            off += Int(len) + 1
        }
    }

    /// Writes an uncompressed wire name, replacing its longest suffix already in the
    /// message with a pointer when `compress` is true.
    public func writeName(_ wire: UnsafeRawBufferPointer, compress: Bool = true) throws(DNSWireError) {
        if pendingName >= 0 { registerPending() }
        var off = 0
        while off < wire.count {
            let len = Int(wire[off])
            if len == 0 { try writeU8(0); return }
            if compress, let target = findTarget(wire, from: off) {
                try writeU16(0xC000 | target)
                return
            }
            guard off + len < wire.count, _position + len + 1 <= _limit else { throw .bufferFull(_position) }
            if _position < 0x3FFF && targetCount < MessageWriter.maxTargets {
                targets[targetCount] = UInt16(_position)
                targetCount += 1
            }
            for k in off...(off + len) { _buffer[_position + k - off] = wire[k] }
            _position += len + 1
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
        for i in 0..<targetCount where _buffer[Int(targets[i])] == first && matches(at: Int(targets[i]), wire, from: from) {
            return targets[i]
        }
        return nil
    }

    private func matches(at start: Int, _ wire: UnsafeRawBufferPointer, from: Int) -> Bool {
        var o = start
        var i = from
        var jumps = 0
        while true {
            let len = _buffer[o]
            if len & 0xC0 == 0xC0 {
                jumps += 1
                if jumps > Wire.maxPointers { return false }
                o = Int(UInt16(len & 0x3F) << 8 | UInt16(_buffer[o + 1]))
                continue
            }
            if len != wire[i] { return false }
            if len == 0 { return true }
            let l = Int(len)
            // Equal bytes first (names are mostly written in one case): the case-folded
            // compare only for bytes that differ.
            for k in 1...l where _buffer[o + k] != wire[i + k] && asciiLower(_buffer[o + k]) != asciiLower(wire[i + k]) {
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
    @inlinable public func writeRecord(ownerOffset: Int, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: UnsafeRawBufferPointer) throws(DNSWireError) {
        try writeU16(0xC000 | UInt16(ownerOffset))
        try writeRecordBody(type: type, rrclass: rrclass, ttl: ttl, rdata: rdata)
    }

    /// Everything of a record after its owner name.
    public func writeRecordBody(type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: UnsafeRawBufferPointer) throws(DNSWireError) {
        try writeU16(type.rawValue)
        try writeU16(rrclass.rawValue)
        try writeU32(ttl)
        let lenAt = _position
        try writeU16(0)
        let start = _position
        _lastRDataStart = start
        switch type {
        case .ns, .cname, .ptr:
            try writeName(rdata)
        case .mx:
            guard rdata.count >= 3 else { throw .badRData(_position) }
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
        setU16(UInt16(_position - start), at: lenAt)
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
/// Inlinable: a generic function from another module is otherwise called unspecialized.
@inlinable @inline(__always)
public func withBytes<R>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(DNSWireError) -> R) throws(DNSWireError) -> R {
    let r: Result<R, DNSWireError> = a.withUnsafeBytes { p in Result { () throws(DNSWireError) in try body(p) } }
    return try r.get()
}
