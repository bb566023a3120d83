/// A domain name held in uncompressed wire form (length-prefixed labels ending in
/// the root label), case preserved. Equality and hashing ignore ASCII case
/// (RFC 4343), so a `DNSName` can key a dictionary built from zone data.
///
///     let n = try DNSName("www.Example.com.")
///     n.labelCount               // 3
///     n == (try DNSName("WWW.example.COM."))   // true
///     n.lowercased().description // "www.example.com."
public struct DNSName: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// Uncompressed wire bytes, always ending with the zero root label.
    public private(set) var wire: [UInt8]

    /// The root name ".".
    public static let root = DNSName(uncheckedWire: [0])

    /// Wraps bytes already known to be a valid uncompressed name.
    public init(uncheckedWire: [UInt8]) { self.wire = uncheckedWire }

    /// Validates `wire` as one uncompressed name that uses every byte.
    public init(wire: [UInt8]) throws(DNSWireError) {
        var off = 0
        var seen = 0
        while true {
            guard off < wire.count else { throw .truncated(off) }
            let len = Int(wire[off])
            if len == 0 { break }
            guard len <= 63 else { throw .labelTooLong(off) }
            off += 1 + len
            seen += 1 + len
            guard seen < 255 else { throw .nameTooLong(off) }
        }
        guard off == wire.count - 1 else { throw .trailingData(off + 1) }
        self.wire = wire
    }

    /// Parses presentation format (RFC 1035 5.1): `\.` and `\DDD` escapes, `@` for the
    /// origin, names without a final dot relative to `origin`.
    public init(_ text: some StringProtocol, origin: DNSName? = nil) throws(NameTextError) {
        let bytes = Array(text.utf8)
        if bytes == [UInt8(ascii: "@")] {
            guard let origin else { throw NameTextError.relativeWithoutOrigin }
            self = origin
            return
        }
        if bytes == [UInt8(ascii: ".")] { self = .root; return }
        guard !bytes.isEmpty else { throw NameTextError.empty }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 2)
        var label: [UInt8] = []
        var i = 0
        var absolute = false
        func flush() throws(NameTextError) {
            guard !label.isEmpty else { throw NameTextError.emptyLabel }
            guard label.count <= 63 else { throw NameTextError.labelTooLong }
            out.append(UInt8(label.count))
            out.append(contentsOf: label)
            label.removeAll(keepingCapacity: true)
        }
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\\") {
                guard i + 1 < bytes.count else { throw NameTextError.badEscape }
                let d = bytes[i + 1]
                if d >= 0x30 && d <= 0x39 {
                    var v = 0
                    for k in 1...3 {
                        guard i + k < bytes.count else { throw NameTextError.badEscape }
                        let x = bytes[i + k]
                        guard x >= 0x30 && x <= 0x39 else { throw NameTextError.badEscape }
                        v = v * 10 + Int(x - 0x30)
                    }
                    guard v <= 255 else { throw NameTextError.badEscape }
                    label.append(UInt8(v))
                    i += 4
                } else {
                    label.append(d)
                    i += 2
                }
                continue
            }
            if c == UInt8(ascii: ".") {
                try flush()
                if i == bytes.count - 1 { absolute = true }
                i += 1
                continue
            }
            label.append(c)
            i += 1
        }
        if !label.isEmpty { try flush() }
        if absolute {
            out.append(0)
        } else {
            guard let origin else { throw NameTextError.relativeWithoutOrigin }
            out.append(contentsOf: origin.wire)
        }
        guard out.count <= 255 else { throw NameTextError.nameTooLong }
        self.wire = out
    }

    /// Number of labels, not counting the root.
    public var labelCount: Int {
        var n = 0
        var off = 0
        while wire[off] != 0 { n += 1; off += Int(wire[off]) + 1 }
        return n
    }

    public var isRoot: Bool { wire.count == 1 }

    /// The labels, root excluded, each as raw bytes.
    public var labels: [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var off = 0
        while wire[off] != 0 {
            let len = Int(wire[off])
            out.append(wire[(off + 1)..<(off + 1 + len)])
            off += len + 1
        }
        return out
    }

    /// The name with its first label removed; nil for the root.
    public var parent: DNSName? {
        guard !isRoot else { return nil }
        return DNSName(uncheckedWire: Array(wire[(Int(wire[0]) + 1)...]))
    }

    /// Whether this name is `other` or below it.
    public func isSubdomain(of other: DNSName) -> Bool {
        let a = wire, b = other.wire
        guard a.count >= b.count else { return false }
        // The suffix must start on a label boundary.
        var off = 0
        while a.count - off > b.count { off += Int(a[off]) + 1 }
        guard a.count - off == b.count else { return false }
        for k in 0..<b.count where asciiLower(a[off + k]) != asciiLower(b[k]) { return false }
        return true
    }

    /// Prepends a label (for example `*` to make a wildcard).
    public func prepending(label: some Collection<UInt8>) -> DNSName {
        var w: [UInt8] = [UInt8(label.count)]
        w.append(contentsOf: label)
        w.append(contentsOf: wire)
        return DNSName(uncheckedWire: w)
    }

    public var isWildcard: Bool { wire.count >= 2 && wire[0] == 1 && wire[1] == UInt8(ascii: "*") }

    public func lowercased() -> DNSName {
        DNSName(uncheckedWire: wire.map(asciiLower))
    }

    public static func == (a: DNSName, b: DNSName) -> Bool {
        a.wire.withUnsafeBufferPointer { x in
            b.wire.withUnsafeBufferPointer { y in
                guard x.count == y.count else { return false }
                for i in 0..<x.count where x[i] != y[i] && asciiLower(x[i]) != asciiLower(y[i]) { return false }
                return true
            }
        }
    }

    /// One FNV-1a pass over the lowercased bytes, fed to the hasher as a single word: zone
    /// loading hashes millions of names, and combining byte by byte dominated it.
    public func hash(into h: inout Hasher) {
        var x: UInt64 = 0xcbf29ce484222325
        wire.withUnsafeBufferPointer { p in
            for b in p { x = (x ^ UInt64(asciiLower(b))) &* 0x100000001b3 }
        }
        h.combine(x)
    }

    /// Canonical DNS order (RFC 4034 6.1): by labels from the root, case-insensitive.
    public static func < (a: DNSName, b: DNSName) -> Bool {
        let la = a.labels.reversed().map { $0.map(asciiLower) }
        let lb = b.labels.reversed().map { $0.map(asciiLower) }
        for (x, y) in zip(la, lb) where x != y { return x.lexicographicallyPrecedes(y) }
        return la.count < lb.count
    }

    /// Presentation form with a final dot; special characters escaped (RFC 1035 5.1).
    public var description: String {
        if isRoot { return "." }
        var s = ""
        var off = 0
        while wire[off] != 0 {
            let len = Int(wire[off])
            for b in wire[(off + 1)...(off + len)] { appendEscaped(b, to: &s) }
            s.append(".")
            off += len + 1
        }
        return s
    }
}

/// Inlinable, like `asciiLowerCopy`: the zone lookup and the name compressor in other
/// modules call these per byte or per name, where a public function is a real call.
@inlinable @inline(__always) public func asciiLower(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}

/// Copies `count` bytes from `src` to `dst` with `asciiLower` applied to each, eight bytes
/// at a time: within a word, a byte gets 0x20 when it is below 0x80 and its low seven bits
/// are in "A"..."Z" (the additions cannot carry between bytes, every byte being at most
/// 0x7F before them). Reads and writes exactly `count` bytes.
/// A tail shorter than a word is the last eight bytes again when there are eight (lowering
/// is idempotent, so the overlap is written with the same values), else byte by byte.
@inlinable @inline(__always) public func asciiLowerCopy(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, count: Int) {
    @inline(__always) func lowerWord(_ at: Int) {
        let high: UInt64 = 0x8080_8080_8080_8080
        let w = src.loadUnaligned(fromByteOffset: at, as: UInt64.self)
        let low = w & 0x7F7F_7F7F_7F7F_7F7F
        let atLeastA = low &+ 0x3F3F_3F3F_3F3F_3F3F      // high bit: low >= 0x41
        let aboveZ = low &+ 0x2525_2525_2525_2525        // high bit: low > 0x5A
        let upper = ~w & (atLeastA ^ aboveZ) & high
        dst.storeBytes(of: w | (upper >> 2), toByteOffset: at, as: UInt64.self)
    }
    var i = 0
    while i &+ 8 <= count {
        lowerWord(i)
        i &+= 8
    }
    if i < count && count >= 8 {
        lowerWord(count &- 8)
        return
    }
    while i < count {
        dst.storeBytes(of: asciiLower(src.load(fromByteOffset: i, as: UInt8.self)), toByteOffset: i, as: UInt8.self)
        i += 1
    }
}

func appendEscaped(_ b: UInt8, to s: inout String) {
    switch b {
    case UInt8(ascii: "."), UInt8(ascii: "\\"), UInt8(ascii: "("), UInt8(ascii: ")"),
         UInt8(ascii: ";"), UInt8(ascii: "\""), UInt8(ascii: "@"), UInt8(ascii: "$"):
        s.append("\\")
        s.unicodeScalars.append(Unicode.Scalar(b))
    case 0x21...0x7E:
        s.unicodeScalars.append(Unicode.Scalar(b))
    default:
        s.append("\\")
        let v = Int(b)
        s.append(Character(Unicode.Scalar(UInt8(0x30 + v / 100))))
        s.append(Character(Unicode.Scalar(UInt8(0x30 + (v / 10) % 10))))
        s.append(Character(Unicode.Scalar(UInt8(0x30 + v % 10))))
    }
}

/// Why a presentation-format name was rejected.
public enum NameTextError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty, emptyLabel, labelTooLong, nameTooLong, badEscape, relativeWithoutOrigin
    public var description: String {
        switch self {
        case .empty: return "empty name"
        case .emptyLabel: return "empty label"
        case .labelTooLong: return "label longer than 63 octets"
        case .nameTooLong: return "name longer than 255 octets"
        case .badEscape: return "bad escape"
        case .relativeWithoutOrigin: return "relative name without an origin"
        }
    }
}
