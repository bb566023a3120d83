/// Byte-level helpers shared by the rdata presentation parser and the zone-file parser.
/// They work on UTF-8 bytes rather than `String` so a million-record zone does not pay
/// for grapheme breaking on every character.

extension DNSName {
    /// Parses a presentation-format name from raw bytes (RFC 1035 5.1): `\X` and `\DDD`
    /// escapes, `@` for the origin, a name without a final dot is relative to `origin`.
    /// Case is preserved.
    ///
    ///     let n = try DNSName(presentation: Array("www".utf8), origin: try DNSName("example.com."))
    ///     n.description // "www.example.com."
    public init(presentation bytes: some Collection<UInt8>, origin: DNSName?) throws(NameTextError) {
        // One call through the generic, then concrete code: this initializer is called from
        // other modules, where a generic body would run unspecialized (witness calls per byte).
        let parsed = bytes.withContiguousStorageIfAvailable { DNSName.parsePresentation($0, origin: origin) }
            ?? Array(bytes).withUnsafeBufferPointer { DNSName.parsePresentation($0, origin: origin) }
        self = try parsed.get()
    }

    static func parsePresentation(_ bytes: UnsafeBufferPointer<UInt8>, origin: DNSName?) -> Result<DNSName, NameTextError> {
        do throws(NameTextError) {
            return .success(try DNSName(presentationBuffer: bytes, origin: origin))
        } catch {
            return .failure(error)
        }
    }

    private init(presentationBuffer bytes: UnsafeBufferPointer<UInt8>, origin: DNSName?) throws(NameTextError) {
        let count = bytes.count
        if count == 1, let c = bytes.first {
            if c == UInt8(ascii: "@") {
                guard let origin else { throw .relativeWithoutOrigin }
                self = origin
                return
            }
            if c == UInt8(ascii: ".") { self = .root; return }
        }
        guard count > 0 else { throw .empty }
        var out: [UInt8] = []
        out.reserveCapacity(count + 2 + (origin?.wire.count ?? 0))
        out.append(0)
        var labelStart = 0          // index in `out` of the current label's length byte
        var labelLen = 0
        var absolute = false
        var it = bytes.makeIterator()
        var consumed = 0
        while let c = it.next() {
            consumed += 1
            if c == UInt8(ascii: "\\") {
                guard let d = it.next() else { throw .badEscape }
                consumed += 1
                var v = d
                if isDigit(d) {
                    guard let d2 = it.next(), let d3 = it.next(), isDigit(d2), isDigit(d3) else { throw .badEscape }
                    consumed += 2
                    let x = Int(d - 48) * 100 + Int(d2 - 48) * 10 + Int(d3 - 48)
                    guard x <= 255 else { throw .badEscape }
                    v = UInt8(x)
                }
                labelLen += 1
                guard labelLen <= 63 else { throw .labelTooLong }
                out.append(v)
                continue
            }
            if c == UInt8(ascii: ".") {
                guard labelLen > 0 else { throw .emptyLabel }
                out[labelStart] = UInt8(labelLen)
                if consumed == count { absolute = true; break }
                labelStart = out.count
                out.append(0)
                labelLen = 0
                continue
            }
            labelLen += 1
            guard labelLen <= 63 else { throw .labelTooLong }
            out.append(c)
        }
        if absolute {
            out.append(0)
        } else {
            guard labelLen > 0 else { throw .emptyLabel }
            out[labelStart] = UInt8(labelLen)
            guard let origin else { throw .relativeWithoutOrigin }
            out.append(contentsOf: origin.wire)
        }
        guard out.count <= 255 else { throw .nameTooLong }
        self.init(uncheckedWire: out)
    }
}

@inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

public enum TextBytes {
    /// Decimal without sign, at most `max`; nil on anything else.
    static func number(_ b: some Collection<UInt8>, max: UInt64) -> UInt64? {
        guard !b.isEmpty, b.count <= 20 else { return nil }
        var v: UInt64 = 0
        for c in b {
            guard isDigit(c) else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(c - 48))
            guard !o1, !o2 else { return nil }
            v = s
        }
        return v <= max ? v : nil
    }

    /// A TTL or SOA timer: plain seconds, or one or more `<n><unit>` groups with units
    /// w, d, h, m, s in any case (BIND's extension, e.g. `1h30m`, `1w2d`).
    static func duration(_ b: some Collection<UInt8>, max: UInt64) -> UInt64? {
        guard !b.isEmpty else { return nil }
        var total: UInt64 = 0
        var cur: UInt64 = 0
        var digits = 0
        var sawUnit = false
        for c in b {
            if isDigit(c) {
                cur = cur * 10 + UInt64(c - 48)
                digits += 1
                guard cur <= max, digits <= 12 else { return nil }
                continue
            }
            let mult: UInt64
            switch c | 0x20 {
            case UInt8(ascii: "w"): mult = 604_800
            case UInt8(ascii: "d"): mult = 86_400
            case UInt8(ascii: "h"): mult = 3_600
            case UInt8(ascii: "m"): mult = 60
            case UInt8(ascii: "s"): mult = 1
            default: return nil
            }
            guard digits > 0 else { return nil }
            total += cur * mult
            guard total <= max else { return nil }
            cur = 0; digits = 0; sawUnit = true
        }
        if digits > 0 {
            // A trailing bare number after units (`1h30`) is seconds, as BIND reads it.
            total += cur
        } else if !sawUnit {
            return nil
        }
        return total <= max ? total : nil
    }

    /// Decodes `\X` and `\DDD` escapes of a character-string (RFC 1035 5.1); nil on a bad escape.
    static func unescape(_ b: some Collection<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var it = b.makeIterator()
        while let c = it.next() {
            guard c == UInt8(ascii: "\\") else { out.append(c); continue }
            guard let d = it.next() else { return nil }
            if isDigit(d) {
                guard let d2 = it.next(), let d3 = it.next(), isDigit(d2), isDigit(d3) else { return nil }
                let x = Int(d - 48) * 100 + Int(d2 - 48) * 10 + Int(d3 - 48)
                guard x <= 255 else { return nil }
                out.append(UInt8(x))
            } else {
                out.append(d)
            }
        }
        return out
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 65...70: return c - 55
        case 97...102: return c - 87
        default: return nil
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// Uppercase hex in chunks of 56 characters separated by a space, as dig prints DS,
    /// SSHFP, TLSA and RFC 3597 data on one line.
    static func hex(_ b: some Collection<UInt8>) -> String {
        var s: [UInt8] = []
        s.reserveCapacity(b.count * 2 + b.count / 28)
        var n = 0
        for x in b {
            if n > 0 && n % 28 == 0 { s.append(UInt8(ascii: " ")) }
            s.append(hexDigits[Int(x >> 4)])
            s.append(hexDigits[Int(x & 15)])
            n += 1
        }
        return String(decoding: s, as: UTF8.self)
    }

    static let b64: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func base64(_ b: [UInt8]) -> String {
        var s: [UInt8] = []
        s.reserveCapacity((b.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= b.count {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            s += [b64[Int(v >> 18)], b64[Int(v >> 12 & 63)], b64[Int(v >> 6 & 63)], b64[Int(v & 63)]]
            i += 3
        }
        let rest = b.count - i
        if rest == 1 {
            let v = UInt32(b[i]) << 16
            s += [b64[Int(v >> 18)], b64[Int(v >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8
            s += [b64[Int(v >> 18)], b64[Int(v >> 12 & 63)], b64[Int(v >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: s, as: UTF8.self)
    }

    /// Strict RFC 4648 base64 with padding; nil on any bad character or length.
    public static func unbase64(_ b: some Collection<UInt8>) -> [UInt8]? {
        var vals: [UInt8] = []
        vals.reserveCapacity(b.count)
        var pad = 0
        for c in b {
            let v: UInt8
            switch c {
            case 65...90: v = c - 65
            case 97...122: v = c - 71
            case 48...57: v = c + 4
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="): pad += 1; continue
            default: return nil
            }
            guard pad == 0 else { return nil }
            vals.append(v)
        }
        guard (vals.count + pad) % 4 == 0, pad <= 2, vals.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < vals.count {
            let n = min(4, vals.count - i)
            var acc: UInt32 = 0
            for k in 0..<4 { acc = acc << 6 | (k < n ? UInt32(vals[i + k]) : 0) }
            out.append(UInt8(acc >> 16 & 255))
            if n > 2 { out.append(UInt8(acc >> 8 & 255)) }
            if n > 3 { out.append(UInt8(acc & 255)) }
            i += 4
        }
        return out
    }

    /// A character-string in quotes, escaping `"` and `\` and non-printable bytes as `\DDD`
    /// (the way dig prints TXT).
    static func quoted(_ b: some Collection<UInt8>, into s: inout [UInt8]) {
        s.append(UInt8(ascii: "\""))
        for c in b {
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                s.append(UInt8(ascii: "\\")); s.append(c)
            case 0x20...0x7E:
                s.append(c)
            default:
                s.append(UInt8(ascii: "\\"))
                s.append(48 + c / 100); s.append(48 + (c / 10) % 10); s.append(48 + c % 10)
            }
        }
        s.append(UInt8(ascii: "\""))
    }
}

/// RFC 4648 base64 for the key files (BIND `.key`/`.private`) and other loaders.
public enum Base64 {
    /// Strict base64 with padding; nil on a bad character or length.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? { TextBytes.unbase64(text) }
    public static func encode(_ bytes: [UInt8]) -> String { TextBytes.base64(bytes) }
}
