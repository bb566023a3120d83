import DNSWire

/// One token of a master file with the position of its first byte.
struct ZoneToken {
    var field: RDataField
    var line: Int
    var column: Int
}

/// One logical entry: a record or a directive, which may span lines inside parentheses.
struct ZoneEntry {
    var tokens: [ZoneToken]
    /// The entry began with whitespace: its owner is the previous owner (RFC 1035 5.1).
    var blankOwner: Bool
    var line: Int
    /// A lexical error was reported for this entry; the parser skips it.
    var failed: Bool
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

    private func loc(_ at: Int) -> SourceLocation {
        SourceLocation(file: file, line: line, column: at - lineStart + 1)
    }

    @inline(__always) private static func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 13 }

    /// The next non-empty entry, or nil at the end of the input. Lexical errors are appended
    /// to `errors` and mark the entry as failed.
    mutating func next(errors: inout [ZoneError]) -> ZoneEntry? {
        while i < b.count {
            var entry = ZoneEntry(tokens: [], blankOwner: ZoneLexer.isSpace(b[i]), line: line, failed: false)
            var depth = 0
            var openLoc = loc(i)
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
                    if depth > 0 {
                        errors.append(ZoneError(loc(i), "nested \"(\": a parenthesis is already open"))
                        entry.failed = true
                    } else {
                        openLoc = loc(i)
                    }
                    depth += 1
                    i += 1
                case UInt8(ascii: ")"):
                    if depth == 0 {
                        errors.append(ZoneError(loc(i), "unbalanced \")\": no parenthesis is open"))
                        entry.failed = true
                    } else {
                        depth -= 1
                    }
                    i += 1
                case UInt8(ascii: "\""):
                    let start = loc(i)
                    i += 1
                    var tok: [UInt8] = []
                    var closed = false
                    while i < b.count {
                        let d = b[i]
                        if d == 10 { break }
                        if d == UInt8(ascii: "\\") {
                            guard i + 1 < b.count, b[i + 1] != 10 else { break }
                            tok.append(d); tok.append(b[i + 1]); i += 2; continue
                        }
                        i += 1
                        if d == UInt8(ascii: "\"") { closed = true; break }
                        tok.append(d)
                    }
                    if !closed {
                        errors.append(ZoneError(start, "unterminated quoted string: expected a closing \" on the same line"))
                        entry.failed = true
                    }
                    entry.tokens.append(ZoneToken(field: RDataField(tok, quoted: true), line: start.line, column: start.column))
                default:
                    let start = loc(i)
                    var tok: [UInt8] = []
                    var inQuote = false
                    var ok = true
                    while i < b.count {
                        let d = b[i]
                        if d == 10 { if inQuote { ok = false }; break }
                        if d == UInt8(ascii: "\\") {
                            guard i + 1 < b.count, b[i + 1] != 10 else {
                                errors.append(ZoneError(loc(i), "backslash at the end of a line: expected an escaped character"))
                                entry.failed = true
                                i += 1
                                break
                            }
                            tok.append(d); tok.append(b[i + 1]); i += 2; continue
                        }
                        if d == UInt8(ascii: "\"") {
                            // RFC 9460 key="value": the quotes stay in the token.
                            inQuote.toggle(); tok.append(d); i += 1; continue
                        }
                        if !inQuote && (ZoneLexer.isSpace(d) || d == UInt8(ascii: ";") || d == UInt8(ascii: "(") || d == UInt8(ascii: ")")) {
                            break
                        }
                        tok.append(d); i += 1
                    }
                    if inQuote { ok = false }
                    if !ok {
                        errors.append(ZoneError(start, "unterminated quoted string: expected a closing \" on the same line"))
                        entry.failed = true
                    }
                    entry.tokens.append(ZoneToken(field: RDataField(tok), line: start.line, column: start.column))
                }
            }
            if depth > 0 {
                errors.append(ZoneError(openLoc, "unclosed \"(\": expected \")\" before the end of the file"))
                entry.failed = true
            }
            if !entry.tokens.isEmpty { return entry }
        }
        return nil
    }
}
