import Config
import Testing

/// `YAMLShape`: the checks on libyaml's events before Yams composes the config.
@Suite struct YAMLShapeTests {
    static let cases: [(yaml: String, expected: String)] = [
        ("a: &a [x]\n? *a\n: v\n", "t.yaml:2:3: mapping keys must be plain text, found an alias"),
        ("? [x, y]\n: v\n", "t.yaml:1:3: mapping keys must be plain text, found a list"),
        ("{ {a: b}: v }\n", "t.yaml:1:3: mapping keys must be plain text, found a mapping"),
        // Ten anchors, each ten aliases of the one before: 10^10 nodes, never expanded.
        ((0..<10).map { i in i == 0 ? "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"
            : "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]" }.joined(separator: "\n") + "\n",
         "more than \(YAMLLimits.expandedNodes) YAML nodes after expanding aliases"),
        (String(repeating: "[", count: 500), "t.yaml:1:\(YAMLLimits.depth + 1): lists and mappings nested deeper than \(YAMLLimits.depth) levels"),
    ]

    @Test(arguments: cases)
    func refused(_ yaml: String, _ expected: String) {
        let e = errors(yaml)
        #expect(e.count == 1 && e[0].contains(expected), "\(e.map { $0.prefix(200) })")
    }

    /// Aliases that expand to little stay allowed, as values.
    @Test func smallAliasesStillLoad() {
        let yaml = endpointsYAML + "zones:\n  example.com:\n    names:\n      www: &w\n        policy: a\n      ftp: *w\n"
        #expect(errors(yaml) == [])
    }
}
