// libyaml's event parser, the one Yams composes its node tree from: checking its events
// first means no second YAML grammar, and nothing is composed before the checks pass.
import CYaml
import Diagnostics

/// Bounds on the shape of the YAML configuration, checked before Yams composes it.
public enum YAMLLimits {
    /// Nodes (scalars, lists, mappings) after expanding every alias. Aliases let a 1 KB
    /// file stand for billions of nodes ("billion laughs"), which the loader would walk one
    /// by one. The largest legitimate config we know of (10,000 GSLB names with a policy
    /// each, about 15 nodes per name, plus datacenters and endpoints) is under 200,000
    /// nodes; 250,000 leaves room. A bomb just under it (a policy tree of aliases) costs
    /// `check` about 2.5 s and 140 MB in a debug build, where the unbounded loader took
    /// minutes and gigabytes.
    ///
    /// The bound grows with the file, so configurations past 10,000 names load: a node takes
    /// at least one byte of text (`{a,b,c}` is four nodes in seven bytes), so a file without
    /// aliases stays under twice its size in nodes, and aliases can at most double what the
    /// text itself could hold (a 16 MiB file, the largest `meridian.yaml` read, is under 34
    /// million). A 100,000-name config is about 5.6 MB and a million nodes.
    public static let expandedNodes = 250_000

    /// The bound for a file of `bytes` bytes: `expandedNodes`, or twice the size for a
    /// larger file.
    public static func expandedNodes(forBytes bytes: Int) -> Int { max(expandedNodes, 2 * bytes) }
    /// Nesting of lists and mappings. Yams composes recursively and libyaml alone stops
    /// only at 1,000 levels; the deepest real config (a nested policy tree) is under 20.
    public static let depth = 128
}

/// One pass over libyaml's events that refuses, with `file:line:column`:
/// - a mapping key that is not a scalar (an alias, a list or a mapping): Yams hashes keys to
///   find duplicates, which for an aliased key means walking its whole expansion (a 600-byte
///   file spun for over ten minutes);
/// - more than `YAMLLimits.expandedNodes(forBytes:)` nodes after alias expansion, counted without ever
///   expanding: each anchored node's expanded size is remembered and an alias adds it;
/// - nesting deeper than `YAMLLimits.depth`.
/// Syntax errors are left to the composer, which reports them with its own messages.
///
///     if let e = YAMLShape.check(text, file: "meridian.yaml") { throw ConfigErrors([e]) }
enum YAMLShape {
    private struct Frame {
        var isMapping: Bool
        var anchor: String?
        var size = 1
        /// Mapping only: the next node is a key.
        var expectKey = true
    }

    static func check(_ text: String, file: String) -> ConfigError? {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buf -> ConfigError? in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else { return nil }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            return walk(&parser, file: file, limit: YAMLLimits.expandedNodes(forBytes: buf.count))
        }
    }

    private static func walk(_ parser: inout yaml_parser_t, file: String, limit: Int) -> ConfigError? {
        var anchors: [String: Int] = [:]
        var stack: [Frame] = []
        var total = 0
        var event = yaml_event_t()
        while true {
            // A syntax error: the composer reports it.
            guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
            defer { yaml_event_delete(&event) }
            let at = SourceLocation(file: file, line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
            let type = event.type
            if type == YAML_STREAM_END_EVENT { return nil }
            let isNode = type == YAML_SCALAR_EVENT || type == YAML_ALIAS_EVENT
                || type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT
            if isNode, let top = stack.last, top.isMapping, top.expectKey, type != YAML_SCALAR_EVENT {
                let what = type == YAML_ALIAS_EVENT ? "an alias" : type == YAML_SEQUENCE_START_EVENT ? "a list" : "a mapping"
                return ConfigError(at, "mapping keys must be plain text, found \(what)")
            }
            /// The size of a finished node, added to its parent (or the document).
            var finished: (size: Int, anchor: String?)? = nil
            switch type {
            case YAML_SCALAR_EVENT:
                finished = (1, string(event.data.scalar.anchor))
            case YAML_ALIAS_EVENT:
                // An undefined alias is the composer's error to report.
                finished = (string(event.data.alias.anchor).flatMap { anchors[$0] } ?? 1, nil)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                guard stack.count < YAMLLimits.depth else {
                    return ConfigError(at, "lists and mappings nested deeper than \(YAMLLimits.depth) levels")
                }
                let anchor = type == YAML_SEQUENCE_START_EVENT ? string(event.data.sequence_start.anchor) : string(event.data.mapping_start.anchor)
                stack.append(Frame(isMapping: type == YAML_MAPPING_START_EVENT, anchor: anchor))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                if let f = stack.popLast() { finished = (f.size, f.anchor) }
            default:
                break
            }
            guard let (size, anchor) = finished else { continue }
            if let anchor { anchors[anchor] = size }
            // Sizes saturate just past the limit, so no sum can overflow.
            let grown: Int
            if stack.isEmpty {
                total = min(total + size, limit + 1)
                grown = total
            } else {
                stack[stack.count - 1].size = min(stack[stack.count - 1].size + size, limit + 1)
                if stack[stack.count - 1].isMapping { stack[stack.count - 1].expectKey.toggle() }
                grown = stack[stack.count - 1].size
            }
            if grown > limit {
                return ConfigError(at, "more than \(limit) YAML nodes after expanding aliases (the limit; an alias bomb?)")
            }
        }
    }

    private static func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        p.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
    }
}
