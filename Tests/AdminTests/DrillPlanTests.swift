import Config
import Routing
import DNSWire
import Foundation
import Health
@testable import Admin
import Server
import Testing

/// The drill's pure parts: which names and answers a datacenter touches, the default
/// vantages, verdicts, and the control URLs and override targets.
@Suite("drill plan")
struct DrillPlanTests {
    static let yaml = """
    defaults: { ttl: 30 }
    zones:
      example.com:
        names:
          www:
            rto: 45s
            policy:
              geo:
                office: iad
                default: { failover: [ams, iad] }
          api:
            ttl: 20
            policy: { failover: [api-primary, ams-1] }
            when_all_down: fallback
            fallback: [192.0.2.250]
          cdn:
            policy: edge
          static:
            policy: ams-2
    geo:
      cidr:
        203.0.113.0/24: office
        198.18.0.0/15: office
        10.0.0.0/8: iad
    datacenters:
      ams: { lat: 52.37, lon: 4.90 }
      iad: { lat: 38.95, lon: -77.45 }
    checks:
      defaults: { interval: 10s, timeout: 2s, rise: 2, fall: 3 }
      web: { type: tcp, port: 80 }
    endpoints:
      ams-1: { v4: 192.0.2.10, v6: "2001:db8::10", dc: ams, check: web }
      ams-2: { v4: 192.0.2.11, dc: ams }
      iad-1: { v4: 198.51.100.10, dc: iad, check: web }
      edge:  { cname: edge.cdn.example.net., dc: iad }
    pools:
      api-primary: [iad-1]
    """

    /// The loader checks that zone files exist, so one is written to a temporary folder.
    static func model() throws -> ConfigModel {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drill-plan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n".write(to: dir.appendingPathComponent("example.com.zone"), atomically: true, encoding: .utf8)
        return try ConfigLoader.load(yaml: yaml, file: "drill.yaml", baseDirectory: dir.path)
    }

    @Test func iadTouchesTheNamesThatCanAnswerWithIt() throws {
        let plan = try DatacenterPlan(model: try Self.model(), datacenter: "iad")
        #expect(plan.names.map(\.owner.description) == ["www.example.com.", "api.example.com.", "cdn.example.com."])
        #expect(plan.addresses == [IPAddress("198.51.100.10")!])
        #expect(plan.cnames == [try DNSName("edge.cdn.example.net.")])
        let api = try #require(plan.names.first { $0.owner.description == "api.example.com." })
        // tcp check: interval x fall 30 + timeout 2 + TTL when failing 10 (the interval),
        // above interval 10 + timeout 2 + TTL 20 for an answer given before the first failure.
        #expect(api.budget?.down == 42)
        #expect(api.ttl == 20 && api.rto == nil)
        #expect(plan.names.first?.rto == 45)
        // The CNAME endpoint has no check: only an override moves it.
        #expect(plan.names.last?.budget == nil)
    }

    @Test func answersAreClassifiedByPlace() throws {
        let plan = try DatacenterPlan(model: try Self.model(), datacenter: "iad")
        let iad = IPAddress("198.51.100.10")!, ams = IPAddress("192.0.2.10")!, fb = IPAddress("192.0.2.250")!
        #expect(plan.pointsInto(addresses: [iad], cnames: []))
        #expect(plan.pointsInto(addresses: [], cnames: [try DNSName("EDGE.cdn.example.net.")]))
        #expect(!plan.pointsInto(addresses: [ams, fb], cnames: []))
        #expect(plan.places(addresses: [ams], cnames: []) == ["ams"])
        #expect(plan.places(addresses: [fb], cnames: []) == ["fallback"])
        #expect(plan.places(addresses: [IPAddress("203.0.113.1")!], cnames: []) == ["203.0.113.1"])
    }

    @Test func unknownOrUnusedDatacenterIsAUsageError() throws {
        let m = try Self.model()
        #expect(throws: DrillError.self) { _ = try DatacenterPlan(model: m, datacenter: "sfo") }
        do { _ = try DatacenterPlan(model: m, datacenter: "sfo") } catch { #expect(error.exitCode == 2 && error.message.contains("known: ams, iad")) }
    }

    @Test func defaultVantagesAreOnePerCIDRTargetThenTheSourceAddress() throws {
        let v = DatacenterPlan.defaultVantages(try Self.model())
        #expect(v.map(\.description) == ["203.0.113.0/24", "10.0.0.0/8", "0.0.0.0/0"])
    }

    struct VerdictCase: Sendable, CustomStringConvertible {
        var affected: Bool, moved: Double?, ttl: UInt32, rto: Double?, verdict: DrillPair.Verdict
        var description: String { "\(affected) \(moved ?? -1) ttl \(ttl) rto \(rto ?? -1)" }
    }

    @Test("verdicts compare the rto with move + TTL", arguments: [
        VerdictCase(affected: true, moved: 0.1, ttl: 30, rto: 45, verdict: .ok),
        VerdictCase(affected: true, moved: 0.1, ttl: 30, rto: 30, verdict: .exceeded),
        VerdictCase(affected: true, moved: 0.1, ttl: 30, rto: 1, verdict: .exceeded),
        VerdictCase(affected: true, moved: nil, ttl: 30, rto: 45, verdict: .neverMoved),
        VerdictCase(affected: true, moved: 2, ttl: 30, rto: nil, verdict: .noRTO),
        VerdictCase(affected: false, moved: nil, ttl: 30, rto: 1, verdict: .unaffected),
    ])
    func verdicts(_ c: VerdictCase) {
        var p = DrillPair(server: try! ListenAddress("127.0.0.1:53"), name: .root, vantage: Vantage(IPPrefix("0.0.0.0/0")!), ttl: c.ttl, rto: c.rto, budgetDown: nil,
                          before: Observation(), affected: c.affected)
        p.movedIn = c.moved
        #expect(p.verdict == c.verdict)
        #expect(p.passed == (c.verdict != .exceeded && c.verdict != .neverMoved))
    }

    /// Override target names resolve against the config: endpoints to their index, and
    /// every error quotes the text and lists what is known.
    @Test(arguments: [
        ("dc:ams", Result<OverrideTarget, OverrideTargetError>.success(.datacenter("ams"))),
        ("endpoint:iad-1", .success(.endpoint(2))), ("ep:ams-1", .success(.endpoint(0))),
        ("dc:sfo", .failure(.init("target \"dc:sfo\": no datacenter named \"sfo\" (known: ams, iad)"))),
        ("endpoint:nope", .failure(.init("target \"endpoint:nope\": no endpoint named \"nope\" (known: ams-1, ams-2, iad-1, edge)"))),
        ("ams", .failure(.init("target \"ams\": expected endpoint:NAME or dc:NAME"))),
    ])
    func overrideTargetsResolve(_ text: String, _ want: Result<OverrideTarget, OverrideTargetError>) throws {
        let m = try Self.model()
        let got = Result { () throws(OverrideTargetError) in try OverrideTargetName.resolve(text, in: m) }
        #expect(got == want)
        if case .success(let t) = got { #expect(t.name(in: m) == OverrideTargetName(parsing: text)) }
    }

    /// The runbook's checks come from the server's own router: before with every endpoint
    /// up, after with the datacenter's endpoints down.
    @Test func runbookExpectationsComeFromTheRouter() throws {
        let m = try Self.model()
        let t = RunbookTargets(server: try ListenAddress("127.0.0.1:5353"), control: "http://127.0.0.1:8053",
                               needsToken: false, configPath: "/etc/meridian/meridian.yaml")
        let md = try Runbook.markdown(model: m, router: try Router(model: m), datacenters: ["iad"], targets: t,
                                      vantages: DatacenterPlan.defaultVantages(m))
        // Clients of the office map go from iad to ams (www's geo default is failover [ams, iad]).
        #expect(md.contains("dig @127.0.0.1 -p 5353 www.example.com. A +subnet=203.0.113.0/24 +short   # expect 192.0.2.10 192.0.2.11 (was 198.51.100.10)"), "\(md)")
        // api fails over from iad-1 to ams-1.
        #expect(md.contains("api.example.com. A +subnet=0.0.0.0/0 +short   # expect 192.0.2.10 (was 198.51.100.10)"), "\(md)")
        // The CNAME endpoint has nothing to fail over to: the top fails open and keeps it.
        #expect(md.contains("cdn.example.com. A +subnet=0.0.0.0/0 +short   # expect edge.cdn.example.net."), "\(md)")
        #expect(md.contains("meridian override set dc:iad down --reason 'DR: iad out of service' --expires 4h --control http://127.0.0.1:8053"))
        #expect(md.contains("meridian drill --down iad --config /etc/meridian/meridian.yaml --server 127.0.0.1:5353"))
        #expect(!md.contains("```yaml") && md.components(separatedBy: "```sh").count - 1 == 6)
        #expect(throws: DrillError.self) {
            _ = try Runbook.markdown(model: m, router: try Router(model: m), datacenters: ["sfo"], targets: t, vantages: [])
        }
    }

    @Test func controlURLs() throws {
        #expect(try DrillControl(url: "http://127.0.0.1:8053/", token: nil).url == "http://127.0.0.1:8053")
        #expect(try DrillControl(url: "localhost:8053", token: nil).url == "http://127.0.0.1:8053")
        #expect(try DrillControl(url: "http://[::1]:8053", token: nil).url == "http://[::1]:8053")
        for bad in ["https://127.0.0.1:8053", "http://example.com:80", "127.0.0.1"] {
            #expect(throws: DrillError.self, "\(bad)") { _ = try DrillControl(url: bad, token: nil) }
        }
    }
}
