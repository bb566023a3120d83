import Config
import DNSWire
import Foundation
import Testing

/// `transfers:` (issue 18): every mistake is refused at load with file:line:column, so
/// `meridian check` refuses what `serve` would.
@Suite struct TransferConfigTests {
    static let base = endpointsYAML + "zones:\n  example.com:\n    names:\n      www: { policy: a }\n"

    @Test(arguments: [
        ("transfers:\n  allow: [{ from: 192.0.2.1, key: nokey }]\n", "t.yaml:12:35: transfers.allow: no TSIG key \"nokey\" in transfers.keys or transfers.key_files"),
        ("transfers:\n  allow: [192.0.2.1/24]\n", "t.yaml:12:11: transfers.allow: \"192.0.2.1/24\" is not an address or a CIDR prefix with no bits set past its length"),
        ("transfers:\n  keys:\n    k: { secret: \"not base64!\" }\n", "t.yaml:13:18: transfers.keys.k.secret: not base64 (tsig-keygen prints one)"),
        ("transfers:\n  keys:\n    k: { algorithm: hmac-md5, secret: \"c2VjcmV0\" }\n", "t.yaml:13:21: transfers.keys.k.algorithm: unsupported \"hmac-md5\" (use hmac-sha256, hmac-sha384, hmac-sha512)"),
        ("transfers:\n  gslb_view: sometimes\n", "t.yaml:12:14: transfers.gslb_view: expected all_up, fallback, healthy, found \"sometimes\""),
        ("transfers:\n  health_notify_interval: 500ms\n", "t.yaml:12:27: transfers.health_notify_interval: must be between 1s and 1h, found \"500ms\""),
        ("transfers:\n  health_notify_interval: often\n", "t.yaml:12:27: transfers.health_notify_interval: bad duration \"often\" (use e.g. 500ms, 30s, 5m, 1h)"),
        ("transfers:\n  serial: daily\n", "t.yaml:12:11: transfers.serial: expected keep, unixtime, increment, found \"daily\""),
        ("transfers:\n  zones:\n    example.org: { gslb_view: fallback }\n", "t.yaml:13:5: transfers.zones: example.org. is not a served zone"),
        ("transfers:\n  names:\n    mail.example.com: fallback\n", "t.yaml:13:5: transfers.names: mail.example.com. is not a GSLB name"),
        ("transfers:\n  catalog: example.com\n", "t.yaml:12:12: transfers.catalog: example.com. is a served zone; the catalog is generated, name it apart (e.g. catalog.invalid)"),
        ("transfers:\n  alow: []\n", "t.yaml:12:3: unknown key \"alow\" in transfers (did you mean \"allow\"?)"),
    ] as [(String, String)])
    func refused(_ yaml: String, _ want: String) {
        #expect(errors(Self.base + yaml) == [want])
    }

    @Test func everyFormLoads() throws {
        let yaml = Self.base + """
            transfers:
              keys:
                xfr-key: { secret: "c2VjcmV0LXNoYXJlZC13aXRoLXRoZS1zZWNvbmRhcmllcw==" }
              allow: [192.0.2.53, 2001:db8::/32, { from: 198.51.100.0/24, key: xfr-key }]
              notify: ["192.0.2.53", { to: "[2001:db8::53]:5353", key: xfr-key }]
              serial: unixtime
              zones:
                example.com: { allow: 203.0.113.7, gslb_view: fallback, serial: increment, notify: ["203.0.113.7:53"] }
              names:
                www.example.com: all_up
            """
        let m = try ConfigLoader.load(yaml: yaml, file: "t.yaml", baseDirectory: Paths.fixtures)
        let t = m.transfers
        let zone = try DNSName("example.com.")
        #expect(t.keys.map(\.name) == [try DNSName("xfr-key.")] && t.keys[0].algorithm == .hmacSHA256)
        #expect(t.allow.map(\.description) == ["192.0.2.53/32", "2001:db8::/32", "198.51.100.0/24 key #0"])
        #expect(t.entries(zone: zone, client: IPAddress("203.0.113.7")!).count == 1)
        #expect(t.entries(zone: zone, client: IPAddress("203.0.113.8")!).isEmpty)
        #expect(t.notifyTargets(zone: zone).map(\.address) == ["192.0.2.53", "[2001:db8::53]:5353", "203.0.113.7:53"])
        #expect(t.view(name: try DNSName("www.example.com."), zone: zone) == .allUp)
        #expect(t.view(name: try DNSName("other.example.com."), zone: zone) == .fallback)
        #expect(t.zoneSerial[zone] == .increment && t.serial == .unixtime)
    }

    @Test func bindKeyFile() throws {
        let keys = try TSIGKeyFile.parse("# made by tsig-keygen\nkey \"xfr-key\" {\n\talgorithm hmac-sha512;\n\tsecret \"c2VjcmV0\";\n};\n", file: "k.key")
        #expect(keys.count == 1 && keys[0].algorithm == .hmacSHA512 && keys[0].secret == Array("secret".utf8))
        #expect(throws: ConfigErrors.self) { try TSIGKeyFile.parse("key \"x\" {\n  algorithm hmac-sha256;\n  secrt \"c2VjcmV0\";\n};\n", file: "k.key") }
        do {
            _ = try TSIGKeyFile.parse("key \"x\" {\n  algorithm hmac-sha256;\n  secret \"c2VjcmV0\"\n};\n", file: "k.key")
        } catch {
            #expect(error.errors.map(\.description) == ["k.key:4:1: expected \";\""])
        }
    }
}
