// FuzzConfig: the YAML configuration loader (ConfigLoader.load(yaml:file:baseDirectory:)).
//
// Input: YAML text. Any thrown `ConfigErrors` is fine; the invariants are that loading never
// traps, every error names this file with a line and column inside the input, and a config
// that loads has consistent indices (every policy node, endpoint and check it refers to exists).
import Config
import Foundation

/// A folder with a zone file the input may name, so loads can get past the zones section.
private let base: String = {
    let dir = NSTemporaryDirectory() + "meridian-fuzzconfig"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let zone = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 h 1 2 3 4 5\n  IN NS ns1\nns1 IN A 192.0.2.1\n"
    try? zone.write(toFile: dir + "/example.com.zone", atomically: true, encoding: .utf8)
    return dir
}()

func runConfig(_ input: UnsafeRawBufferPointer) {
    let text = String(decoding: input, as: UTF8.self)
    // YAML breaks lines at \r, \n, \r\n, NEL and the Unicode separators (YAML 1.1 5.4), so
    // count them all (a lone \r is a line to YAML and to the editors that show it).
    let lines = text.reduce(1) { $0 + ($1.isNewline ? 1 : 0) }
    do {
        let m = try ConfigLoader.load(yaml: text, file: "fuzz.yaml", baseDirectory: base)
        for n in m.names where n.root < 0 || n.root >= m.nodes.count { fatalError("name \(n.owner) roots at node \(n.root) of \(m.nodes.count)") }
        for e in m.endpoints {
            if let d = e.datacenter, d < 0 || d >= m.datacenters.count { fatalError("endpoint \(e.name) datacenter \(d)") }
            if let c = e.check, c < 0 || c >= m.checks.count { fatalError("endpoint \(e.name) check \(c)") }
        }
        for p in m.pools { for e in p.endpoints where e < 0 || e >= m.endpoints.count { fatalError("pool \(p.name) endpoint \(e)") } }
    } catch {
        for e in error.errors {
            guard e.location.file.hasSuffix("fuzz.yaml") || e.location.file.hasPrefix(base) || e.location.file.hasPrefix("/") else {
                fatalError("error without its file: \(e)")
            }
            if e.location.file.hasSuffix("fuzz.yaml") && e.location.line > lines + 1 {
                fatalError("error past the end of the input (\(lines) lines): \(e)")
            }
        }
    }
}

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    runConfig(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
