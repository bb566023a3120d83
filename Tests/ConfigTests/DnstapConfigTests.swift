import Config
import Foundation
import Testing

/// `server.dnstap`: what loads, and each refusal with its file:line:column.
@Test func dnstapSettingsLoad() throws {
    let m = try ConfigLoader.load(yaml: """
        server:
          dnstap: { socket: /run/meridian/dnstap.sock, identity: ns1, version: v9, log_queries: false, sample: 10, max_per_second: 500 }
        """, file: "t.yaml", baseDirectory: "/etc/meridian")
    let d = try #require(m.server.dnstap)
    #expect(d.output == .socket("/run/meridian/dnstap.sock"))
    #expect(d.identity == "ns1" && d.version == "v9" && !d.logQueries && d.logResponses && d.sample == 10 && d.maxPerSecond == 500)
    let f = try ConfigLoader.load(yaml: "server:\n  dnstap: { file: tap.fstrm }\n", file: "t.yaml", baseDirectory: "/tmp")
    #expect(f.server.dnstap?.output == .file("/tmp/tap.fstrm"), "a relative file is in the config's folder")
    #expect(f.server.dnstap?.sample == 1 && f.server.dnstap?.logQueries == true)
    #expect(try ConfigLoader.load(yaml: "server: {}\n", file: "t.yaml", baseDirectory: "/tmp").server.dnstap == nil)
}

@Test(arguments: [
    ("{ identity: x }", "t.yaml:2:11: server.dnstap: needs socket (a Unix socket path) or file"),
    ("{ socket: /a.sock, file: /tmp/b }", "t.yaml:2:30: server.dnstap: give either socket or file, not both"),
    ("{ file: /no/such/folder/tap }", "t.yaml:2:19: server.dnstap.file: folder /no/such/folder does not exist"),
    ("{ socket: /\(String(repeating: "s", count: 120)) }", "t.yaml:2:21: server.dnstap.socket: path longer than 107 bytes (121), which a Unix socket address cannot hold"),
    ("{ socket: /a.sock, sample: 0 }", "t.yaml:2:38: server.dnstap.sample 0 out of range 1...1000000"),
    ("{ socket: /a.sock, log_queries: no, log_responses: off }", "t.yaml:2:11: server.dnstap: log_queries and log_responses are both false, so nothing would be logged (remove dnstap instead)"),
    ("{ socket: /a.sock, log_queries: maybe }", "t.yaml:2:43: server.dnstap.log_queries: expected true or false, found \"maybe\""),
    ("{ socket: /a.sock, max_per_second: -1 }", "t.yaml:2:46: server.dnstap.max_per_second -1 out of range 0...10000000"),
    ("{ sockt: /a.sock }", "t.yaml:2:13: unknown key \"sockt\" in server.dnstap (did you mean \"socket\"?)"),
] as [(String, String)])
func dnstapErrors(_ block: String, _ want: String) {
    let yaml = "server:\n  dnstap: \(block)\n"
    do {
        _ = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: "/tmp")
        Issue.record("loaded: \(yaml)")
    } catch {
        #expect(error.errors.map(\.description).contains(want), "\(error.errors.map(\.description))")
    }
}
