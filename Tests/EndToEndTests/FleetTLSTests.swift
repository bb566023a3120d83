import Foundation
import Testing
import TestSupport

/// Fleet mode against a real etcd that serves its client port over TLS only and wants a
/// client certificate (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`),
/// with certificates made by the openssl CLI. The fixture is `ControlFixture`, as in
/// `FleetTests`: www.ctl.test answers ams (192.0.2.10), failing over to iad.
@Suite("Fleet mode over mutual TLS", .serialized,
       .enabled(if: EtcdServer.isInstalled, "etcd is not installed (apt-get install etcd-server)"),
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "openssl is not installed"))
struct FleetTLSTests {
    /// The fixture with `fleet:` on `etcd` and the given TLS keys (absolute paths).
    static func yaml(etcd: String, ca: String?, cert: String?, key: String?) -> String {
        var fleet = """
            fleet:
              etcd: [\(etcd)]
              prefix: /meridian-tls/
              lease_ttl: 5s
              ack_timeout: 3s

            """
        if let ca { fleet += "  ca_file: \(ca)\n" }
        if let cert { fleet += "  cert_file: \(cert)\n" }
        if let key { fleet += "  key_file: \(key)\n" }
        return fleet + ControlFixture.yaml(control: "127.0.0.1:1", checks: false)
    }

    static func write(_ yaml: String, _ name: String, in folder: URL) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    @Test func overridesPropagateOverMutualTLSAndABadCAOrNoClientCertificateLeavesAnInstanceDisconnected() async throws {
        try await FleetFixture.run { fx in
            let files = fx.keep(try await EtcdTLSFiles.make())
            let etcd = fx.keep(try await EtcdServer.start(tls: files))
            let good = Self.yaml(etcd: etcd.endpoint, ca: files.caFile, cert: files.clientCert, key: files.clientKey)
            var instances: [FleetTests.Instance] = []
            let dir = fx.remove(try ControlFixture.folder(good))
            for n in ["ns1", "ns2"] {
                instances.append(try await FleetTests.start(n, folder: dir, stateDir: try makeTemporaryDirectory(prefix: "meridian-fleet-\(n)"), in: fx))
            }
            let registered = await eventually(10) {
                let s = try? await FleetTests.cli(["status", "--fleet"], instances[0])
                return ["ns1", "ns2"].allSatisfy { s?.stdout.contains($0) == true }
            }
            try #require(registered, "instances never registered over TLS; log:\n\(instances[0].dns.logText)\netcd:\n\(etcd.logText.suffix(3000))")
            let plain = try await FleetTests.cli(["status"], instances[0])
            #expect(plain.stdout.contains("fleet: connected as ns1"), "\(plain.stdout)")

            let set = try await FleetTests.cli(["override", "set", "dc:ams", "down", "--reason", "over mutual TLS"], instances[1])
            #expect(set.status == 0 && set.stdout.contains("acknowledged by 2 instance(s): ns1, ns2"), "\(set.combined)")
            for i in instances { #expect(try await FleetTests.answer(i) == FleetTests.iad, "\(i.name); log:\n\(i.dns.logText)") }

            // The same etcd through a CA that did not sign its certificate, and without a
            // client certificate: each stays disconnected, says why, and keeps answering.
            let cases = [
                ("wrongca", Self.yaml(etcd: etcd.endpoint, ca: files.otherCAFile, cert: files.clientCert, key: files.clientKey),
                 "certificate verification failed"),
                ("nocert", Self.yaml(etcd: etcd.endpoint, ca: files.caFile, cert: nil, key: nil),
                 "alert bad certificate; etcd ended the session: with --client-cert-auth it wants a client certificate (fleet.cert_file, fleet.key_file)"),
            ]
            for (name, yaml, reason) in cases {
                let instance = try await FleetTests.start(name, config: try Self.write(yaml, "\(name).yaml", in: dir), in: fx)
                let p = instance.dns
                instances.append(instance)
                var last = ""
                let refused = await eventually(10) {
                    last = (try? await FleetTests.cli(["status"], instance))?.stdout ?? ""
                    return last.contains("fleet: disconnected as \(name)") && last.contains(reason)
                }
                #expect(refused, "\(name): \(last)\nlog:\n\(p.logText)")
                print("\(name): " + (last.split(separator: "\n").first { $0.hasPrefix("fleet:") } ?? ""))
                #expect(try await FleetTests.answer(instance) == FleetTests.ams, "\(name) answers DNS and applies nothing")
            }
            let fleet = try await FleetTests.cli(["status", "--fleet"], instances[0])
            #expect(!fleet.stdout.contains("wrongca") && !fleet.stdout.contains("nocert"), "\(fleet.stdout)")
        }
    }

    /// etcd's certificate is signed by the right CA but names another host: the instance
    /// refuses it (IP address verification), stays disconnected and keeps answering.
    @Test func aCertificateForAnotherAddressIsRefused() async throws {
        try await FleetFixture.run { fx in
            let files = fx.keep(try await EtcdTLSFiles.make(serverNames: "DNS:etcd.example,IP:192.0.2.1"))
            let etcd = fx.keep(try await EtcdServer.start(tls: files))
            let dir = fx.remove(try ControlFixture.folder(Self.yaml(etcd: etcd.endpoint, ca: files.caFile, cert: files.clientCert, key: files.clientKey)))
            let i = try await FleetTests.start("ns1", folder: dir, stateDir: try makeTemporaryDirectory(prefix: "meridian-fleet-ns1"), in: fx)
            var last = ""
            let refused = await eventually(10) {
                last = (try? await FleetTests.cli(["status"], i))?.stdout ?? ""
                return last.contains("fleet: disconnected as ns1") && last.contains("TLS certificate verification failed: IP address mismatch")
            }
            #expect(refused, "\(last)\nlog:\n\(i.dns.logText)")
            print("ns1: " + (last.split(separator: "\n").first { $0.hasPrefix("fleet:") } ?? ""))
            #expect(try await FleetTests.answer(i) == FleetTests.ams)
        }
    }

    /// `meridian check` refuses bad TLS files at the key's file:line:column, as `serve` would.
    @Test func checkRefusesBadTLSFilesAtTheirKey() async throws {
        let files = try await EtcdTLSFiles.make()
        defer { files.remove() }
        let dir = try ControlFixture.folder(Self.yaml(etcd: "https://127.0.0.1:1", ca: files.caFile, cert: files.clientCert, key: files.clientKey))
        defer { try? FileManager.default.removeItem(at: dir) }
        let ok = try await MeridianProcess.run(["check", "--config", dir.appendingPathComponent("meridian.yaml").path])
        #expect(ok.status == 0, "\(ok.combined)")

        let missing = dir.appendingPathComponent("missing.pem").path
        let cases: [(String, String, String)] = [
            ("missing CA", Self.yaml(etcd: "https://127.0.0.1:1", ca: missing, cert: nil, key: nil), "fleet.ca_file: CA file not found: \(missing)"),
            ("missing key", Self.yaml(etcd: "https://127.0.0.1:1", ca: files.caFile, cert: files.clientCert, key: missing),
             "fleet.key_file: key file not found: \(missing)"),
            ("key of another certificate", Self.yaml(etcd: "https://127.0.0.1:1", ca: files.caFile, cert: files.clientCert, key: files.otherKey),
             "fleet.key_file: cannot use private key \(files.otherKey) with the certificate in \(files.clientCert): error:05800074:x509 certificate routines::key values mismatch"),
            ("a key as the CA file", Self.yaml(etcd: "https://127.0.0.1:1", ca: files.clientKey, cert: nil, key: nil),
             "fleet.ca_file: CA file holds no PEM certificate"),
            ("TLS keys with http endpoints", Self.yaml(etcd: "http://127.0.0.1:1", ca: files.caFile, cert: nil, key: nil),
             "fleet.ca_file: only with https:// endpoints"),
        ]
        for (what, yaml, message) in cases {
            let config = try Self.write(yaml, "bad.yaml", in: dir)
            let line = yaml.split(separator: "\n", omittingEmptySubsequences: false)
                .firstIndex { $0.contains(message.hasPrefix("fleet.key_file") ? "key_file:" : "ca_file:") }.map { $0 + 1 } ?? 0
            let check = try await MeridianProcess.run(["check", "--config", config.path])
            #expect(check.status != 0, "\(what): \(check.combined)")
            #expect(check.stderr.contains("bad.yaml:\(line):") && check.stderr.contains(message), "\(what), line \(line): \(check.combined)")
        }
        let pair = try Self.write(Self.yaml(etcd: "https://127.0.0.1:1", ca: nil, cert: files.clientCert, key: nil), "bad.yaml", in: dir)
        let alone = try await MeridianProcess.run(["check", "--config", pair.path])
        #expect(alone.status != 0 && alone.stderr.contains("fleet: cert_file and key_file go together"), "\(alone.combined)")
    }
}
