/// An IPv4 or IPv6 address held inline (no heap), IPv4 in the first 4 bytes.
///
///     let a = IPAddress("192.0.2.1")!
///     a.masked(to: 24).description   // "192.0.2.0"
///     IPAddress("2001:db8::1")!.isV6 // true
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt8, Sendable { case v4 = 1, v6 = 2 }
    public var family: Family
    /// Big-endian address bytes; for IPv4 only `hi`'s top 32 bits are used.
    public var hi: UInt64
    public var lo: UInt64

    @inlinable
    public init(family: Family, hi: UInt64, lo: UInt64) {
        self.family = family; self.hi = hi; self.lo = lo
    }

    @inlinable
    public init(v4 value: UInt32) {
        self.family = .v4; self.hi = UInt64(value) << 32; self.lo = 0
    }

    /// From raw network-order bytes: 4 for IPv4, 16 for IPv6.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { hi |= UInt64(b) << (56 - 8 * UInt64(i)) } else { lo |= UInt64(b) << (56 - 8 * UInt64(i - 8)) }
        }
        self.init(family: bytes.count == 4 ? .v4 : .v6, hi: hi, lo: lo)
    }

    @inlinable
    public var isV4: Bool { family == .v4 }
    @inlinable
    public var isV6: Bool { family == .v6 }
    @inlinable
    public var bitLength: Int { family == .v4 ? 32 : 128 }
    @inlinable
    public var v4Value: UInt32 { UInt32(truncatingIfNeeded: hi >> 32) }

    /// Address bytes in network order (4 or 16).
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        let n = family == .v4 ? 4 : 16
        for i in 0..<n { out.append(byte(i)) }
        return out
    }

    @inlinable @inline(__always) public func byte(_ i: Int) -> UInt8 {
        i < 8 ? UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i))) : UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i - 8)))
    }

    /// The address with every bit past `prefix` cleared. Always inlined: the ECS parse and
    /// the decision cache call it per query, where it stayed a call.
    @inlinable @inline(__always)
    public func masked(to prefix: Int) -> IPAddress {
        let p = max(0, min(prefix, bitLength))
        var r = self
        if p <= 64 {
            r.hi = p == 0 ? 0 : hi & (~UInt64(0) << (64 - UInt64(p)))
            r.lo = 0
        } else {
            r.lo = lo & (~UInt64(0) << (128 - UInt64(p)))
        }
        return r
    }

    /// An IPv4 address embedded as `::ffff:a.b.c.d` becomes plain IPv4. Always inlined: as
    /// a plain `@inlinable` getter the answering module called it per GSLB query.
    @inlinable
    public var unmappingV4: IPAddress {
        @inline(__always) get {
            if family == .v6 && hi == 0 && (lo >> 32) == 0xFFFF { return IPAddress(v4: UInt32(truncatingIfNeeded: lo)) }
            return self
        }
    }

    public init?(_ text: some StringProtocol) {
        let s = String(text)
        if s.contains(":") {
            guard let v = IPAddress.parseV6(s) else { return nil }
            self = v
        } else {
            let parts = s.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4 else { return nil }
            var v: UInt32 = 0
            for p in parts {
                guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let o = UInt32(p), o <= 255 else { return nil }
                v = v << 8 | o
            }
            self.init(v4: v)
        }
    }

    private static func parseV6(_ s: String) -> IPAddress? {
        var s = s
        return s.withUTF8 { IPAddress(v6Text: $0) }
    }

    /// Parses IPv6 presentation text straight from bytes (RFC 4291 2.2: hex groups, one
    /// `::`, an optional dotted-quad tail), without building a `String`: zone files hold
    /// many of them.
    public init?(v6Text b: UnsafeBufferPointer<UInt8>) {
        var g: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0, 0, 0, 0, 0)
        let n = b.count
        var count = 0, gap = -1, i = 0
        let ok: Bool = withUnsafeMutableBytes(of: &g) { raw in
            let groups = raw.bindMemory(to: UInt16.self)
            func hexValue(_ c: UInt8) -> UInt16? {
                switch c {
                case 48...57: return UInt16(c - 48)
                case 97...102: return UInt16(c - 87)
                case 65...70: return UInt16(c - 55)
                default: return nil
                }
            }
            guard n >= 2 else { return false }
            if b[0] == 58 {
                guard b[1] == 58 else { return false }
                gap = 0
                i = 2
            }
            while i < n {
                let start = i
                var v: UInt16 = 0
                var digits = 0
                while i < n, let h = hexValue(b[i]) {
                    digits += 1
                    guard digits <= 4 else { return false }
                    v = v << 4 | h
                    i += 1
                }
                if i < n && b[i] == 46 {
                    // Dotted-quad tail: the last 32 bits.
                    // Only digits and dots may follow (else "1.2:3" would recurse through the
                    // text initializer's IPv6 branch; found by FuzzConfig).
                    let tail = UnsafeBufferPointer(rebasing: b[start..<n])
                    guard count <= 6, tail.allSatisfy({ $0 == 46 || ($0 >= 48 && $0 <= 57) }),
                          let v4 = IPAddress(String(decoding: tail, as: UTF8.self)), v4.isV4 else { return false }
                    groups[count] = UInt16(v4.v4Value >> 16)
                    groups[count + 1] = UInt16(v4.v4Value & 0xFFFF)
                    count += 2
                    i = n
                    break
                }
                guard digits > 0, count < 8 else { return false }
                groups[count] = v
                count += 1
                if i == n { break }
                guard b[i] == 58 else { return false }
                i += 1
                if i < n && b[i] == 58 {
                    guard gap < 0 else { return false }
                    gap = count
                    i += 1
                } else if i == n {
                    return false
                }
            }
            if gap >= 0 {
                guard count <= 7 else { return false }
                let tail = count - gap
                for k in 0..<tail { groups[7 - k] = groups[count - 1 - k] }
                for k in gap..<(8 - tail) { groups[k] = 0 }
            } else {
                guard count == 8 else { return false }
            }
            return true
        }
        guard ok else { return nil }
        let hi = UInt64(g.0) << 48 | UInt64(g.1) << 32 | UInt64(g.2) << 16 | UInt64(g.3)
        let lo = UInt64(g.4) << 48 | UInt64(g.5) << 32 | UInt64(g.6) << 16 | UInt64(g.7)
        self.init(family: .v6, hi: hi, lo: lo)
    }

    public var description: String {
        if family == .v4 {
            let v = v4Value
            return "\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
        }
        var g: [UInt16] = []
        for i in 0..<4 { g.append(UInt16(truncatingIfNeeded: hi >> (48 - 16 * UInt64(i)))) }
        for i in 0..<4 { g.append(UInt16(truncatingIfNeeded: lo >> (48 - 16 * UInt64(i)))) }
        // RFC 5952: compress the longest run (length >= 2) of zero groups, first on ties.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: ArraySlice<UInt16>) -> String { r.map { String($0, radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(g[...]) }
        return hex(g[0..<bestStart]) + "::" + hex(g[(bestStart + bestLen)...])
    }
}

/// An address prefix such as `192.0.2.0/24` or `2001:db8::/32`.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var length: Int

    public init(address: IPAddress, length: Int) {
        self.address = address.masked(to: length)
        self.length = length
    }

    /// Parses `addr/len`; a bare address is a host prefix. Rejects host bits set past the prefix
    /// when `strict` is true, so a typo in a CIDR map is an error rather than a surprise.
    public init?(_ text: some StringProtocol, strict: Bool = false) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let a = IPAddress(parts[0]) else { return nil }
        var len = a.bitLength
        if parts.count == 2 {
            guard let l = Int(parts[1]), l >= 0, l <= a.bitLength else { return nil }
            len = l
        }
        if strict && a.masked(to: len) != a { return nil }
        self.init(address: a, length: len)
    }

    public func contains(_ a: IPAddress) -> Bool {
        a.family == address.family && a.masked(to: length) == address
    }

    public var description: String { "\(address)/\(length)" }
}
