import Config
import Foundation
import Routing
import Testing

/// Issue 20: compiling a loaded configuration (`Router.init`) is linear in CIDR-map labels and
/// `subnet` choices. As in `ConfigScaleUnitTests`, the figure is the ratio between n and 4n:
/// a linear build takes about 4x, the scans it replaced (a label looked up by scanning the
/// labels, each CIDR entry's target and each subnet choice's leaf by scanning the earlier
/// ones) take about 16x.
@Suite("Router compiling scales linearly")
struct RouterScaleTests {
    /// Seconds for the fastest of three builds (the least disturbed by other work).
    func buildSeconds(_ model: ConfigModel) throws -> Double {
        var best = Double.infinity
        for _ in 0..<3 {
            let t0 = Date()
            _ = try Router(model: model)
            best = min(best, Date().timeIntervalSince(t0))
        }
        return best
    }

    /// n CIDR-map entries, each with a label of its own.
    static func cidrLabels(_ n: Int) -> String {
        var s = "endpoints:\n  a: { v4: 192.0.2.1 }\ngeo:\n  cidr:\n"
        for p in 0..<n { s += "    10.\((p >> 8) & 255).\(p & 255).0/24: label\(p)\n" }
        return s + "zones:\n  example.com:\n    names:\n      www: { policy: a }\n"
    }

    /// A `subnet` policy of n prefixes, each answered by an endpoint of its own (n leaves
    /// that are all different).
    static func subnetLeaves(_ n: Int) -> String {
        var s = "endpoints:\n"
        for i in 0..<n { s += "  e\(i): { v4: 10.\(i >> 16).\((i >> 8) & 255).\(i & 255) }\n" }
        s += "zones:\n  example.com:\n    names:\n      www:\n        policy:\n          subnet:\n"
        for p in 0..<n { s += "            172.\(16 + (p >> 16)).\((p >> 8) & 255).\(p & 255)/32: e\(p)\n" }
        return s + "            default: e0\n"
    }

    @Test(arguments: [("CIDR-map labels", 4_000), ("subnet leaves", 4_000)])
    func fourTimesTheInputTakesAboutFourTimesTheTime(_ what: String, _ n: Int) throws {
        func model(_ k: Int) throws -> ConfigModel {
            let yaml = what == "CIDR-map labels" ? Self.cidrLabels(k) : Self.subnetLeaves(k)
            return try ConfigLoader.load(yaml: yaml, file: "scale.yaml", baseDirectory: Paths.zoneFolder)
        }
        let small = try buildSeconds(model(n)), large = try buildSeconds(model(4 * n))
        // Linear is 4x; pairwise is 16x. 8x leaves room for a noisy host and n log n.
        #expect(large / small < 8, "\(what): \(n) took \(small) s, \(4 * n) took \(large) s (\(large / small)x)")
    }

    /// Geo names whose policies are alike share one compiled map: each compiled its own
    /// before, 130 KB a name (13 GB resident at 100,000 names).
    @Test func alikeGeoPoliciesShareOneCompiledMap() throws {
        func router(_ names: Int) throws -> Router {
            var s = "endpoints:\n  a: { v4: 192.0.2.1 }\n  b: { v4: 192.0.2.2 }\ngeo:\n  cidr:\n    198.51.100.0/24: office\n"
            s += "zones:\n  example.com:\n    names:\n"
            for i in 0..<names { s += "      n\(i): { policy: { geo: { office: a, default: b } } }\n" }
            return try Router(model: ConfigLoader.load(yaml: s, file: "geo.yaml", baseDirectory: Paths.zoneFolder))
        }
        // The first router's map may be reused by the second (the cache is per process).
        let many = try router(500), one = try router(1)
        #expect(many.geoMapReport.compiled + many.geoMapReport.reused == 1, "\(many.geoMapReport)")
        #expect(many.geoMapReport.bytes == one.geoMapReport.bytes, "\(one.geoMapReport) vs \(many.geoMapReport)")
    }
}

