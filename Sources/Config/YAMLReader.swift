import Yams
import Diagnostics

/// Typed access to a Yams node tree that records an error (with the node's line:column)
/// for every mismatch and keeps going, so one load reports every problem.
final class YAMLReader {
    let file: String
    private(set) var errors: [ConfigError] = []

    init(file: String) { self.file = file }

    func loc(_ node: Node) -> SourceLocation {
        let m = node.mark
        return SourceLocation(file: file, line: m?.line ?? 1, column: m?.column ?? 1)
    }

    func error(_ node: Node, _ message: String) { errors.append(ConfigError(loc(node), message)) }
    func error(_ location: SourceLocation, _ message: String) { errors.append(ConfigError(location, message)) }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "\"\(s.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// Mapping entries with string keys, or nil (and an error) when `node` is not a mapping.
    func mapping(_ node: Node, _ what: String) -> [(key: String, keyNode: Node, value: Node)]? {
        guard case .mapping(let m) = node else {
            if case .scalar(let s) = node, s.string.isEmpty, s.style == .plain { return [] }
            error(node, "\(what): expected a mapping, found \(describe(node))")
            return nil
        }
        var out: [(String, Node, Node)] = []
        for (k, v) in m {
            guard let ks = k.scalar?.string else { error(k, "\(what): keys must be plain text"); continue }
            out.append((ks, k, v))
        }
        return out
    }

    /// Reports keys not in `allowed`, suggesting the closest allowed key.
    func checkKeys(_ entries: [(key: String, keyNode: Node, value: Node)], allowed: [String], _ what: String) {
        for e in entries where !allowed.contains(e.key) {
            error(e.keyNode, "unknown key \"\(e.key)\" in \(what)\(suggestion(e.key, allowed))")
        }
    }

    func sequence(_ node: Node, _ what: String) -> [Node]? {
        guard case .sequence(let s) = node else {
            error(node, "\(what): expected a list, found \(describe(node))")
            return nil
        }
        return Array(s)
    }

    func string(_ node: Node, _ what: String) -> String? {
        guard case .scalar(let s) = node, !s.string.isEmpty else {
            error(node, "\(what): expected text, found \(describe(node))")
            return nil
        }
        return s.string
    }

    /// A scalar or a list of scalars.
    func strings(_ node: Node, _ what: String) -> [(String, Node)]? {
        if case .sequence(let s) = node {
            var out: [(String, Node)] = []
            for n in s { if let v = string(n, what) { out.append((v, n)) } }
            return out
        }
        guard let v = string(node, what) else { return nil }
        return [(v, node)]
    }

    func int(_ node: Node, _ what: String, _ range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let s) = node, let v = Int(s.string) else {
            error(node, "\(what): expected a whole number, found \(describe(node))")
            return nil
        }
        guard range.contains(v) else {
            error(node, "\(what) \(v) out of range \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return v
    }

    func double(_ node: Node, _ what: String, _ range: ClosedRange<Double>) -> Double? {
        guard case .scalar(let s) = node, let v = Double(s.string), v.isFinite else {
            error(node, "\(what): expected a number, found \(describe(node))")
            return nil
        }
        guard range.contains(v) else {
            error(node, "\(what) \(s.string) out of range \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return v
    }

    func bool(_ node: Node, _ what: String) -> Bool? {
        guard case .scalar(let s) = node else { error(node, "\(what): expected true or false, found \(describe(node))"); return nil }
        switch s.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: error(node, "\(what): expected true or false, found \(describe(node))"); return nil
        }
    }

    /// `500ms`, `30s`, `5m`, `2h`, `1d`, or a bare number of seconds.
    func duration(_ node: Node, _ what: String) -> Double? {
        guard case .scalar(let s) = node, let v = DurationText.parse(s.string) else {
            error(node, "\(what): bad duration \(describe(node)) (use e.g. 500ms, 30s, 5m, 1h)")
            return nil
        }
        return v
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// ` (did you mean "x"?)` when some candidate is within a small edit distance.
func suggestion(_ word: String, _ candidates: [String]) -> String {
    var best: (String, Int)? = nil
    for c in candidates {
        let d = editDistance(word.lowercased(), c.lowercased())
        if d <= max(1, min(3, c.count / 3)), best == nil || d < best!.1 { best = (c, d) }
    }
    if let b = best { return " (did you mean \"\(b.0)\"?)" }
    return ""
}

func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count)
    var cur = Array(repeating: 0, count: y.count + 1)
    for i in 1...x.count {
        cur[0] = i
        for j in 1...y.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[y.count]
}
