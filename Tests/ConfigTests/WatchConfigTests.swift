import Config
import Testing

/// `watch: true` is capped at `WatchLimits.maxSockets` distinct host:port targets, counted
/// as the health loop opens them (a template once per endpoint address), at load time.
@Suite("watched connections in the config")
struct WatchConfigTests {
    static func yaml(endpoints n: Int, shared: Bool = false) -> String {
        var y = "checks:\n  w: { type: tcp, port: 80, watch: true }\n  s: { type: tcp, host: 127.0.0.1, port: 80, watch: true }\nendpoints:\n"
        for i in 0..<n {
            let a = shared ? "10.0.0.1" : "10.\(i >> 16 & 255).\(i >> 8 & 255).\(i & 255)"
            y += "  e\(i): { v4: \(a), check: w }\n"
        }
        return y
    }

    @Test func watchedTargetsAreDistinctHostPorts() throws {
        let m = try ConfigLoader.load(yaml: Self.yaml(endpoints: 3), file: "t.yaml", baseDirectory: Paths.fixtures)
        #expect(m.watchedTargets().map(\.description).sorted() == ["10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80", "127.0.0.1:80"])
        let shared = try ConfigLoader.load(yaml: Self.yaml(endpoints: 3, shared: true), file: "t.yaml", baseDirectory: Paths.fixtures)
        #expect(shared.watchedTargets().count == 2, "endpoints at one address share one connection")
    }

    @Test func moreThanTheCapIsRefusedAtTheFirstWatch() {
        // 9,999 endpoint addresses + the explicit 127.0.0.1:80 = 10,000: accepted.
        #expect(errors(Self.yaml(endpoints: WatchLimits.maxSockets - 1)) == [])
        #expect(errors(Self.yaml(endpoints: WatchLimits.maxSockets)) ==
                ["t.yaml:2:36: checks: 10001 watched connections (distinct host:port of checks with watch: true) exceed the limit of 10000"])
    }
}
