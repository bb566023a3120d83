import Config
import DNSWire
import Foundation
import TestSupport
import Routing
import Testing

enum Paths {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let repo = here.deletingLastPathComponent().deletingLastPathComponent().path
    /// Holds a stub example.com.zone that test configs name.
    static let zoneFolder = repo + "/Tests/ConfigTests/Fixtures"
    static let geoip = TestPaths.sharedGeoIP
    static let city = geoip + "/GeoIP2-City-Test.mmdb"
    static let asn = geoip + "/GeoLite2-ASN-Test.mmdb"
}

/// Datacenters and endpoints every policy table uses. iad-2 and sin-1 are IPv4-only.
let preamble = """
datacenters:
  ams: { lat: 52.37, lon: 4.90, country: NL, continent: EU }
  iad: { lat: 38.95, lon: -77.45, country: US, continent: NA }
  sin: { lat: 1.35, lon: 103.82, country: SG, continent: AS }
endpoints:
  ams-1: { v4: 192.0.2.1, v6: "2001:db8::1", dc: ams }
  ams-2: { v4: 192.0.2.2, v6: "2001:db8::2", dc: ams }
  iad-1: { v4: 198.51.100.1, v6: "2001:db8:1::1", dc: iad }
  iad-2: { v4: 198.51.100.2, dc: iad }
  sin-1: { v4: 192.0.2.100, dc: sin }
  cdn: { cname: edge.cdn.example.net }
pools:
  web: [ams-1, ams-2, iad-1]
  v4only: [iad-2, sin-1]

"""

/// A router for one GSLB name `t.example.com` with `policy` (flow-style YAML) and extra
/// name-level lines, plus an optional `geo:` section.
/// `preamble` may be replaced (e.g. to add `min_healthy` to a datacenter or pool).
func makeRouter(_ policy: String, nameExtra: String = "", geo: String = "", preamble: String = preamble) throws -> Router {
    var yaml = preamble + geo + "\nzones:\n  example.com:\n    names:\n      t:\n        policy: \(policy)\n"
    for l in nameExtra.split(separator: "\n") { yaml += "        \(l)\n" }
    let model = try ConfigLoader.load(yaml: yaml, file: "test.yaml", baseDirectory: Paths.zoneFolder)
    return try Router(model: model)
}

let cityGeo = "geo:\n  database: \(Paths.city)\n"

struct Answer: Equatable, CustomStringConvertible {
    var records: String
    var scope: Int
    var description: String { "\(records) /\(scope)" }
}

/// Resolves `t.example.com` and renders the answer as sorted text ("NODATA", "CNAME x", "a,b").
func answer(_ r: Router, _ qtype: RRType = .a, client: String = "203.0.113.9", ecs: String? = nil,
            down: [String] = [], degraded: [String: Double] = [:], seed: UInt64 = 1) -> Answer {
    var states = Array(repeating: HealthState.up, count: r.model.endpoints.count)
    for d in down { states[r.model.endpointIndex(named: d)!] = .down }
    for (d, f) in degraded { states[r.model.endpointIndex(named: d)!] = .degraded(factor: f) }
    let subnet = ecs.map { text -> ClientSubnet in
        let p = IPPrefix(text)!
        return ClientSubnet(family: p.address.isV4 ? 1 : 2, sourcePrefix: UInt8(p.length), scopePrefix: 0, address: p.address)
    }
    let client = ClientInfo(source: IPAddress(client)!, subnet: subnet)
    var result = r.makeResult()
    var rng = RoutingRandom(seed: seed)
    r.resolve(nameIndex: 0, qtype: qtype, client: client, health: HealthSnapshot(states: states), random: &rng, into: &result)
    if result.nodata { return Answer(records: "NODATA", scope: result.scopePrefix) }
    if let c = result.cname { return Answer(records: "CNAME \(c)", scope: result.scopePrefix) }
    return Answer(records: result.addresses.map(\.description).sorted().joined(separator: ","), scope: result.scopePrefix)
}
