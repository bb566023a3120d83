import Config
import DNSWire
import Foundation
import Testing
import Zones

let endpointsYAML = """
datacenters:
  ams: { lat: 52.37, lon: 4.90 }
endpoints:
  a: { v4: 192.0.2.1, dc: ams }
  b: { v4: 192.0.2.2 }
  c: { cname: edge.example.net }

"""

func errors(_ yaml: String) -> [String] {
    do {
        _ = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: Paths.fixtures)
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

func policyErrors(_ policy: String) -> [String] {
    errors(endpointsYAML + "zones:\n  example.com:\n    names:\n      www:\n        policy: \(policy)\n")
}

/// More error kinds, inline: policy line is 11, and the policy text starts at column 17.
@Test(arguments: [
    ("{ failvoer: [a, b] }", "t.yaml:11:19: unknown key \"failvoer\" in name www policy (did you mean \"failover\"?)"),
    ("{ failover: [a], weighted: { a: 1 } }", "t.yaml:11:34: name www policy: one policy kind per node, found failover and weighted"),
    ("{ nearest: [a, b] }", "t.yaml:11:32: name www policy > nearest: every choice must sit in one datacenter (endpoints need dc:)"),
    ("{ weighted: { a: 0, b: 0 } }", "t.yaml:11:29: name www policy > weighted: every weight is 0"),
    ("{ weighted: { a: 1001 } }", "t.yaml:11:34: name www policy > weighted: weight 1001 out of range 0...1000"),
    ("{ subnet: { 10.0.0.0/33: a } }", "t.yaml:11:29: name www policy > subnet: bad CIDR \"10.0.0.0/33\""),
    ("{ multivalue: a, n: 0 }", "t.yaml:11:37: name www policy > multivalue: n 0 out of range 1...64"),
    ("{ hashed: [a, b], v4_prefix: 40 }", "t.yaml:11:46: name www policy > hashed: v4_prefix 40 out of range 0...32"),
    ("{ failover: [a], when_all_down: fallback }", "t.yaml:11:49: name www policy: when_all_down fallback needs a fallback: list"),
    ("{ failover: [a], fallback: [192.0.2.9] }", "t.yaml:11:34: name www policy: fallback is only used with when_all_down: fallback"),
    ("{ geo: { EU: a, EU: b } }", "t.yaml:11:33: duplicate key \"EU\""),
] as [(String, String)])
func policyError(_ policy: String, _ want: String) {
    #expect(policyErrors(policy) == [want])
}

@Test func policyShapesLoad() throws {
    for p in ["a", "{ pool: a }", "{ failover: [a, { weighted: { a: 1, b: 2 } }] }", "{ geo: { EU: a, country:NA: b, AS64500: a, US-CA: b, default: c } }",
              "{ subnet: { 10.0.0.0/8: a, \"2001:db8::/32\": b, default: a } }", "{ multivalue: a, n: 3 }", "{ hashed: [a, b], v6_prefix: 48 }",
              "{ nearest: [ams], bias: { ams: 100 }, n: 1 }", "{ weighted: [ { weight: 2, pool: a }, { weight: 1, failover: [b, a] } ] }"] {
        #expect(policyErrors(p) == [], "\(p)")
    }
}

@Test func geoKeysParse() throws {
    let m = try ConfigLoader.load(yaml: endpointsYAML + "zones:\n  example.com:\n    names:\n      www:\n        policy: { geo: { EU: a, country:NA: b, AS64500: a, US-CA: b, NA: a, DE: a, asn:7: a, default: c } }\n",
                                  file: "t.yaml", baseDirectory: Paths.fixtures)
    guard case .geo(let keys, _, let def) = m.nodes[m.names[0].root].kind else { Issue.record("not geo"); return }
    #expect(keys == [.continent("EU"), .country("NA"), .asn(64500), .subdivision(country: "US", code: "CA"), .continent("NA"), .country("DE"), .asn(7)])
    #expect(def != nil)
}

@Test func zonesDirAndCIDRFile() throws {
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-zd-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp.appendingPathComponent("zones.d"), withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let zone = try String(contentsOfFile: Paths.fixtures + "/example.com.zone", encoding: .utf8)
    try zone.write(toFile: tmp.path + "/zones.d/example.com.zone", atomically: true, encoding: .utf8)
    try zone.replacingOccurrences(of: "example.com.", with: "example.net.").write(toFile: tmp.path + "/zones.d/example.net.zone", atomically: true, encoding: .utf8)
    try "# offices\n10.1.0.0/16: lab\n  10.2.0.0/16: 52.5,13.4   # Berlin\n".write(toFile: tmp.path + "/map.txt", atomically: true, encoding: .utf8)
    let yaml = endpointsYAML + """
    zones_dir: zones.d
    geo:
      cidr_file: map.txt
    zones:
      example.com:
        names:
          www: { policy: { geo: { lab: a, default: b } } }
    """
    let m = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: tmp.path)
    #expect(m.zones.map(\.name.description) == ["example.com.", "example.net."])
    #expect(m.zones[0].file == tmp.path + "/zones.d/example.com.zone")
    #expect(m.geo.cidr.map(\.prefix.description) == ["10.1.0.0/16", "10.2.0.0/16"])
    #expect(m.geo.cidr[1].target == .coordinates(latitude: 52.5, longitude: 13.4))
    #expect(m.geo.cidr[1].location.description == tmp.path + "/map.txt:3:3")

    try "10.1.0.0/16: lab\n10.3.0.1/16: x\n".write(toFile: tmp.path + "/map.txt", atomically: true, encoding: .utf8)
    do {
        _ = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: tmp.path)
        Issue.record("loaded a bad CIDR file")
    } catch {
        #expect(error.errors.map(\.description) == [tmp.path + "/map.txt:2:1: bad CIDR \"10.3.0.1/16\" (bits set past the prefix length)"])
    }
}

@Test func defaultsApply() throws {
    let m = try ConfigLoader.load(yaml: endpointsYAML + "defaults: { ttl: 2m, types: [A] }\nzones:\n  example.com:\n    names:\n      www: { policy: a }\n      api: { policy: b, ttl: 5, types: [A, AAAA] }\n",
                                  file: "t.yaml", baseDirectory: Paths.fixtures)
    #expect(m.names[0].ttl == 120 && m.names[0].answersA && !m.names[0].answersAAAA)
    #expect(m.names[1].ttl == 5 && m.names[1].answersAAAA)
    #expect(m.server == ServerSettings())
    #expect(m.endpoints[0].weight == 100)
}

/// `ttl_when_failing`: explicit, from `defaults:` (never above a name's `ttl`), or the
/// smallest check interval under the name (at least 1 s); and `rto` as a duration or a
/// mapping with `enforce`.
@Test func ttlWhenFailingAndRTOForms() throws {
    let yaml = """
        checks:
          fast: { type: tcp, host: 127.0.0.1, port: 9, interval: 300ms }
          slow: { type: tcp, host: 127.0.0.1, port: 9, interval: 7s }
        endpoints:
          a: { v4: 192.0.2.1, check: slow }
          b: { v4: 192.0.2.2, check: fast }
          c: { v4: 192.0.2.3 }
        zones:
          example.com:
            names:
              both: { policy: { failover: [a, b] }, rto: 90s }
              slow: { policy: a, rto: { target: 20s, enforce: false } }
              plain: { policy: c, ttl: 60 }
              set: { policy: a, ttl_when_failing: 3s }
              tiny: { policy: a, ttl: 2 }

        """
    let m = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: Paths.fixtures)
    #expect(m.names.map(\.ttlWhenFailing) == [1, 7, 60, 3, 2])
    #expect(m.names[0].rto == 90 && m.names[0].rtoEnforced)
    #expect(m.names[1].rto == 20 && !m.names[1].rtoEnforced)
    let d = try ConfigLoader.load(yaml: "defaults: { ttl_when_failing: 5 }\n" + yaml, file: "t.yaml", baseDirectory: Paths.fixtures)
    #expect(d.names.map(\.ttlWhenFailing) == [5, 5, 5, 3, 2])
}

@Test(arguments: [
    ("ttl: 10, ttl_when_failing: 20", "t.yaml:10:52: name www: ttl_when_failing 20 is above its ttl 10"),
    ("ttl_when_failing: 1x", "t.yaml:10:43: name www: ttl_when_failing: bad duration \"1x\" (use e.g. 500ms, 30s, 5m, 1h)"),
    ("rto: { enforce: false }", "t.yaml:10:30: name www: rto: needs a target (e.g. { target: 30s, enforce: false })"),
    ("rto: { target: 30s, enforce: maybe }", "t.yaml:10:54: name www: rto.enforce: expected true or false, found \"maybe\""),
    ("rto: { target: 30s, enfroce: false }", "t.yaml:10:45: unknown key \"enfroce\" in name www: rto (did you mean \"enforce\"?)"),
] as [(String, String)])
func ttlWhenFailingAndRTOErrors(_ keys: String, _ want: String) {
    #expect(errors(endpointsYAML + "zones:\n  example.com:\n    names:\n      www: { policy: a, \(keys) }\n") == [want])
}
