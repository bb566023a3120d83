import Config
import DNSWire
import Diagnostics
import Foundation
import TestSupport
import Testing
import Zones

/// Paths relative to this file, so tests run the same in a worktree and in CI's fresh clone.
enum Paths {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let fixtures = here.appendingPathComponent("Fixtures").path
    static let repo = here.deletingLastPathComponent().deletingLastPathComponent().path
    static let geoip = TestPaths.sharedGeoIP
}

/// Every broken fixture states its one expected error on its first line:
/// `# expect: LINE:COLUMN: message` (FIXTURE and FIXTURES stand for the file and its folder).
@Test(arguments: [
    "unknown-key", "wrong-type", "dangling-reference", "dangling-policy", "duplicate-name",
    "duplicate-gslb-name", "bad-cidr", "weight-out-of-range", "bad-duration", "missing-mmdb",
    "bad-address", "bad-geo-key", "syntax", "when-all-down",
])
func brokenFixtureReportsItsError(_ name: String) throws {
    let path = Paths.fixtures + "/\(name).yaml"
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let header = try #require(text.split(separator: "\n").first)
    let expected = header.dropFirst("# expect: ".count)
        .replacingOccurrences(of: "FIXTURES", with: Paths.fixtures)
        .replacingOccurrences(of: "FIXTURE", with: path)
    do {
        _ = try ConfigLoader.load(path: path)
        Issue.record("\(name) loaded without errors")
    } catch {
        #expect(error.errors.map(\.description) == ["\(path):\(expected)"])
    }
}

@Test func loaderCollectsEveryError() {
    let yaml = """
    server:
      workers: x
      max_udp_size: 70000
    endpoints:
      a: { v4: 192.0.2.1, weight: -1, dc: nowhere }
    """
    do {
        _ = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: Paths.fixtures)
        Issue.record("loaded")
    } catch {
        #expect(error.errors.map(\.description) == [
            "t.yaml:2:12: server.workers: expected a whole number, found \"x\"",
            "t.yaml:3:17: server.max_udp_size 70000 out of range 512...65535",
            "t.yaml:5:31: endpoint a: weight -1 out of range 0...1000",
            "t.yaml:5:39: endpoint a: unknown datacenter \"nowhere\"",
        ])
    }
}

/// The example config in zones/ must load. It names ../../shared/geoip (beside the repo)
/// and zones/example.com.zone, which the zone work provides; a stub stands in when absent.
@Test func exampleConfigLoads() throws {
    let model = try loadExample()
    #expect(model.names.map(\.owner.description).sorted() == ["api.example.com.", "www.example.com."])
    #expect(model.server.maxUDPSize == 1232)
    #expect(model.endpoints.count == 4)
    let api = model.names[model.nameIndex[try DNSName("API.example.com.")]!]
    #expect(api.ttl == 20 && api.rto == 30)
    let www = model.names[model.nameIndex[try DNSName("www.example.com.")]!]
    #expect(www.ttl == 30 && www.answersA && www.answersAAAA)
    // The example watches its documentation addresses through operator state files.
    let check = try #require(model.checkSpec(forEndpoint: 0))
    guard case .file(let path) = check.kind else { Issue.record("not a file check"); return }
    #expect(path.hasSuffix("zones/state/ams") && check.interval == 2 && check.fall == 2)
}

/// The master file keeps every type the policy does not answer: beside www (A and AAAA from
/// its policy) MX and TXT are fine; A, CNAME and a zone cut are errors, the records at
/// their own place and the cut at the GSLB name.
@Test func staticNameConflict() throws {
    let model = try loadExample()
    let apex = try DNSName("example.com."), www = try DNSName("www.example.com.")
    func at(_ line: Int) -> Diagnostics.SourceLocation { Diagnostics.SourceLocation(file: "example.com.zone", line: line, column: 1) }
    let beside: [(type: RRType, location: Diagnostics.SourceLocation)] = [(.mx, at(7)), (.txt, at(8))]
    #expect(model.validate(againstStaticOwners: [apex: [www: beside]]).isEmpty)
    let withA = model.validate(againstStaticOwners: [apex: [www: beside + [(.a, at(9)), (.cname, at(10))]]])
    #expect(withA.map(\.location) == [at(9), at(10)])
    #expect(withA.first?.message.hasPrefix("static A record at www.example.com. conflicts with the GSLB name at ") == true)
    let cut = model.validate(againstStaticOwners: [:], cuts: [apex: [www: (www, at(3))]])
    #expect(cut.map(\.location) == [model.names[model.nameIndex[www]!].location])
    #expect(cut.first?.message.contains("is at the zone cut (NS at example.com.zone:3:1)") == true)
}

func loadExample() throws -> ConfigModel {
    let example = Paths.repo + "/zones/meridian.yaml"
    if FileManager.default.fileExists(atPath: Paths.repo + "/zones/example.com.zone") {
        return try ConfigLoader.load(path: example)
    }
    // Rebuild the same relative layout in a temporary folder: tmp/x/zones/{meridian.yaml,example.com.zone}
    // and tmp/shared -> the real shared folder.
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-cfg-\(UUID().uuidString)")
    let zones = tmp.appendingPathComponent("x/zones")
    try FileManager.default.createDirectory(at: zones, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    try FileManager.default.createSymbolicLink(atPath: tmp.appendingPathComponent("shared").path,
                                               withDestinationPath: URL(fileURLWithPath: Paths.geoip).deletingLastPathComponent().path)
    try FileManager.default.copyItem(atPath: Paths.fixtures + "/example.com.zone", toPath: zones.appendingPathComponent("example.com.zone").path)
    let text = try String(contentsOfFile: example, encoding: .utf8)
    return try ConfigLoader.load(yaml: text, file: example, baseDirectory: zones.path)
}
