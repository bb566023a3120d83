import Config
import DNSWire
import Foundation
import Routing
import Testing

/// zones/meridian.yaml, loaded as `meridian serve` would. It names ../../shared/geoip and
/// zones/example.com.zone; where the zone file is not there yet a stub stands in.
func loadExampleRouter() throws -> Router {
    let example = Paths.repo + "/zones/meridian.yaml"
    if FileManager.default.fileExists(atPath: Paths.repo + "/zones/example.com.zone"),
       FileManager.default.fileExists(atPath: Paths.repo + "/../shared/geoip") {
        return try Router(model: try ConfigLoader.load(path: example))
    }
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-ex-\(UUID().uuidString)")
    let zones = tmp.appendingPathComponent("x/zones")
    try FileManager.default.createDirectory(at: zones, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    try FileManager.default.createSymbolicLink(atPath: tmp.appendingPathComponent("shared").path,
                                               withDestinationPath: URL(fileURLWithPath: Paths.geoip).deletingLastPathComponent().path)
    try FileManager.default.copyItem(atPath: Paths.zoneFolder + "/example.com.zone", toPath: zones.appendingPathComponent("example.com.zone").path)
    let text = try String(contentsOfFile: example, encoding: .utf8)
    return try Router(model: try ConfigLoader.load(yaml: text, file: example, baseDirectory: zones.path))
}

/// The answers the README's dig examples show.
@Test(arguments: [
    ("www", RRType.a, "81.2.69.142/32", [String](), "192.0.2.10,192.0.2.11", 31),       // London: EU -> ams
    ("www", .aaaa, "81.2.69.142/32", [], "2001:db8::10,2001:db8::11", 31),
    ("www", .a, "216.160.83.56/32", [], "198.51.100.10,198.51.100.11", 29),              // Seattle: NA -> iad
    ("www", .aaaa, "216.160.83.56/32", [], "2001:db8:1::10", 29),                        // iad-2 has no IPv6
    ("www", .a, "2001:218::/32", [], "192.0.2.10,192.0.2.11", 23),                       // Tokyo: nearest is ams, so for its /23
    ("www", .a, "203.0.113.0/24", [], "198.51.100.10,198.51.100.11", 24),                // CIDR map: office -> iad
    ("api", .a, "81.2.69.142/32", [], "198.51.100.10,198.51.100.11", 0),                 // failover: primary
    ("api", .a, "81.2.69.142/32", ["iad-1", "iad-2"], "192.0.2.10", 0),                   // backup
    ("api", .a, "81.2.69.142/32", ["iad-1", "iad-2", "ams-1"], "192.0.2.250", 0),         // fallback
    ("api", .aaaa, "81.2.69.142/32", ["iad-1", "iad-2", "ams-1"], "2001:db8::250", 0),
] as [(String, RRType, String, [String], String, Int)])
func exampleAnswers(_ name: String, _ qtype: RRType, _ ecs: String, _ down: [String], _ want: String, _ scope: Int) throws {
    let r = try loadExampleRouter()
    let idx = try #require(r.model.nameIndex[try DNSName("\(name).example.com.")])
    var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
    for d in down { states[r.model.endpointIndex(named: d)!] = .down }
    let p = IPPrefix(ecs)!
    let client = ClientInfo(source: IPAddress("127.0.0.1")!,
                            subnet: ClientSubnet(family: p.address.isV4 ? 1 : 2, sourcePrefix: UInt8(p.length), scopePrefix: 0, address: p.address))
    var result = r.makeResult()
    var rng = RoutingRandom(seed: 1)
    r.resolve(nameIndex: idx, qtype: qtype, client: client, health: HealthSnapshot(states: states), random: &rng, into: &result)
    #expect(result.addresses.map(\.description).sorted().joined(separator: ",") == want)
    #expect(result.scopePrefix == scope)
    #expect(result.ttl == (name == "api" ? 20 : 30))
}
