/// Bounds-checked, offset-passing readers over an untrusted message.
///
/// `get*` reads at an offset without moving anything; callers advance their own
/// offset. Every function checks `offset + size <= msg.count` first and throws
/// `.truncated` otherwise, so a short message can never read out of bounds.
public enum Wire {
    @inlinable @inline(__always)
    public static func getU8(_ msg: UnsafeRawBufferPointer, _ off: Int) throws(DNSWireError) -> UInt8 {
        guard off >= 0, off < msg.count else { throw .truncated(off) }
        return msg[off]
    }

    @inlinable @inline(__always)
    public static func getU16(_ msg: UnsafeRawBufferPointer, _ off: Int) throws(DNSWireError) -> UInt16 {
        guard off >= 0, off + 2 <= msg.count else { throw .truncated(off) }
        return UInt16(msg[off]) << 8 | UInt16(msg[off + 1])
    }

    @inlinable @inline(__always)
    public static func getU32(_ msg: UnsafeRawBufferPointer, _ off: Int) throws(DNSWireError) -> UInt32 {
        guard off >= 0, off + 4 <= msg.count else { throw .truncated(off) }
        return UInt32(msg[off]) << 24 | UInt32(msg[off + 1]) << 16 | UInt32(msg[off + 2]) << 8 | UInt32(msg[off + 3])
    }

    /// A legal name has at most 127 labels (255 octets / 2), so more pointers than that
    /// means a loop (the same bound as miekg/dns's maxCompressionPointers, derived the same way).
    /// Computed and inlinable: a global `let` is read through an accessor across modules.
    @inlinable public static var maxPointers: Int { 126 }

    /// Walks a possibly compressed name starting at `off` and returns the offset just past
    /// it in the message (past the first pointer if any). When `into` is given, the
    /// uncompressed wire form is appended to it (its capacity is reused, so no allocation
    /// once warm). `lowercase` folds ASCII case while copying.
    ///
    /// Rejects: pointers that do not point strictly backwards (RFC 1035 4.1.4 says "prior
    /// occurrence"), more than `maxPointers` jumps, labels over 63, names over 255, the
    /// reserved label types 0b01 and 0b10.
    /// `compressed: false` rejects any pointer (a question name, which the server echoes
    /// verbatim into a response whose header differs, RFC 1035 4.1.4).
    public static func readName(
        _ msg: UnsafeRawBufferPointer, at start: Int, into out: UnsafeMutablePointer<[UInt8]>? = nil, lowercase: Bool = false,
        compressed: Bool = true
    ) throws(DNSWireError) -> Int {
        var off = start
        var end = -1
        var total = 0
        var jumps = 0
        var minPtr = start
        while true {
            let len = try getU8(msg, off)
            switch len & 0xC0 {
            case 0x00:
                if len == 0 {
                    total += 1
                    guard total <= 255 else { throw .nameTooLong(off) }
                    out?.pointee.append(0)
                    return end >= 0 ? end : off + 1
                }
                let l = Int(len)
                guard off + 1 + l <= msg.count else { throw .truncated(off) }
                total += 1 + l
                guard total < 255 else { throw .nameTooLong(off) }
                if let out {
                    out.pointee.append(len)
                    for k in (off + 1)...(off + l) { out.pointee.append(lowercase ? asciiLower(msg[k]) : msg[k]) }
                }
                off += 1 + l
            case 0xC0:
                guard compressed else { throw .badPointer(off) }
                let ptr = Int(try getU16(msg, off) & 0x3FFF)
                guard ptr < minPtr else { throw .badPointer(off) }
                jumps += 1
                guard jumps <= maxPointers else { throw .tooManyPointers(off) }
                if end < 0 { end = off + 2 }
                minPtr = ptr
                off = ptr
            default:
                throw .badLabelType(off)
            }
        }
    }

    /// `readName(msg, at: start)` for the common case of an uncompressed name (the names in
    /// stored rdata): one scan of the label lengths; anything else (a pointer, a bad label
    /// type, a name too long or cut short) goes to `readName`, which returns or throws as it
    /// always does.
    @inline(__always)
    public static func uncompressedNameEnd(_ msg: UnsafeRawBufferPointer, at start: Int) throws(DNSWireError) -> Int {
        var off = start
        while off < msg.count {
            let len = Int(msg[off])
            if len == 0 {
                if off &+ 1 &- start <= 255 { return off &+ 1 }
                break
            }
            if len >= 0x40 { break }
            off &+= len &+ 1
        }
        return try readName(msg, at: start)
    }

    /// Compares a name in a message (possibly compressed) with uncompressed lowercase wire
    /// bytes, ignoring case. The message name must already have been validated by `readName`.
    public static func nameEquals(_ msg: UnsafeRawBufferPointer, at start: Int, lowercaseWire: UnsafeRawBufferPointer) -> Bool {
        var off = start
        var i = 0
        var jumps = 0
        while true {
            guard off < msg.count else { return false }
            let len = msg[off]
            if len & 0xC0 == 0xC0 {
                guard off + 1 < msg.count, jumps < maxPointers else { return false }
                off = Int(UInt16(len & 0x3F) << 8 | UInt16(msg[off + 1]))
                jumps += 1
                continue
            }
            guard i < lowercaseWire.count, lowercaseWire[i] == len else { return false }
            if len == 0 { return i == lowercaseWire.count - 1 }
            let l = Int(len)
            guard off + l < msg.count, i + l < lowercaseWire.count else { return false }
            for k in 1...l where asciiLower(msg[off + k]) != lowercaseWire[i + k] { return false }
            off += l + 1
            i += l + 1
        }
    }
}
