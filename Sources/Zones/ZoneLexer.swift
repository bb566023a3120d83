import Diagnostics
import DNSWire

/// One token of a master file: a range of the file's bytes (escapes kept as written; the
/// quotes of a quoted string left out) with the position of its first byte. Tokens point
/// into the buffer instead of copying it, so lexing allocates nothing per token.
struct ZoneToken {
    var start: Int
    var end: Int
    var quoted: Bool
    var line: Int
    var column: Int
}

/// One logical entry: a record or a directive, which may span lines inside parentheses.
struct ZoneEntry {
    var tokens: [ZoneToken] = []
    /// The entry began with whitespace: its owner is the previous owner (RFC 1035 5.1).
    var blankOwner = false
    var line = 1
    /// A lexical error was reported for this entry; the parser skips it.
    var failed = false
}

/// Splits master-file bytes into entries (RFC 1035 5.1): `;` comments, `( )` joining
/// lines, quoted strings with escapes. Works on UTF-8 bytes with one pass and no
/// backtracking, so its cost is linear in the file size. Columns count bytes from 1.
struct ZoneLexer {
    let b: [UInt8]
    let file: String
    var i = 0
    var line = 1
    var lineStart = 0

    init(bytes: [UInt8], file: String) {
        self.b = bytes
        self.file = file
        // A UTF-8 byte order mark is not part of the first owner name.
        if b.count >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF { i = 3; lineStart = 3 }
    }

    @inline(__always) private static func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 13 }

    /// Whether `c` is a byte the token loop must look at (a line end, a backslash, a quote,
    /// a space, `;`, `(` or `)`): one bit test instead of a comparison for each.
    @inline(__always) static func mayEndToken(_ c: UInt8) -> Bool {
        let low: UInt64 = 1 << 9 | 1 << 10 | 1 << 13 | 1 << 32 | 1 << 34 | 1 << 40 | 1 << 41 | 1 << 59
        let high: UInt64 = 1 << (92 - 64)
        return c < 64 ? (low >> UInt64(c)) & 1 != 0 : c < 128 && (high >> UInt64(c - 64)) & 1 != 0
    }

    /// Reads the next non-empty entry into `entry` (its token array is reused), or returns
    /// false at the end of the input. Lexical errors are appended to `errors` and mark the
    /// entry as failed.
    mutating func next(into entry: inout ZoneEntry, errors: inout [ZoneError]) -> Bool {
        // This loop runs once per byte of a zone file, so it reads the bytes through a
        // pointer (no bounds checks) and keeps the position in locals.
        var i = self.i, line = self.line, lineStart = self.lineStart
        defer { self.i = i; self.line = line; self.lineStart = lineStart }
        return b.withUnsafeBufferPointer {
            ZoneLexer.scan($0, file: file, i: &i, line: &line, lineStart: &lineStart, entry: &entry, errors: &errors)
        }
    }

    private static func scan(_ b: UnsafeBufferPointer<UInt8>, file: String, i: inout Int, line: inout Int, lineStart: inout Int,
                             entry: inout ZoneEntry, errors: inout [ZoneError]) -> Bool {
        @inline(__always) func loc(_ at: Int, _ line: Int, _ lineStart: Int) -> SourceLocation {
            SourceLocation(file: file, line: line, column: at - lineStart + 1)
        }
        // The error cap is enforced here too: one entry of 8 MB of "(" or ")" would
        // otherwise add millions of errors before the parser could count them.
        @inline(__always) func report(_ e: ZoneError) -> Bool {
            errors.append(e)
            entry.failed = true
            guard errors.count >= MasterFileParser.maxErrors else { return false }
            i = b.count
            return true
        }
        while i < b.count {
            entry.tokens.removeAll(keepingCapacity: true)
            entry.blankOwner = ZoneLexer.isSpace(b[i])
            entry.line = line
            entry.failed = false
            var depth = 0
            var openLine = line, openColumn = i - lineStart + 1
            entryLoop: while i < b.count {
                let c = b[i]
                switch c {
                case 32, 9, 13:
                    i += 1
                case UInt8(ascii: ";"):
                    while i < b.count && b[i] != 10 { i += 1 }
                case 10:
                    i += 1
                    line += 1
                    lineStart = i
                    if depth == 0 { break entryLoop }
                case UInt8(ascii: "("):
                    // RFC 1035 5.1 groups lines with one pair of parentheses; they do not
                    // nest, so a second "(" is an error and is not counted.
                    if depth > 0 {
                        if report(ZoneError(loc(i, line, lineStart), "nested \"(\": a parenthesis is already open (they do not nest)")) { return true }
                    } else {
                        openLine = line
                        openColumn = i - lineStart + 1
                        depth = 1
                    }
                    i += 1
                case UInt8(ascii: ")"):
                    if depth == 0 {
                        if report(ZoneError(loc(i, line, lineStart), "unbalanced \")\": no parenthesis is open")) { return true }
                    } else {
                        depth = 0
                    }
                    i += 1
                case UInt8(ascii: "\""):
                    let column = i - lineStart + 1
                    i += 1
                    let start = i
                    var end = b.count
                    var closed = false
                    while i < b.count {
                        let d = b[i]
                        if d == 10 { end = i; break }
                        if d == UInt8(ascii: "\\") {
                            guard i + 1 < b.count, b[i + 1] != 10 else { end = i; break }
                            i += 2; continue
                        }
                        i += 1
                        if d == UInt8(ascii: "\"") { closed = true; end = i - 1; break }
                    }
                    if !closed, report(ZoneError(SourceLocation(file: file, line: line, column: column),
                                                 "unterminated quoted string: expected a closing \" on the same line")) { return true }
                    entry.tokens.append(ZoneToken(start: start, end: min(end, i), quoted: true, line: line, column: column))
                default:
                    let start = i
                    var end = -1
                    var inQuote = false
                    var ok = true
                    while i < b.count {
                        let d = b[i]
                        // Most bytes of a token are none of the ones handled below.
                        if !ZoneLexer.mayEndToken(d) { i += 1; continue }
                        if d == 10 { if inQuote { ok = false }; break }
                        if d == UInt8(ascii: "\\") {
                            guard i + 1 < b.count, b[i + 1] != 10 else {
                                if report(ZoneError(loc(i, line, lineStart), "backslash at the end of a line: expected an escaped character")) { return true }
                                end = i
                                i += 1
                                break
                            }
                            i += 2; continue
                        }
                        if d == UInt8(ascii: "\"") {
                            // RFC 9460 key="value": the quotes stay in the token.
                            inQuote.toggle(); i += 1; continue
                        }
                        if !inQuote && (ZoneLexer.isSpace(d) || d == UInt8(ascii: ";") || d == UInt8(ascii: "(") || d == UInt8(ascii: ")")) {
                            break
                        }
                        i += 1
                    }
                    if end < 0 { end = i }
                    if inQuote { ok = false }
                    if !ok, report(ZoneError(loc(start, line, lineStart), "unterminated quoted string: expected a closing \" on the same line")) { return true }
                    entry.tokens.append(ZoneToken(start: start, end: end, quoted: false, line: line, column: start - lineStart + 1))
                }
            }
            if depth > 0, report(ZoneError(SourceLocation(file: file, line: openLine, column: openColumn),
                                           "unclosed \"(\": expected \")\" before the end of the file")) { return true }
            if !entry.tokens.isEmpty { return true }
        }
        return false
    }
}
