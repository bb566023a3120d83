import Config
import Testing

/// `fleet:` and `server.state_dir` are checked at load, at the value's line:column.
@Suite("fleet and state_dir settings") struct FleetConfigTests {
    @Test(arguments: [
        ("fleet:\n  etcd: [ftp://10.0.0.1:2379]\n", "t.yaml:2:10: fleet.etcd: \"ftp://10.0.0.1:2379\" is not http://HOST:PORT or https://HOST:PORT"),
        ("fleet:\n  etcd: [http://10.0.0.1]\n", "t.yaml:2:10: fleet.etcd: \"http://10.0.0.1\" is not http://HOST:PORT"),
        ("fleet:\n  etcd: [https://10.0.0.1:2379, http://10.0.0.2:2379]\n", "t.yaml:2:9: fleet.etcd: mixes http:// and https:// endpoints"),
        ("fleet:\n  etcd: [https://10.0.0.1:2379]\n  ca_file: /nonexistent/ca.pem\n", "t.yaml:3:12: fleet.ca_file: CA file not found: /nonexistent/ca.pem"),
        ("fleet:\n  etcd: [https://10.0.0.1:2379]\n  cert_file: /nonexistent/c.pem\n", "t.yaml:3:14: fleet.cert_file: certificate file not found"),
        ("fleet:\n  etcd: [https://10.0.0.1:2379]\n  key_file: /etc/hostname\n", "t.yaml:3:13: fleet.key_file: key file is not PEM"),
        ("fleet:\n  etcd: [http://10.0.0.1:2379]\n  ca_file: /nonexistent/ca.pem\n", "t.yaml:3:12: fleet.ca_file: only with https:// endpoints"),
        ("fleet:\n  prefix: /meridian/\n", "t.yaml:2:3: fleet: etcd is required"),
        ("fleet:\n  etcd: http://127.0.0.1:2379\n  prefix: meridian\n", "t.yaml:3:11: fleet.prefix: \"meridian\" must start and end with /"),
        ("fleet:\n  etcd: http://127.0.0.1:2379\n  name: \"ns 1\"\n", "t.yaml:3:9: fleet.name: \"ns 1\" must be 1 to 64 letters"),
        ("fleet:\n  etcd: http://127.0.0.1:2379\n  lease_ttl: 1s\n", "t.yaml:3:14: fleet.lease_ttl: expected 2s to 5m"),
        ("fleet:\n  etcd: http://127.0.0.1:2379\n  ack_timeout: 0s\n", "t.yaml:3:16: fleet.ack_timeout: expected more than 0"),
        ("fleet:\n  etcd: http://127.0.0.1:2379\n  leasettl: 5s\n", "t.yaml:3:3: unknown key \"leasettl\" in fleet"),
        ("fleet:\n  etcd: http://127.0.0.1:2379\n  username: root\n", "t.yaml:2:3: fleet: username and password_file go together"),
        ("server:\n  state_dir: \"\"\n", "t.yaml:2:14: server.state_dir: expected text, found an empty value"),
    ])
    func refused(_ yaml: String, _ expected: String) {
        let found = errors(yaml)
        #expect(found.contains { $0.hasPrefix(expected) }, "\(found)")
    }

    @Test func defaultsAndEndpoints() throws {
        let m = try ConfigLoader.load(yaml: "fleet:\n  etcd: [http://127.0.0.1:2379, \"http://[::1]:2380\", http://etcd-1.example:2379]\n",
                                      file: "t.yaml", baseDirectory: "/tmp")
        let f = try #require(m.server.fleet)
        #expect(f.endpoints.map(\.description) == ["http://127.0.0.1:2379", "http://[::1]:2380", "http://etcd-1.example:2379"])
        #expect(f.prefix == "/meridian/" && f.leaseTTL == 10 && f.ackTimeout == 5 && f.name == FleetSettings.defaultName)
        #expect(m.server.stateDir == nil)
        #expect(!f.usesTLS && f.caFile == nil && f.certFile == nil && f.keyFile == nil)
    }

    /// `https://` without `ca_file`: TLS verified against the system store.
    @Test func httpsEndpointsWithoutACAFileUseTheSystemStore() throws {
        let m = try ConfigLoader.load(yaml: "fleet:\n  etcd: [https://127.0.0.1:2379, \"https://[::1]:2380\"]\n", file: "t.yaml", baseDirectory: "/tmp")
        let f = try #require(m.server.fleet)
        #expect(f.endpoints.map(\.description) == ["https://127.0.0.1:2379", "https://[::1]:2380"])
        #expect(f.usesTLS && f.caFile == nil)
    }
}
