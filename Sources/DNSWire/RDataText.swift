/// One rdata field as a tokenizer read it. `bytes` are the raw token bytes with escapes
/// still in place (a name needs to tell `\.` from `.`); for a quoted string the quotes
/// are stripped and `quoted` is true. A token with a quote in its middle (RFC 9460
/// `alpn="h2,h3"`) keeps its quotes and is not `quoted`.
///
///     let f = RDataField("mail.example.com.")
///     let t = RDataField("v=spf1 -all", quoted: true)
public struct RDataField: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]
    public var quoted: Bool
    public init(_ bytes: [UInt8], quoted: Bool = false) { self.bytes = bytes; self.quoted = quoted }
    public init(_ text: String, quoted: Bool = false) { self.bytes = Array(text.utf8); self.quoted = quoted }
    /// The token as written (quotes restored), for messages.
    public var description: String {
        let s = String(decoding: bytes, as: UTF8.self)
        return quoted ? "\"\(s)\"" : s
    }
}

/// Why rdata text was rejected: `field` is the index of the offending field (equal to
/// the number of fields when one is missing), so the zone parser can point at its column.
public struct RDataTextError: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: Int
    public var message: String
    public init(field: Int, message: String) { self.field = field; self.message = message }
    public var description: String { message }
}

/// Presentation format (RFC 1035 5.1 and each type's RFC) to and from uncompressed wire rdata.
///
///     let wire = try RDataText.parse(type: .mx, text: "10 mail", origin: try DNSName("example.com."))
///     RDataText.format(type: .mx, rdata: wire)   // "10 mail.example.com."
///     RDataText.format(type: RRType(65534), rdata: [1, 2])  // "\\# 2 0102" (RFC 3597)
///
/// Names inside rdata are made absolute with `origin` and keep their case. `format` is the
/// canonical form dig prints on one line, and `parse(format(x)) == x` for every rdata.
public enum RDataText {

    // MARK: Parsing

    /// The most rdata one record can carry: RDLENGTH is 16 bits (RFC 1035 3.2.1). Longer
    /// text (a TXT record of many strings, say) is refused here, the one place rdata is
    /// built from text, for every type.
    public static let maxLength = 65535

    /// Parses the rdata fields of one record of type `type`.
    public static func parse(type: RRType, fields: [RDataField], origin: DNSName) throws(RDataTextError) -> [UInt8] {
        let wire = try parseUnbounded(type: type, fields: fields, origin: origin)
        guard wire.count <= maxLength else {
            throw RDataTextError(field: 0, message: "rdata of this \(type) record is \(wire.count) bytes, over the \(maxLength) a record can hold (RFC 1035 3.2.1)")
        }
        return wire
    }

    private static func parseUnbounded(type: RRType, fields: [RDataField], origin: DNSName) throws(RDataTextError) -> [UInt8] {
        var p = FieldParser(fields: fields, origin: origin, type: type)
        if let first = fields.first, !first.quoted, first.bytes == [UInt8(ascii: "\\"), UInt8(ascii: "#")] {
            return try p.generic()
        }
        switch type {
        case .a:
            try p.address(v6: false)
        case .aaaa:
            try p.address(v6: true)
        case .ns, .cname, .ptr, .dname:
            try p.name("target name")
        case .soa:
            try p.name("primary server name (MNAME)")
            try p.name("mailbox name (RNAME)")
            try p.u32("serial")
            for what in ["refresh", "retry", "expire", "minimum"] { try p.duration(what) }
        case .mx:
            try p.u16("preference")
            try p.name("exchange name")
        case .txt, .spf:
            try p.characterString("text")
            while p.more { try p.characterString("text") }
        case .srv:
            try p.u16("priority")
            try p.u16("weight")
            try p.u16("port")
            try p.name("target name")
        case .caa:
            try p.caa()
        case .hinfo:
            try p.characterString("CPU")
            try p.characterString("OS")
        case .naptr:
            try p.u16("order")
            try p.u16("preference")
            try p.characterString("flags")
            try p.characterString("services")
            try p.characterString("regexp")
            try p.name("replacement name")
        case .ds:
            try p.u16("key tag")
            try p.u8("algorithm")
            try p.u8("digest type")
            try p.hexRest("digest")
        case .sshfp:
            try p.u8("algorithm")
            try p.u8("fingerprint type")
            try p.hexRest("fingerprint")
        case .tlsa:
            try p.u8("certificate usage")
            try p.u8("selector")
            try p.u8("matching type")
            try p.hexRest("certificate association data")
        case .svcb, .https:
            try p.svcb()
        default:
            throw RDataTextError(field: 0, message: "type \(type) has no known presentation format: use the RFC 3597 form \\# <length> <hex>")
        }
        try p.end()
        return p.out
    }

    /// The rdata of an A (`v6` false) or AAAA record written as one unquoted field, parsed
    /// straight from the zone file's bytes into an array of exactly 4 or 16 bytes; nil when
    /// the field is not a plain address, and the caller then goes through `parse`, which
    /// says what is wrong. A large zone is mostly addresses, so this path is the hot one.
    ///
    ///     Array("192.0.2.1".utf8).withUnsafeBufferPointer { RDataText.parseAddress(v6: false, $0) }  // [192, 0, 2, 1]
    public static func parseAddress(v6: Bool, _ b: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        withUnsafeTemporaryAllocation(byteCount: 16, alignment: 1) { out in
            parseAddress(v6: v6, b, into: out).map { Array(out[0..<$0]) }
        }
    }

    /// `parseAddress(v6:_:)` into `out` (at least 16 bytes), allocating nothing: the number
    /// of bytes written (4 or 16), or nil.
    @inline(__always)
    public static func parseAddress(v6: Bool, _ b: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableRawBufferPointer) -> Int? {
        guard v6 else {
            guard let q = FieldParser.parseIPv4(b) else { return nil }
            out[0] = q.0; out[1] = q.1; out[2] = q.2; out[3] = q.3
            return 4
        }
        guard let a = IPAddress(v6Text: b) else { return nil }
        for i in 0..<16 { out[i] = a.byte(i) }
        return 16
    }

    /// Tokenizes one line of rdata (quotes, escapes, whitespace; no comments or
    /// parentheses) and parses it. Used by tests and the config loader.
    public static func parse(type: RRType, text: String, origin: DNSName) throws(RDataTextError) -> [UInt8] {
        try parse(type: type, fields: tokenize(text), origin: origin)
    }

    /// Splits one line into fields the way the zone-file tokenizer does.
    public static func tokenize(_ text: String) throws(RDataTextError) -> [RDataField] {
        let b = Array(text.utf8)
        var fields: [RDataField] = []
        var i = 0
        while i < b.count {
            let c = b[i]
            if c == 32 || c == 9 || c == 10 || c == 13 { i += 1; continue }
            if c == UInt8(ascii: "\"") {
                var tok: [UInt8] = []
                i += 1
                var closed = false
                while i < b.count {
                    if b[i] == UInt8(ascii: "\\") {
                        guard i + 1 < b.count else { break }
                        tok.append(b[i]); tok.append(b[i + 1]); i += 2; continue
                    }
                    if b[i] == UInt8(ascii: "\"") { closed = true; i += 1; break }
                    tok.append(b[i]); i += 1
                }
                guard closed else { throw RDataTextError(field: fields.count, message: "unterminated quoted string") }
                fields.append(RDataField(tok, quoted: true))
                continue
            }
            var tok: [UInt8] = []
            var inQuote = false
            while i < b.count {
                let d = b[i]
                if d == UInt8(ascii: "\\") {
                    guard i + 1 < b.count else { throw RDataTextError(field: fields.count, message: "backslash at the end of the text") }
                    tok.append(d); tok.append(b[i + 1]); i += 2; continue
                }
                if d == UInt8(ascii: "\"") { inQuote.toggle(); tok.append(d); i += 1; continue }
                if !inQuote && (d == 32 || d == 9 || d == 10 || d == 13) { break }
                tok.append(d); i += 1
            }
            guard !inQuote else { throw RDataTextError(field: fields.count, message: "unterminated quoted string") }
            fields.append(RDataField(tok))
        }
        return fields
    }

    /// A TTL: plain seconds or units (`1h30m`, `1w2d`), at most 2^31-1 (RFC 2181 8).
    public static func parseTTL(_ bytes: some Collection<UInt8>) -> UInt32? {
        TextBytes.duration(bytes, max: 0x7FFF_FFFF).map { UInt32($0) }
    }

    // MARK: Formatting

    /// The canonical one-line presentation of `rdata`, as dig prints it; the RFC 3597
    /// `\# len hex` form for unknown types and for rdata that is malformed for its type.
    public static func format(type: RRType, rdata: [UInt8]) -> String {
        formatTyped(type: type, rdata: rdata) ?? formatGeneric(rdata)
    }

    /// The RFC 3597 section 5 form: `\# <length> <hex>`.
    public static func formatGeneric(_ rdata: [UInt8]) -> String {
        rdata.isEmpty ? "\\# 0" : "\\# \(rdata.count) \(TextBytes.hex(rdata))"
    }

    /// Whether `type` has a typed presentation format here (others use RFC 3597 only).
    public static func hasTypedFormat(_ type: RRType) -> Bool {
        switch type {
        case .a, .aaaa, .ns, .cname, .ptr, .dname, .soa, .mx, .txt, .spf, .srv, .caa, .hinfo, .naptr,
             .ds, .sshfp, .tlsa, .svcb, .https:
            return true
        default:
            return false
        }
    }

    static func formatTyped(type: RRType, rdata: [UInt8]) -> String? {
        var r = RDataReader(b: rdata)
        var s = ""
        switch type {
        case .a:
            guard rdata.count == 4, let a = IPAddress(bytes: rdata) else { return nil }
            return a.description
        case .aaaa:
            guard rdata.count == 16, let a = IPAddress(bytes: rdata) else { return nil }
            return a.description
        case .ns, .cname, .ptr, .dname:
            guard let n = r.name() else { return nil }
            s = n.description
        case .soa:
            guard let m = r.name(), let rn = r.name() else { return nil }
            s = "\(m) \(rn)"
            for _ in 0..<5 {
                guard let v = r.u32() else { return nil }
                s += " \(v)"
            }
        case .mx:
            guard let p = r.u16(), let n = r.name() else { return nil }
            s = "\(p) \(n)"
        case .txt, .spf:
            guard r.more else { return nil }
            var out: [UInt8] = []
            while r.more {
                guard let cs = r.characterString() else { return nil }
                if !out.isEmpty { out.append(32) }
                TextBytes.quoted(cs, into: &out)
            }
            s = String(decoding: out, as: UTF8.self)
        case .srv:
            guard let p = r.u16(), let w = r.u16(), let port = r.u16(), let n = r.name() else { return nil }
            s = "\(p) \(w) \(port) \(n)"
        case .caa:
            guard let flags = r.u8(), let tag = r.characterString(), !tag.isEmpty,
                  tag.allSatisfy(isAlnum) else { return nil }
            let value = r.rest()
            var out: [UInt8] = []
            TextBytes.quoted(value, into: &out)
            s = "\(flags) \(String(decoding: tag, as: UTF8.self)) \(String(decoding: out, as: UTF8.self))"
        case .hinfo:
            guard let a = r.characterString(), let b = r.characterString() else { return nil }
            var out: [UInt8] = []
            TextBytes.quoted(a, into: &out); out.append(32); TextBytes.quoted(b, into: &out)
            s = String(decoding: out, as: UTF8.self)
        case .naptr:
            guard let o = r.u16(), let p = r.u16() else { return nil }
            var out: [UInt8] = []
            for _ in 0..<3 {
                guard let cs = r.characterString() else { return nil }
                TextBytes.quoted(cs, into: &out); out.append(32)
            }
            guard let n = r.name() else { return nil }
            s = "\(o) \(p) \(String(decoding: out, as: UTF8.self))\(n)"
        case .ds:
            guard let tag = r.u16(), let alg = r.u8(), let dt = r.u8(), r.more else { return nil }
            s = "\(tag) \(alg) \(dt) \(TextBytes.hex(r.rest()))"
        case .sshfp:
            guard let alg = r.u8(), let ft = r.u8(), r.more else { return nil }
            s = "\(alg) \(ft) \(TextBytes.hex(r.rest()))"
        case .tlsa:
            guard let u = r.u8(), let sel = r.u8(), let mt = r.u8(), r.more else { return nil }
            s = "\(u) \(sel) \(mt) \(TextBytes.hex(r.rest()))"
        case .svcb, .https:
            return formatSVCB(&r)
        default:
            return nil
        }
        return r.more ? nil : s
    }

    private static func formatSVCB(_ r: inout RDataReader) -> String? {
        guard let prio = r.u16(), let target = r.name() else { return nil }
        var s = "\(prio) \(target)"
        var lastKey = -1
        var keys: [UInt16] = []
        var mandatory: [UInt16] = []
        while r.more {
            guard let key = r.u16(), let len = r.u16(), let slice = r.bytes(Int(len)) else { return nil }
            let v = Array(slice)
            guard Int(key) > lastKey, key != 65535 else { return nil }
            lastKey = Int(key)
            keys.append(key)
            s += " " + SvcParam.name(key)
            switch key {
            case SvcParam.mandatory:
                guard !v.isEmpty, v.count % 2 == 0 else { return nil }
                var names: [String] = []
                var prev = -1
                for i in stride(from: 0, to: v.count, by: 2) {
                    let k = Int(v[i]) << 8 | Int(v[i + 1])
                    guard k > prev, k != 0 else { return nil }
                    prev = k
                    mandatory.append(UInt16(k))
                    names.append(SvcParam.name(UInt16(k)))
                }
                s += "=" + names.joined(separator: ",")
            case SvcParam.alpn:
                var list: [UInt8] = []
                var vr = RDataReader(b: v)
                guard vr.more else { return nil }
                while vr.more {
                    guard let id = vr.characterString(), !id.isEmpty else { return nil }
                    if !list.isEmpty { list.append(UInt8(ascii: ",")) }
                    for c in id {
                        // RFC 9460 A.1: commas and backslashes inside an item are escaped
                        // before the value is written as a quoted character-string.
                        if c == UInt8(ascii: ",") || c == UInt8(ascii: "\\") { list.append(UInt8(ascii: "\\")) }
                        list.append(c)
                    }
                }
                var out: [UInt8] = []
                TextBytes.quoted(list, into: &out)
                s += "=" + String(decoding: out, as: UTF8.self)
            case SvcParam.noDefaultALPN:
                guard v.isEmpty else { return nil }
            case SvcParam.port:
                guard v.count == 2 else { return nil }
                s += "=\(Int(v[0]) << 8 | Int(v[1]))"
            case SvcParam.ipv4hint, SvcParam.ipv6hint:
                let size = key == SvcParam.ipv4hint ? 4 : 16
                guard !v.isEmpty, v.count % size == 0 else { return nil }
                var parts: [String] = []
                for i in stride(from: 0, to: v.count, by: size) {
                    guard let a = IPAddress(bytes: v[i..<(i + size)]) else { return nil }
                    parts.append(a.description)
                }
                s += "=" + parts.joined(separator: ",")
            case SvcParam.ech:
                guard !v.isEmpty else { return nil }
                s += "=" + TextBytes.base64(v)
            default:
                if !v.isEmpty {
                    var out: [UInt8] = []
                    TextBytes.quoted(v, into: &out)
                    s += "=" + String(decoding: out, as: UTF8.self)
                }
            }
        }
        // The self-consistency rules `parse` enforces (RFC 9460 8 and 7.1.1): every key that
        // mandatory lists is present, and no-default-alpn comes with alpn. Rdata breaking them
        // is shown in the RFC 3597 form, so that `parse(format(x)) == x` holds.
        guard mandatory.allSatisfy(keys.contains) else { return nil }
        guard !keys.contains(SvcParam.noDefaultALPN) || keys.contains(SvcParam.alpn) else { return nil }
        return s
    }
}

@inline(__always) func isAlnum(_ c: UInt8) -> Bool {
    (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
}

/// SvcParamKeys registered by RFC 9460 section 14.3.2.
enum SvcParam {
    static let mandatory: UInt16 = 0
    static let alpn: UInt16 = 1
    static let noDefaultALPN: UInt16 = 2
    static let port: UInt16 = 3
    static let ipv4hint: UInt16 = 4
    static let ech: UInt16 = 5
    static let ipv6hint: UInt16 = 6
    static let names = ["mandatory", "alpn", "no-default-alpn", "port", "ipv4hint", "ech", "ipv6hint"]

    static func name(_ k: UInt16) -> String { Int(k) < names.count ? names[Int(k)] : "key\(k)" }

    /// A key name or `keyNNNNN`; 65535 is reserved ("Invalid key", RFC 9460 14.3.2).
    static func key(_ b: some Collection<UInt8>) -> UInt16? {
        let s = String(decoding: b, as: UTF8.self)
        if let i = names.firstIndex(of: s) { return UInt16(i) }
        guard s.hasPrefix("key"), let v = TextBytes.number(b.dropFirst(3), max: 65534) else { return nil }
        return UInt16(v)
    }
}

/// Reads wire rdata for formatting; every read is bounds-checked and returns nil when short.
struct RDataReader {
    let b: [UInt8]
    var off = 0
    var more: Bool { off < b.count }
    mutating func u8() -> UInt8? {
        guard off < b.count else { return nil }
        off += 1
        return b[off - 1]
    }
    mutating func u16() -> UInt16? {
        guard off + 2 <= b.count else { return nil }
        off += 2
        return UInt16(b[off - 2]) << 8 | UInt16(b[off - 1])
    }
    mutating func u32() -> UInt32? {
        guard let h = u16(), let l = u16() else { return nil }
        return UInt32(h) << 16 | UInt32(l)
    }
    mutating func bytes(_ n: Int) -> ArraySlice<UInt8>? {
        guard off + n <= b.count else { return nil }
        off += n
        return b[(off - n)..<off]
    }
    mutating func characterString() -> ArraySlice<UInt8>? {
        guard let n = u8() else { return nil }
        return bytes(Int(n))
    }
    mutating func rest() -> ArraySlice<UInt8> {
        defer { off = b.count }
        return b[off...]
    }
    /// An uncompressed name (rdata in zone data never holds compression pointers).
    mutating func name() -> DNSName? {
        let start = off
        while true {
            guard let len = u8() else { return nil }
            if len == 0 { break }
            guard len <= 63, bytes(Int(len)) != nil else { return nil }
        }
        guard off - start <= 255 else { return nil }
        return DNSName(uncheckedWire: Array(b[start..<off]))
    }
}

/// Consumes fields left to right and appends wire bytes to `out`.
struct FieldParser {
    let fields: [RDataField]
    let origin: DNSName
    let type: RRType
    var i = 0
    var out: [UInt8] = []

    init(fields: [RDataField], origin: DNSName, type: RRType) {
        self.fields = fields; self.origin = origin; self.type = type
        out.reserveCapacity(32)
    }

    var more: Bool { i < fields.count }

    func bad(_ what: String, _ expected: String, at idx: Int) -> RDataTextError {
        RDataTextError(field: idx, message: "bad \(what) \"\(fields[idx].description)\": expected \(expected)")
    }

    mutating func take(_ what: String, _ expected: String) throws(RDataTextError) -> RDataField {
        guard i < fields.count else {
            throw RDataTextError(field: i, message: "missing \(what) in \(type) rdata: expected \(expected)")
        }
        i += 1
        return fields[i - 1]
    }

    mutating func end() throws(RDataTextError) {
        guard i < fields.count else { return }
        throw RDataTextError(field: i, message: "unexpected \"\(fields[i].description)\" after the \(type) rdata")
    }

    mutating func number(_ what: String, max: UInt64) throws(RDataTextError) -> UInt64 {
        let expected = "a number 0-\(max)"
        let f = try take(what, expected)
        guard let v = TextBytes.number(f.bytes, max: max) else { throw bad(what, expected, at: i - 1) }
        return v
    }

    mutating func u8(_ what: String) throws(RDataTextError) {
        out.append(UInt8(try number(what, max: 255)))
    }

    mutating func u16(_ what: String) throws(RDataTextError) {
        let v = try number(what, max: 65535)
        out.append(UInt8(v >> 8)); out.append(UInt8(v & 255))
    }

    mutating func append32(_ v: UInt64) {
        out.append(UInt8(v >> 24 & 255)); out.append(UInt8(v >> 16 & 255))
        out.append(UInt8(v >> 8 & 255)); out.append(UInt8(v & 255))
    }

    mutating func u32(_ what: String) throws(RDataTextError) {
        append32(try number(what, max: 0xFFFF_FFFF))
    }

    /// SOA timers accept the same units as TTLs (`1h`, `2w`), as BIND and NSD do.
    mutating func duration(_ what: String) throws(RDataTextError) {
        let expected = "seconds or a duration like 1h30m"
        let f = try take(what, expected)
        guard !f.quoted, let v = TextBytes.duration(f.bytes, max: 0xFFFF_FFFF) else { throw bad(what, expected, at: i - 1) }
        append32(v)
    }

    mutating func name(_ what: String) throws(RDataTextError) {
        let expected = "a domain name"
        let f = try take(what, expected)
        do {
            let n = try DNSName(presentation: f.bytes, origin: origin)
            out.append(contentsOf: n.wire)
        } catch {
            throw bad(what, "a domain name (\(error))", at: i - 1)
        }
    }

    mutating func address(v6: Bool) throws(RDataTextError) {
        let expected = v6 ? "an IPv6 address" : "an IPv4 address"
        let f = try take("address", expected)
        if !v6 {
            guard !f.quoted, f.bytes.withUnsafeBufferPointer({ FieldParser.appendIPv4($0, to: &out) }) else {
                throw bad("address", expected, at: i - 1)
            }
            return
        }
        guard !f.quoted, let a = f.bytes.withUnsafeBufferPointer({ IPAddress(v6Text: $0) }) else {
            throw bad("address", expected, at: i - 1)
        }
        out.append(contentsOf: a.bytes)
    }

    /// Dotted quad straight from bytes (the common record in a large zone): exactly four
    /// decimal octets of 1-3 digits, each at most 255.
    static func appendIPv4(_ b: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) -> Bool {
        guard let q = parseIPv4(b) else { return false }
        out.append(q.0); out.append(q.1); out.append(q.2); out.append(q.3)
        return true
    }

    /// The four octets of a dotted quad, or nil.
    @inline(__always)
    static func parseIPv4(_ b: UnsafeBufferPointer<UInt8>) -> (UInt8, UInt8, UInt8, UInt8)? {
        var parts = 0, v = 0, digits = 0
        var tmp: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        for k in 0...b.count {
            let c: UInt8 = k < b.count ? b[k] : UInt8(ascii: ".")
            if isDigit(c) {
                v = v * 10 + Int(c - 48); digits += 1
                guard digits <= 3 else { return nil }
                continue
            }
            guard c == UInt8(ascii: "."), digits > 0, v <= 255, parts < 4 else { return nil }
            switch parts {
            case 0: tmp.0 = UInt8(v)
            case 1: tmp.1 = UInt8(v)
            case 2: tmp.2 = UInt8(v)
            default: tmp.3 = UInt8(v)
            }
            parts += 1; v = 0; digits = 0
        }
        guard parts == 4 else { return nil }
        return tmp
    }

    /// RFC 1035 5.1 <character-string>: quoted or not, escapes decoded, 255 octets at most.
    mutating func characterString(_ what: String) throws(RDataTextError) {
        let f = try take(what, "a character-string")
        guard let v = TextBytes.unescape(f.bytes) else { throw bad(what, "a character-string with valid escapes", at: i - 1) }
        guard v.count <= 255 else {
            throw RDataTextError(field: i - 1, message: "\(what) string is \(v.count) octets long: a character-string holds at most 255")
        }
        out.append(UInt8(v.count))
        out.append(contentsOf: v)
    }

    /// Hex spread over the remaining fields (whitespace inside is allowed, RFC 4034 5.3).
    mutating func hexRest(_ what: String) throws(RDataTextError) {
        guard more else {
            throw RDataTextError(field: i, message: "missing \(what) in \(type) rdata: expected hexadecimal digits")
        }
        let v = try hexFields(what)
        guard !v.isEmpty else { throw bad(what, "hexadecimal digits", at: i - 1) }
        out.append(contentsOf: v)
    }

    mutating func hexFields(_ what: String) throws(RDataTextError) -> [UInt8] {
        var v: [UInt8] = []
        var half: UInt8? = nil
        while i < fields.count {
            let f = fields[i]
            guard !f.quoted else { throw bad(what, "hexadecimal digits", at: i) }
            for c in f.bytes {
                guard let x = TextBytes.hexValue(c) else { throw bad(what, "hexadecimal digits", at: i) }
                if let h = half { v.append(h << 4 | x); half = nil } else { half = x }
            }
            i += 1
        }
        guard half == nil else {
            throw RDataTextError(field: i - 1, message: "bad \(what): odd number of hexadecimal digits")
        }
        return v
    }

    /// RFC 3597 5: `\# <length> <hex>`, also accepted for known types.
    mutating func generic() throws(RDataTextError) -> [UInt8] {
        i = 1
        let len = try number("RFC 3597 rdata length", max: 65535)
        let v = try hexFields("RFC 3597 rdata")
        guard v.count == Int(len) else {
            throw RDataTextError(field: 1, message: "RFC 3597 rdata length \(len) does not match the \(v.count) octets of hex data")
        }
        if RDataText.hasTypedFormat(type), RDataText.formatTyped(type: type, rdata: v) == nil {
            throw RDataTextError(field: 2 < fields.count ? 2 : 1, message: "RFC 3597 rdata is not valid \(type) rdata")
        }
        return v
    }

    /// RFC 8659 4.1: flags, tag (ASCII letters and digits), value (the rest, no 255 limit).
    /// The tag is 1-255 octets: RFC 8659 4.1 requires only a length of at least 1 (RFC 6844 5.1's
    /// "SHOULD be no more than 15" was dropped), and `format` prints any such tag,
    /// so rejecting longer ones here would break `parse(format(x)) == x`.
    mutating func caa() throws(RDataTextError) {
        try u8("flags")
        let t = try take("tag", "a property tag like issue")
        guard !t.quoted, !t.bytes.isEmpty, t.bytes.count <= 255, t.bytes.allSatisfy(isAlnum) else {
            throw bad("tag", "1-255 ASCII letters and digits", at: i - 1)
        }
        out.append(UInt8(t.bytes.count))
        out.append(contentsOf: t.bytes)
        let v = try take("value", "a quoted value")
        guard let d = TextBytes.unescape(v.bytes) else { throw bad("value", "a string with valid escapes", at: i - 1) }
        out.append(contentsOf: d)
    }

    /// RFC 9460 2.1: SvcPriority TargetName SvcParams...; params sorted by key on the wire.
    mutating func svcb() throws(RDataTextError) {
        try u16("priority")
        try name("target name")
        var params: [(key: UInt16, value: [UInt8], field: Int)] = []
        while i < fields.count {
            let idx = i
            let f = fields[i]
            i += 1
            let raw = f.bytes
            let eq = raw.firstIndex(of: UInt8(ascii: "="))
            let keyBytes = eq.map { raw[..<$0] } ?? raw[...]
            guard let key = SvcParam.key(keyBytes) else {
                throw bad("SvcParam key", "a key name (mandatory, alpn, no-default-alpn, port, ipv4hint, ech, ipv6hint) or keyNNNNN", at: idx)
            }
            var valueRaw = eq.map { Array(raw[($0 + 1)...]) }
            if var v = valueRaw, v.count >= 2, v.first == UInt8(ascii: "\""), v.last == UInt8(ascii: "\"") {
                v.removeFirst(); v.removeLast()
                valueRaw = v
            }
            var value: [UInt8]? = nil
            if let v = valueRaw {
                guard let d = TextBytes.unescape(v) else { throw bad("SvcParam value", "a value with valid escapes", at: idx) }
                value = d
            }
            let wire = try svcValue(key: key, value: value, at: idx)
            guard wire.count <= 65535 else { throw bad("SvcParam value", "at most 65535 octets", at: idx) }
            if params.contains(where: { $0.key == key }) {
                throw RDataTextError(field: idx, message: "SvcParam \(SvcParam.name(key)) given twice")
            }
            params.append((key, wire, idx))
        }
        params.sort { $0.key < $1.key }
        for p in params where p.key == SvcParam.mandatory {
            var k = 0
            while k + 1 < p.value.count {
                let m = UInt16(p.value[k]) << 8 | UInt16(p.value[k + 1])
                if !params.contains(where: { $0.key == m }) {
                    throw RDataTextError(field: p.field, message: "mandatory lists \(SvcParam.name(m)), which is not present (RFC 9460 8)")
                }
                k += 2
            }
        }
        if let nd = params.first(where: { $0.key == SvcParam.noDefaultALPN }), !params.contains(where: { $0.key == SvcParam.alpn }) {
            throw RDataTextError(field: nd.field, message: "no-default-alpn requires alpn (RFC 9460 7.1.1)")
        }
        for p in params {
            out.append(UInt8(p.key >> 8)); out.append(UInt8(p.key & 255))
            out.append(UInt8(p.value.count >> 8)); out.append(UInt8(p.value.count & 255))
            out.append(contentsOf: p.value)
        }
    }

    /// Splits an RFC 9460 A.1 value-list on commas; `\,` and `\\` are literal (already
    /// one escape level down after the character-string decoding).
    static func valueList(_ v: [UInt8]) -> [[UInt8]] {
        var items: [[UInt8]] = [[]]
        var k = 0
        while k < v.count {
            let c = v[k]
            if c == UInt8(ascii: "\\"), k + 1 < v.count {
                items[items.count - 1].append(v[k + 1]); k += 2; continue
            }
            if c == UInt8(ascii: ",") { items.append([]) } else { items[items.count - 1].append(c) }
            k += 1
        }
        return items
    }

    func svcValue(key: UInt16, value: [UInt8]?, at idx: Int) throws(RDataTextError) -> [UInt8] {
        let name = SvcParam.name(key)
        if key == SvcParam.noDefaultALPN {
            guard value == nil || value == [] else { throw bad(name, "no value", at: idx) }
            return []
        }
        if key > SvcParam.ipv6hint { return value ?? [] }
        guard let value, !value.isEmpty else {
            throw RDataTextError(field: idx, message: "SvcParam \(name) needs a value")
        }
        var w: [UInt8] = []
        switch key {
        case SvcParam.mandatory:
            var keys: [UInt16] = []
            for item in FieldParser.valueList(value) {
                guard let k = SvcParam.key(item), k != SvcParam.mandatory, !keys.contains(k) else {
                    throw bad(name, "a comma-separated list of distinct keys other than mandatory", at: idx)
                }
                keys.append(k)
            }
            for k in keys.sorted() { w.append(UInt8(k >> 8)); w.append(UInt8(k & 255)) }
        case SvcParam.alpn:
            for item in FieldParser.valueList(value) {
                guard !item.isEmpty, item.count <= 255 else {
                    throw bad(name, "a comma-separated list of protocol ids of 1-255 octets", at: idx)
                }
                w.append(UInt8(item.count)); w.append(contentsOf: item)
            }
        case SvcParam.port:
            guard let p = TextBytes.number(value, max: 65535) else { throw bad(name, "a port number 0-65535", at: idx) }
            w = [UInt8(p >> 8), UInt8(p & 255)]
        case SvcParam.ipv4hint, SvcParam.ipv6hint:
            let v6 = key == SvcParam.ipv6hint
            for item in FieldParser.valueList(value) {
                guard let a = IPAddress(String(decoding: item, as: UTF8.self)), a.isV6 == v6 else {
                    throw bad(name, v6 ? "a comma-separated list of IPv6 addresses" : "a comma-separated list of IPv4 addresses", at: idx)
                }
                w.append(contentsOf: a.bytes)
            }
        case SvcParam.ech:
            guard let d = TextBytes.unbase64(value), !d.isEmpty else { throw bad(name, "base64 ECHConfigList", at: idx) }
            w = d
        default:
            w = value
        }
        return w
    }
}
