import Config
import Foundation
import Glibc
import Testing
import TestSupport
import Yams

// Every ```yaml block of README.md and docs/*.md is loaded by `meridian check` and by a real
// `meridian serve` (which must answer a query and stop cleanly on SIGTERM), so a broken or
// stale example fails the build. How a block becomes a configuration:
//
// - A block introduced by "This is `PATH`" is that file: it must equal the file's content,
//   and it is served from a copy of the file's folder.
// - The block under "The setting of the examples below" in docs/configuration.md is the base:
//   a complete configuration, served from Tests/EndToEndTests/Fixtures/docs/.
// - A block whose top-level keys are configuration sections is laid over the base: sections
//   merge key by key (a key of the block replaces the base's), and so do a zone and its names.
// - A block of `policy:` lines holds alternatives: each becomes the policy of the GSLB name
//   `policy-example.example.com` in the base, and is served on its own.
// - Anything else fails: a block that is not a configuration must not be fenced as yaml.
//
// What the documents name but this machine cannot have is replaced by `substitutions`, each
// entry with its reason; an entry no document uses any more fails the test. Health checks
// keep their shape but probe a closed port on loopback (`redirectProbes`): the examples use
// documentation addresses, and a test sends traffic only to loopback. Closed ports refuse at
// once, so each server settles its first round of checks immediately.

/// One configuration taken from the documents.
struct DocExample: Sendable, CustomStringConvertible {
    /// `docs/configuration.md:120` (the line after the opening fence), plus the alternative.
    var origin: String
    /// The YAML as served, after merging and substitution; nil when `problem` says why not.
    var yaml: String?
    /// The folder copied beside the configuration (zone files, maps, state files).
    var folder: String
    /// A GSLB name to query besides the zone's SOA.
    var gslbName: String?
    var problem: String?
    var description: String { origin }
}

enum DocExamples {
    static let repo = TestPaths.repositoryRoot
    static let fixture = Fixtures.root.appendingPathComponent("docs").path
    static let baseHeading = "## The setting of the examples below"
    static let policyName = "policy-example"
    /// The loader's own list, so a new section is known here as soon as the loader takes it.
    static let sections = Set(ConfigLoader.sections)

    /// A ```yaml block: where it is, its text, and the lines before it since the last block.
    struct Block {
        var file: String
        var line: Int
        var text: String
        var before: [String]
    }

    static var documents: [String] {
        let docs = (try? FileManager.default.contentsOfDirectory(atPath: repo.appendingPathComponent("docs").path)) ?? []
        return ["README.md"] + docs.filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
    }

    static func blocks() -> [Block] {
        var out: [Block] = []
        for doc in documents {
            guard let text = try? String(contentsOf: repo.appendingPathComponent(doc), encoding: .utf8) else { continue }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var i = 0, since = 0
            // Bounded: each round moves i forward.
            while i < lines.count {
                let fence = lines[i].trimmingCharacters(in: .whitespaces)
                guard fence.hasPrefix("```") else { i += 1; continue }
                var j = i + 1
                while j < lines.count && !lines[j].trimmingCharacters(in: .whitespaces).hasPrefix("```") { j += 1 }
                if fence == "```yaml" || fence == "```yml" {
                    out.append(Block(file: doc, line: i + 2, text: lines[(i + 1)..<j].map { $0 + "\n" }.joined(),
                                     before: Array(lines[since..<i])))
                }
                i = j + 1
                since = i
            }
        }
        return out
    }

    /// Test values that replace what the documents name but cannot exist here.
    static func substitutions(controlPort: UInt16) -> [(doc: String, test: String, why: String)] {
        let geo = TestPaths.sharedGeoIP
        let user = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "root"
        let group = getgrgid(getgid()).map { String(cString: $0.pointee.gr_name) } ?? "root"
        return [
            ("../../shared/geoip/", geo + "/",
             "zones/meridian.yaml names the test database relative to zones/; the test serves a copy from elsewhere"),
            ("database: GeoIP2-City.mmdb", "database: \(geo)/GeoIP2-City-Test.mmdb",
             "MaxMind's licensed database is not here; its test database has the same format"),
            ("asn_database: GeoLite2-ASN.mmdb", "asn_database: \(geo)/GeoLite2-ASN-Test.mmdb", "the same, for the ASN database"),
            ("127.0.0.1:8053", "127.0.0.1:\(controlPort)", "the documented control port may be in use on this machine"),
            ("user: meridian", "user: \(user)", "there is no meridian account here; switching to the test's own account is a no-op"),
            ("group: meridian", "group: \(group)", "the same, for the group"),
            ("\"192.0.2.54:53\"", "\"127.0.0.1:9\"", "NOTIFY targets (docs/transfers.md) become a closed loopback port: tests send traffic only to loopback"),
            ("\"198.51.100.7:5353\"", "\"127.0.0.1:9\"", "the same"),
            ("\"203.0.113.7:53\"", "\"127.0.0.1:9\"", "the same"),
            ("source: 10.0.1.53", "source: 127.0.0.1", "a check's source must be an address of this host; the documented one is not"),
            ("[https://10.0.1.5:2379, https://10.0.2.5:2379, https://10.0.3.5:2379]", "[https://127.0.0.1:9]",
             "the TLS fleet examples (docs/fleet.md, docs/configuration.md) reach etcd on a closed loopback port: tests send traffic only to loopback"),
        ]
    }

    static func substitute(_ text: String, _ table: [(doc: String, test: String, why: String)], used: inout Set<String>) -> String {
        var t = text
        for s in table where t.contains(s.doc) {
            used.insert(s.doc)
            t = t.replacingOccurrences(of: s.doc, with: s.test)
        }
        return t
    }

    // MARK: YAML trees

    static func pairs(_ n: Node) -> [(Node, Node)]? {
        guard case .mapping(let m) = n else { return nil }
        return m.map { ($0.key, $0.value) }
    }

    /// `over` laid on `base`: mappings merge key by key at the top level, inside a section,
    /// inside a zone and inside a zone's names; deeper, a key of `over` replaces the base's.
    static func merge(_ base: Node, _ over: Node, path: [String] = []) -> Node {
        let mergeable = path.count <= 1 || (path[0] == "zones" && (path.count == 2 || (path.count == 3 && path[2] == "names")))
        guard mergeable, var b = pairs(base), let o = pairs(over) else { return over }
        for (k, v) in o {
            let key = k.string ?? ""
            if let i = b.firstIndex(where: { $0.0.string == key }) {
                b[i].1 = merge(b[i].1, v, path: path + [key])
            } else {
                b.append((k, v))
            }
        }
        return .mapping(Node.Mapping(b))
    }

    /// Probes stay on this machine and fail at once, while every check keeps its shape (a
    /// template without `host` stays a template): a tcp, http(s) or dns check probes
    /// `closedPort`, on 127.0.0.1 when it names a host; endpoint addresses become loopback
    /// addresses (127.0.0.N, ::1) and CNAME targets `localhost`, which templates then probe.
    static func redirectProbes(_ root: Node, closedPort: UInt16) -> Node {
        guard var top = pairs(root) else { return root }
        func edit(_ section: String, _ change: ([(Node, Node)]) -> [(Node, Node)]) {
            guard let i = top.firstIndex(where: { $0.0.string == section }), let entries = pairs(top[i].1) else { return }
            top[i].1 = .mapping(Node.Mapping(entries.map { name, value in
                guard let f = pairs(value) else { return (name, value) }
                return (name, .mapping(Node.Mapping(change(f))))
            }))
        }
        edit("checks") { f in
            guard let type = f.first(where: { $0.0.string == "type" })?.1.string, ["tcp", "http", "https", "dns"].contains(type) else { return f }
            return f.map { k, v in
                switch k.string {
                case "host": return (k, Node("127.0.0.1"))
                case "port": return (k, Node(String(closedPort)))
                default: return (k, v)
                }
            } + (f.contains { $0.0.string == "port" } ? [] : [(Node("port"), Node(String(closedPort)))])
        }
        var next = 0
        func loopback(_ v: Node, _ make: () -> String) -> Node {
            if case .sequence(let s) = v { return .sequence(Node.Sequence(s.map { _ in Node(make()) })) }
            return Node(make())
        }
        edit("endpoints") { f in
            f.map { k, v in
                switch k.string {
                case "v4": return (k, loopback(v) { next += 1; return "127.0.0.\(next % 250 + 1)" })
                case "v6": return (k, loopback(v) { "::1" })
                case "cname": return (k, Node("localhost"))
                default: return (k, v)
                }
            }
        }
        return .mapping(Node.Mapping(top))
    }

    // MARK: examples

    struct Found {
        var blocks: [Block]
        var examples: [DocExample]
        var unusedSubstitutions: [String]
    }

    /// Ports are fixed once per run: `controlPort` for control APIs, `closedPort` for probes.
    static func collect(controlPort: UInt16, closedPort: UInt16) -> Found {
        let all = blocks()
        let table = substitutions(controlPort: controlPort)
        var used = Set<String>()
        var examples: [DocExample] = []
        func fail(_ b: Block, _ why: String) {
            examples.append(DocExample(origin: "\(b.file):\(b.line)", folder: fixture, problem: why))
        }
        func serialize(_ n: Node, _ b: Block, _ origin: String) -> String? {
            do { return try Yams.serialize(node: redirectProbes(n, closedPort: closedPort)) } catch {
                fail(b, "\(origin): cannot write the merged configuration: \(error)"); return nil
            }
        }
        let bases = all.filter { $0.before.contains(baseHeading) }
        guard bases.count == 1, let baseBlock = bases.first else {
            return Found(blocks: all, examples: [DocExample(origin: "docs/configuration.md", folder: fixture,
                                                            problem: "expected one yaml block under \"\(baseHeading)\", found \(bases.count)")],
                         unusedSubstitutions: [])
        }
        let baseText = substitute(baseBlock.text, table, used: &used)
        guard let baseNode = try? Yams.compose(yaml: baseText) else {
            return Found(blocks: all, examples: [DocExample(origin: "\(baseBlock.file):\(baseBlock.line)", folder: fixture,
                                                            problem: "the base is not YAML")], unusedSubstitutions: [])
        }
        for b in all {
            let origin = "\(b.file):\(b.line)"
            let text = substitute(b.text, table, used: &used)
            let intro = b.before.joined(separator: "\n")
            if let r = intro.range(of: #"This is `([^`]+)`"#, options: .regularExpression) {
                // "This is `zones/meridian.yaml`": the block is that file.
                let path = String(intro[r].dropFirst("This is `".count).dropLast())
                let file = repo.appendingPathComponent(path)
                guard let content = try? String(contentsOf: file, encoding: .utf8) else { fail(b, "\(origin): says it is \(path), which cannot be read"); continue }
                if content != b.text { fail(b, "\(origin): says it is \(path) but differs from it"); continue }
                examples.append(DocExample(origin: "\(origin) (\(path))", yaml: text,
                                           folder: file.deletingLastPathComponent().path, gslbName: nil))
                continue
            }
            let topLines = text.split(separator: "\n").map(String.init).filter { l in
                !l.hasPrefix(" ") && !l.hasPrefix("#") && !l.trimmingCharacters(in: .whitespaces).isEmpty
            }
            if !topLines.isEmpty && topLines.allSatisfy({ $0.hasPrefix("policy:") }) {
                // Alternatives: each `policy:` line with the indented lines under it.
                var alternatives: [(line: Int, text: String)] = []
                for (k, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    if l.hasPrefix("policy:") { alternatives.append((b.line + k, "")) }
                    if !alternatives.isEmpty { alternatives[alternatives.count - 1].text += "        " + l + "\n" }
                }
                for alt in alternatives {
                    let altOrigin = "\(b.file):\(alt.line)"
                    let yaml = "zones:\n  example.com:\n    names:\n      \(policyName):\n" + alt.text
                    guard let n = try? Yams.compose(yaml: yaml) else { fail(b, "\(altOrigin): not YAML:\n\(alt.text)"); continue }
                    guard let out = serialize(merge(baseNode, n), b, altOrigin) else { continue }
                    examples.append(DocExample(origin: altOrigin, yaml: out, folder: fixture, gslbName: "\(policyName).example.com"))
                }
                continue
            }
            let node: Node?
            do { node = try Yams.compose(yaml: text) } catch { fail(b, "\(origin): not YAML: \(error)"); continue }
            guard let node, let top = pairs(node) else { fail(b, "\(origin): neither a configuration nor policy lines"); continue }
            let keys = top.compactMap { $0.0.string }
            guard keys.allSatisfy(sections.contains) else {
                fail(b, "\(origin): top-level keys \(keys) are not all configuration sections; a block that is not a configuration must not be fenced as yaml")
                continue
            }
            let isBase = b.line == baseBlock.line && b.file == baseBlock.file
            guard let out = serialize(isBase ? node : merge(baseNode, node), b, origin) else { continue }
            let names = ((top.first { $0.0.string == "zones" }?.1).flatMap(pairs)?.first?.1).flatMap(pairs)?
                .first { $0.0.string == "names" }?.1
            let gslb = names.flatMap(pairs)?.first?.0.string.map { $0 == "@" ? "example.com" : "\($0).example.com" }
            examples.append(DocExample(origin: isBase ? "\(origin) (base)" : origin, yaml: out, folder: fixture, gslbName: gslb))
        }
        let unused = table.map(\.doc).filter { !used.contains($0) }
        return Found(blocks: all, examples: examples, unusedSubstitutions: unused)
    }

    static let controlPort: UInt16 = (try? freePort()) ?? 18053
    static let closedPort: UInt16 = (try? freePort()) ?? 9
    static let found = collect(controlPort: controlPort, closedPort: closedPort)
}

@Suite("Documentation examples", .serialized)
struct DocExamplesTests {
    /// The extraction must find the documents' examples, not silently nothing.
    @Test func extractionFindsTheExamples() {
        let f = DocExamples.found
        print("doc examples: \(f.blocks.count) yaml blocks, \(f.examples.count) configurations")
        #expect(f.blocks.count >= 18, "yaml blocks found: \(f.blocks.map { "\($0.file):\($0.line)" })")
        #expect(f.examples.count >= 24)
        #expect(f.examples.contains { $0.origin.contains("(zones/meridian.yaml)") }, "the complete example is zones/meridian.yaml")
        #expect(f.examples.contains { $0.origin.contains("(base)") })
        #expect(f.unusedSubstitutions.isEmpty, "substitutions no document needs any more: \(f.unusedSubstitutions)")
    }

    @Test(arguments: DocExamples.found.examples)
    func exampleChecksAndServes(_ example: DocExample) async throws {
        if let problem = example.problem { Issue.record(Comment(rawValue: problem)); return }
        let yaml = try #require(example.yaml)
        let dir = try TemporaryZoneFolder(copying: example.folder)
        defer { dir.remove() }
        try dir.write("meridian.yaml", contents: yaml)
        let config = dir.path + "/meridian.yaml"
        let context = Comment(rawValue: "\(example.origin), served as:\n\(yaml)")
        let started = Date()
        defer { print("doc example \(example.origin): \(String(format: "%.2f", Date().timeIntervalSince(started))) s") }

        let check = try await MeridianProcess.run(["check", "--config", config])
        #expect(check.status == 0, "meridian check:\n\(check.combined)\n\(context)")
        guard check.status == 0 else { return }

        var server: MeridianProcess?
        var lastError = ""
        for _ in 0..<3 where server == nil {
            let port = try freePort()
            do {
                server = try await MeridianProcess.start(["serve", "--config", config, "--listen", "127.0.0.1:\(port)"],
                                                         port: port, probeName: "example.com.")
            } catch { lastError = "\(error)" }
        }
        let s = try #require(server, "meridian serve did not start: \(lastError)\n\(context)")
        let soa = try await Dig.query("example.com", "SOA", port: s.port)
        #expect(soa.status == "NOERROR" && soa.aa, "\(soa.raw)\n\(context)")
        if let name = example.gslbName {
            let r = try await Dig.query(name, "A", port: s.port)
            #expect(r.status == "NOERROR", "\(name): \(r.raw)\n\(context)")
        }
        #expect(s.isRunning, "meridian died; log:\n\(s.logText)")
        let status = await s.stop()
        #expect(status == 0, "meridian did not stop cleanly on SIGTERM (status \(status)); log:\n\(s.logText)")
    }
}
