/// Operator- or client-supplied text as it may appear in a log line: in double quotes, with
/// `\` and `"` escaped and every character that could forge a line or drive a terminal
/// written as an escape (`\n`, `\r`, `\t`, `\u{1B}`), so one event stays one line and the
/// log reads the same in a terminal as in a file.
///
///     logger.notice("override set: reason \(logQuoted(reason))")
///     logQuoted("a\nb\u{1B}[31m")   // "\"a\\nb\\u{1B}[31m\""
public func logQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if needsEscapingInLog(u) {
                out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// C0 controls, DEL and C1 controls; the Unicode line and paragraph separators (some log
/// viewers break lines there); and the bidirectional embedding, override and isolate
/// controls (they reorder what a reader sees).
public func needsEscapingInLog(_ u: Unicode.Scalar) -> Bool {
    switch u.value {
    case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
    default: return false
    }
}
