import DNSWire
import Foundation
import Testing
import TestSupport

/// Issue 18: zone transfers out (AXFR, IXFR), TSIG, the static view of GSLB names, and
/// real NSD and Knot secondaries on loopback.
enum TransferFixture {
    static let key = TestTSIGKey(name: "xfr-key", secret: "c2VjcmV0LXNoYXJlZC13aXRoLXRoZS1zZWNvbmRhcmllcw==")
    static let wrongSecret = TestTSIGKey(name: "xfr-key", secret: "bm90LXRoZS1zZWNyZXQtdGhlLXNlcnZlci1rbm93cw==")
    static let unknownKey = TestTSIGKey(name: "stranger", secret: "c2VjcmV0LXNoYXJlZC13aXRoLXRoZS1zZWNvbmRhcmllcw==")

    static let gslbZone = """
        $ORIGIN gslb.test.
        $TTL 3600
        @    IN SOA ns1 hostmaster 7 7200 3600 1209600 300
             IN NS  ns1
        ns1  IN A   192.0.2.53
        edge IN A   192.0.2.200
        www  IN TXT "static beside a GSLB name"

        """

    /// gslb.test with two GSLB names: `www` (failover primary -> backup) and `fb` (the
    /// same, with a fallback address), TSIG-signed transfers for 127.0.0.1.
    /// The `transfers:` key and ACL of the signed and health-following transfer tests, at
    /// column 0: the TSIG key, and 127.0.0.1 allowed with it.
    static let tsigTransfers = """
        transfers:
          keys:
            xfr-key: { algorithm: hmac-sha256, secret: "\(key.secret)" }
          allow:
            - { from: 127.0.0.1, key: xfr-key }
        """

    static func config(folder: String, allow: String = "{ from: 127.0.0.1, key: xfr-key }", extra: String = "") -> String {
        """
        zones:
          gslb.test:
            file: \(folder)/gslb.test.zone
            names:
              www: { ttl: 60, policy: { failover: [primary, backup] } }
              fb: { ttl: 60, policy: { failover: [primary, backup] }, when_all_down: fallback, fallback: 192.0.2.99 }
        endpoints:
          primary: { v4: 192.0.2.1, v6: "2001:db8::1" }
          backup: { v4: 192.0.2.2 }
        transfers:
          keys:
            xfr-key: { algorithm: hmac-sha256, secret: "\(key.secret)" }
          allow:
            - \(allow)
        \(extra)
        """
    }

    /// A folder with gslb.test.zone and meridian.yaml.
    static func folder(allow: String = "{ from: 127.0.0.1, key: xfr-key }", extra: String = "") throws -> String {
        let dir = try makeTemporaryDirectory(prefix: "meridian-xfr").path
        try gslbZone.write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
        try config(folder: dir, allow: allow, extra: extra).write(toFile: dir + "/meridian.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    static func serve(_ dir: String, control: UInt16? = nil) async throws -> MeridianProcess {
        var server: MeridianProcess?
        for _ in 0..<3 where server == nil {
            let port = try freePort()
            var args = ["serve", "--config", dir + "/meridian.yaml", "--listen", "127.0.0.1:\(port)"]
            if let control { args += ["--control", "127.0.0.1:\(control)"] }
            server = try? await MeridianProcess.start(args, port: port, probeName: "gslb.test.")
        }
        return try #require(server, "meridian did not start for \(dir)")
    }

    /// `meridian_zone_transfers_total{result}` from the control API.
    static func transfers(control: UInt16, _ result: String) throws -> Double {
        PromText(try HTTP.request("GET", port: control, path: "/metrics").text).value("meridian_zone_transfers_total", ["result": result])
    }

    /// One AXFR/IXFR request over TCP and the first response message.
    static func firstResponse(port: UInt16, zone: String, type: RRType = .axfr) throws -> Message? {
        let c = try RawDNSClient(port: port).tcpConnect()
        defer { c.close() }
        try c.sendFramed(RawQuery(id: 0x4242, name: zone, type: type).bytes())
        guard let r = try c.receiveFramed() else { return nil }
        return try Message(decoding: r)
    }

    static let kdigAvailable = SecondaryServer.kdigBinary != nil
    static let secondariesAvailable = NSDServer.isAvailable && SecondaryServer.knotBinary != nil && kdigAvailable
}

@Suite("Zone transfers", .serialized)
struct TransferTests {
    @Test("AXFR with --allow-transfer: SOA first and last, every record of the zone, and dig's answers agree")
    func axfrFromZoneFolder() async throws {
        try await withMeridian(extraArguments: ["--allow-transfer", "127.0.0.1"]) { s in
            let out = try await Dig.run(["@127.0.0.1", "-p", "\(s.port)", "example.com", "AXFR", "+time=5", "+tries=1"])
            let records = DigResult(parsing: out.stdout).answer
            #expect(records.first?.type == "SOA" && records.last?.type == "SOA", "\(out.stdout)")
            #expect(records.first?.normalized == SOA.exampleCom.replacingOccurrences(of: " 300 IN SOA", with: " 3600 IN SOA"))
            let lines = Set(records.map(\.normalized))
            for expected in ["www.example.com. 3600 IN A 192.0.2.10", "www.example.com. 3600 IN AAAA 2001:db8::10",
                             "ns1.sub.example.com. 3600 IN A 192.0.2.53", "sub.example.com. 3600 IN NS ns1.sub.example.com.",
                             "*.wild.example.com. 3600 IN TXT \"wildcard\"", "alias.example.com. 3600 IN CNAME alias2.example.com."] {
                #expect(lines.contains(expected), "missing \(expected) in:\n\(out.stdout)")
            }
            // Every RRset outside the delegation answers the same records to a query.
            var sets: [String: [String]] = [:]
            for r in records.dropFirst().dropLast() where !r.owner.lowercased().hasSuffix("sub.example.com.") {
                sets["\(r.owner) \(r.type)", default: []].append(r.normalized)
            }
            for (key, expected) in sets {
                let parts = key.split(separator: " ")
                let answer = try await Dig.short(String(parts[0]), String(parts[1]), port: s.port, options: ["+tcp"])
                #expect(answer == expected.sorted(), "\(key)")
            }
        }
    }

    @Test("AXFR from outside the ACL, or with no ACL at all, is REFUSED with no records, logged and counted")
    func refusedOutsideACL() async throws {
        try await withMeridian(extraArguments: ["--allow-transfer", "192.0.2.0/24"]) { s in
            let m = try #require(try TransferFixture.firstResponse(port: s.port, zone: "example.com."))
            #expect(m.rcode == .refused)
            #expect(m.answers.isEmpty)
            let ixfr = try #require(try TransferFixture.firstResponse(port: s.port, zone: "example.com.", type: .ixfr))
            #expect(ixfr.rcode == .refused && ixfr.answers.isEmpty)
            #expect(await eventually { s.logText.contains("zone transfer refused") && s.logText.contains("not in any transfer ACL") })
        }
        try await withMeridian { s in
            let m = try #require(try TransferFixture.firstResponse(port: s.port, zone: "example.com."))
            #expect(m.rcode == .refused && m.answers.isEmpty)
            // Over UDP AXFR is not defined (RFC 5936 4.2): refused whatever the ACL.
            let u = try #require(try RawDNSClient(port: s.port).udpExchange(RawQuery(id: 9, name: "example.com.", type: .axfr).bytes()))
            #expect(try Message(decoding: u).rcode == .refused)
            // IXFR over UDP gets the current SOA alone (RFC 1995 2: ask again over TCP).
            let i = try Message(decoding: try #require(try RawDNSClient(port: s.port).udpExchange(RawQuery(id: 10, name: "example.com.", type: .ixfr).bytes())))
            #expect(i.rcode == .noError && i.answers.count == 1 && i.answers.first?.type == .soa)
            let notApex = try Message(decoding: try #require(try RawDNSClient(port: s.port).udpExchange(RawQuery(id: 11, name: "www.example.com.", type: .ixfr).bytes())))
            #expect(notApex.rcode == .refused && notApex.answers.isEmpty)
        }
    }

    @Test("A zone that is not served is REFUSED even for an allowed client")
    func notServed() async throws {
        try await withMeridian(extraArguments: ["--allow-transfer", "127.0.0.0/8"]) { s in
            let m = try #require(try TransferFixture.firstResponse(port: s.port, zone: "example.org."))
            #expect(m.rcode == .refused && m.answers.isEmpty)
            let sub = try #require(try TransferFixture.firstResponse(port: s.port, zone: "www.example.com."))
            #expect(sub.rcode == .refused && sub.answers.isEmpty)
        }
    }

    @Test("TSIG: the right key transfers (kdig verifies every message); a wrong secret, an unknown key or no key get no data",
          .enabled(if: TransferFixture.kdigAvailable))
    func tsig() async throws {
        let dir = try TransferFixture.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let control = try freePort()
        let s = try await TransferFixture.serve(dir, control: control)
        do {
            let good = try await KDig.transfer("gslb.test", port: s.port, key: TransferFixture.key)
            #expect(good.records.first?.type == "SOA" && good.records.last?.type == "SOA", "\(good.output.stdout)\n\(good.output.stderr)")
            #expect(good.records.count == 10, "\(good.output.stdout)")
            #expect(!good.output.stdout.contains("failed") && !good.output.stderr.contains("TSIG"), "\(good.output.stdout)\n\(good.output.stderr)")
            for (k, why) in [(TransferFixture.wrongSecret, "BADSIG"), (TransferFixture.unknownKey, "BADKEY")] {
                let bad = try await KDig.transfer("gslb.test", port: s.port, key: k)
                #expect(bad.records.isEmpty, "\(why): \(bad.output.stdout)")
                #expect(await eventually { s.logText.contains(why == "BADSIG" ? "bad TSIG signature" : "unknown TSIG key") })
            }
            // IXFR from a serial the journal does not know: the whole zone; from the current one: its SOA alone.
            let old = try await KDig.transfer("gslb.test", type: "IXFR=3", port: s.port, key: TransferFixture.key)
            #expect(old.records.count == 10, "\(old.output.stdout)")
            #expect(await eventually { s.logText.contains("ixfr=full") })
            let current = try await KDig.transfer("gslb.test", type: "IXFR=7", port: s.port, key: TransferFixture.key)
            #expect(current.records.count == 1 && current.records.first?.type == "SOA", "\(current.output.stdout)")
            let unsigned = try #require(try TransferFixture.firstResponse(port: s.port, zone: "gslb.test."))
            #expect(unsigned.rcode == .refused && unsigned.answers.isEmpty)
            #expect(await eventually { s.logText.contains("needs a TSIG key") })
            // A signed ordinary query (a secondary's SOA probe) gets a signed answer, over UDP and TCP.
            for transport in ["+notcp", "+tcp"] {
                let soa = try await KDig.run(["-y", TransferFixture.key.kdigArgument, "@127.0.0.1", "-p", "\(s.port)", "gslb.test", "SOA", transport, "+time=3", "+retry=0"])
                #expect(soa.stdout.contains("status: NOERROR") && soa.stdout.contains("TSIG PSEUDOSECTION"), "\(soa.stdout)")
                #expect(!(soa.stdout + soa.stderr).contains("WARNING"), "\(soa.stdout)\(soa.stderr)")
                let wrong = try await KDig.run(["-y", TransferFixture.wrongSecret.kdigArgument, "@127.0.0.1", "-p", "\(s.port)", "gslb.test", "SOA", transport, "+time=3", "+retry=0"])
                #expect(wrong.stdout.contains("status: BADSIG") && !wrong.stdout.contains("ANSWER SECTION"), "\(wrong.stdout)\(wrong.stderr)")
            }
            // good, IXFR=3, IXFR=7 transferred; BADSIG and BADKEY notauth; the unsigned one refused.
            #expect(try TransferFixture.transfers(control: control, "transferred") == 3)
            #expect(try TransferFixture.transfers(control: control, "notauth") == 2)
            #expect(try TransferFixture.transfers(control: control, "refused") == 1)
        } catch {
            await s.stop(); throw error
        }
        await s.stop()
    }

    @Test("GSLB names go out as a static view: all endpoints up by default, the fallback where asked; static types beside them stay",
          .enabled(if: TransferFixture.kdigAvailable))
    func staticView() async throws {
        let dir = try TransferFixture.folder(extra: "  names:\n    fb.gslb.test: fallback")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try await TransferFixture.serve(dir)
        do {
            let x = try await KDig.transfer("gslb.test", port: s.port, key: TransferFixture.key)
            let lines = Set(x.records.map(\.normalized))
            #expect(lines.contains("www.gslb.test. 60 IN A 192.0.2.1"), "\(x.output.stdout)")
            #expect(lines.contains("www.gslb.test. 60 IN AAAA 2001:db8::1"), "\(x.output.stdout)")
            #expect(!lines.contains("www.gslb.test. 60 IN A 192.0.2.2"), "failover with all up answers the primary only")
            #expect(lines.contains("www.gslb.test. 3600 IN TXT \"static beside a GSLB name\""), "\(x.output.stdout)")
            #expect(lines.contains("fb.gslb.test. 60 IN A 192.0.2.99"), "\(x.output.stdout)")
            #expect(!lines.contains { $0.hasPrefix("fb.gslb.test. 60 IN A 192.0.2.1") })
        } catch {
            await s.stop(); throw error
        }
        await s.stop()
    }

    @Test("NSD and Knot as TSIG secondaries: each transfers the zone and serves it record for record as Meridian does",
          .enabled(if: TransferFixture.secondariesAvailable))
    func realSecondaries() async throws {
        let dir = try TransferFixture.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try await TransferFixture.serve(dir)
        var secondaries: [SecondaryServer] = []
        do {
            secondaries.append(try await SecondaryServer.nsd(zones: ["gslb.test."], primaryPort: s.port, key: TransferFixture.key))
            secondaries.append(try await SecondaryServer.knot(zones: ["gslb.test."], primaryPort: s.port, key: TransferFixture.key))
            let primary = try await KDig.transfer("gslb.test", port: s.port, key: TransferFixture.key)
            let want = primary.records.dropLast().map(\.normalized).sorted()
            #expect(want.count == 9)
            for sec in secondaries {
                let waited = await secondsUntil(limit: 20, every: .milliseconds(200)) {
                    (try? await Dig.short("gslb.test", "SOA", port: sec.port))?.count == 1
                }
                #expect(waited != nil, "\(sec.name) never served the zone:\n\(sec.logText)\nmeridian:\n\(s.logText)")
                let copy = try await KDig.transfer("gslb.test", port: sec.port)
                #expect(copy.records.dropLast().map(\.normalized).sorted() == want, "\(sec.name):\n\(copy.output.stdout)")
                for r in Set(primary.records.map { "\($0.owner) \($0.type)" }) {
                    let p = r.split(separator: " ")
                    let a = try await Dig.short(String(p[0]), String(p[1]), port: sec.port)
                    let b = try await Dig.short(String(p[0]), String(p[1]), port: s.port)
                    #expect(a == b, "\(sec.name) answers \(r) differently")
                }
            }
        } catch {
            for sec in secondaries { await sec.stop() }
            await s.stop(); throw error
        }
        for sec in secondaries { await sec.stop() }
        await s.stop()
    }

    @Test("A 100,000-record zone goes out in many messages of at most 64 KiB, TSIG-signed, and kdig verifies it",
          .enabled(if: TransferFixture.kdigAvailable))
    func largeZone() async throws {
        let dir = try TransferFixture.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var zone = TransferFixture.gslbZone
        zone.reserveCapacity(3_000_000)
        for i in 0..<100_000 { zone += "h\(i) IN A 10.\(i >> 16).\((i >> 8) & 255).\(i & 255)\n" }
        try zone.write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
        let s = try await TransferFixture.serve(dir)
        do {
            let t0 = Date()
            let x = try await KDig.transfer("gslb.test", port: s.port, key: TransferFixture.key)
            let seconds = Date().timeIntervalSince(t0)
            #expect(x.records.count == 100_010, "\(x.output.stdout.suffix(500))\n\(x.output.stderr)")
            #expect(x.records.first?.type == "SOA" && x.records.last?.type == "SOA")
            // ";; Received 2345678 B (40 messages, 100009 records)"
            let summary = x.output.stdout.split(separator: "\n").first { $0.contains("Received") } ?? ""
            #expect(summary.contains("messages"), "\(summary)")
            let messages = Int(summary.split(separator: "(").last?.split(separator: " ").first ?? "") ?? 0
            let bytes = Int(summary.split(separator: " ").dropFirst(2).first ?? "") ?? 0
            #expect(messages > 1 && bytes / max(messages, 1) <= 65535, "\(summary)")
            print("100k-record AXFR: \(String(format: "%.2f", seconds)) s including kdig, \(summary)")
        } catch {
            await s.stop(); throw error
        }
        await s.stop()
    }

    @Test("A changed zone and SIGHUP reach NSD and Knot by NOTIFY within 10 s, both asking IXFR and getting the difference",
          .enabled(if: TransferFixture.secondariesAvailable))
    func notifyAfterReload() async throws {
        let nsdPort = try freePort(), knotPort = try freePort()
        let dir = try TransferFixture.folder(extra: """
              notify:
                - { to: "127.0.0.1:\(nsdPort)", key: xfr-key }
                - { to: "127.0.0.1:\(knotPort)", key: xfr-key }
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try await TransferFixture.serve(dir)
        var secondaries: [SecondaryServer] = []
        do {
            secondaries.append(try await SecondaryServer.nsd(zones: ["gslb.test."], primaryPort: s.port, key: TransferFixture.key, port: nsdPort))
            secondaries.append(try await SecondaryServer.knot(zones: ["gslb.test."], primaryPort: s.port, key: TransferFixture.key, port: knotPort))
            for sec in secondaries {
                let ready = await secondsUntil(limit: 20, every: .milliseconds(200)) {
                    (try? await Dig.short("edge.gslb.test", "A", port: sec.port)) == ["edge.gslb.test. 3600 IN A 192.0.2.200"]
                }
                #expect(ready != nil, "\(sec.name) never loaded the zone:\n\(sec.logText)")
            }
            let changed = TransferFixture.gslbZone.replacingOccurrences(of: "hostmaster 7 ", with: "hostmaster 8 ") + "new IN A 192.0.2.77\n"
            try changed.write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
            s.signal(SIGHUP)
            for sec in secondaries {
                let took = await secondsUntil(limit: 10, every: .milliseconds(50)) {
                    (try? await Dig.short("new.gslb.test", "A", port: sec.port)) == ["new.gslb.test. 3600 IN A 192.0.2.77"]
                }
                #expect(took != nil, "\(sec.name) did not pick up the change:\n\(sec.logText)\nmeridian:\n\(s.logText)")
                if let took { print("NOTIFY round trip to \(sec.name): \(String(format: "%.2f", took)) s after SIGHUP") }
            }
            #expect(s.logText.contains("NOTIFY acknowledged"), "\(s.logText)")
            // A deletion goes through the journal too.
            let smaller = changed.replacingOccurrences(of: "hostmaster 8 ", with: "hostmaster 9 ")
                .replacingOccurrences(of: "edge IN A   192.0.2.200\n", with: "")
            try smaller.write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
            s.signal(SIGHUP)
            for sec in secondaries {
                let took = await secondsUntil(limit: 10, every: .milliseconds(50)) {
                    (try? await Dig.query("edge.gslb.test", "A", port: sec.port))?.status == "NXDOMAIN"
                }
                #expect(took != nil, "\(sec.name) still has edge:\n\(sec.logText)")
            }
            // Both secondaries ask IXFR after the NOTIFY and get the difference from the journal:
            // SOA 8, SOA 7, (nothing deleted), SOA 8, the new record, SOA 8.
            let incremental = s.logText.split(separator: "\n").filter { $0.contains("zone transfer sent") && $0.contains("ixfr=incremental") }
            #expect(incremental.count >= 2, "\(s.logText)")
            #expect(incremental.allSatisfy { $0.contains("records=5 ") }, "\(incremental)")
        } catch {
            for sec in secondaries { await sec.stop() }
            await s.stop(); throw error
        }
        for sec in secondaries { await sec.stop() }
        await s.stop()
    }

    @Test("serial: increment bumps the served SOA serial once per content change and not on an unchanged reload; unixtime serves the clock")
    func serialPolicies() async throws {
        let dir = try TransferFixture.folder(extra: "  serial: increment\n  zones:\n    gslb.test: { serial: increment }")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try await TransferFixture.serve(dir)
        func serial() async throws -> String? {
            try await Dig.short("gslb.test", "SOA", port: s.port).first?.split(separator: " ").dropFirst(6).first.map(String.init)
        }
        func reload() async throws -> Bool {
            let before = s.logText.components(separatedBy: "reload ok").count
            s.signal(SIGHUP)
            return await eventually { s.logText.components(separatedBy: "reload ok").count > before }
        }
        do {
            #expect(try await serial() == "7")
            try (TransferFixture.gslbZone + "new IN A 192.0.2.77\n").write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
            #expect(try await reload())
            #expect(try await serial() == "8", "the file still says 7; the content changed")
            #expect(try await reload())
            #expect(try await serial() == "8", "nothing changed")
            try (TransferFixture.gslbZone.replacingOccurrences(of: "hostmaster 7 ", with: "hostmaster 20 ") + "new IN A 192.0.2.77\n")
                .write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
            #expect(try await reload())
            #expect(try await serial() == "20", "a file serial past the served one wins")
            try (try String(contentsOfFile: dir + "/meridian.yaml", encoding: .utf8)).replacingOccurrences(of: "{ serial: increment }", with: "{ serial: unixtime }")
                .write(toFile: dir + "/meridian.yaml", atomically: true, encoding: .utf8)
            try (TransferFixture.gslbZone + "new IN A 192.0.2.78\n").write(toFile: dir + "/gslb.test.zone", atomically: true, encoding: .utf8)
            let now = Int(Date().timeIntervalSince1970)
            #expect(try await reload())
            let u = Int(try await serial() ?? "") ?? 0
            #expect(u >= now && u <= now + 60, "unixtime serial \(u), clock \(now)")
        } catch {
            await s.stop(); throw error
        }
        #expect(s.isRunning)
        await s.stop()
    }

    @Test("check refuses a bad NOTIFY address with its place, and serve refuses a bad --allow-transfer")
    func badInputRefused() async throws {
        let dir = try TransferFixture.folder(extra: "  notify: [\"192.0.2.1:99999\"]")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = try await MeridianProcess.run(["check", "--config", dir + "/meridian.yaml"])
        #expect(out.status != 0)
        #expect((out.stdout + out.stderr).contains("meridian.yaml:15:12: transfers notify: \"192.0.2.1:99999\" is not ADDR, ADDR:PORT or [V6]:PORT: port"), "\(out.stdout)\(out.stderr)")
        let cli = try await MeridianProcess.run(["serve", "--zones", Fixtures.zones, "--allow-transfer", "10.0.0.1/8"])
        #expect(cli.status != 0 && cli.stderr.contains("--allow-transfer 10.0.0.1/8"), "\(cli.stderr)")
    }

    @Test("A generated catalog zone (RFC 9432) lets Knot pick up every served zone, and a zone added later, by itself",
          .enabled(if: TransferFixture.secondariesAvailable))
    func catalogZone() async throws {
        let knotPort = try freePort()
        let dir = try TransferFixture.folder(extra: """
              catalog: catalog.invalid
              notify: [{ to: "127.0.0.1:\(knotPort)", key: xfr-key }]
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try await TransferFixture.serve(dir)
        var knot: SecondaryServer?
        do {
            let cat = try await KDig.transfer("catalog.invalid", port: s.port, key: TransferFixture.key)
            let lines = cat.records.map(\.normalized)
            #expect(lines.contains("version.catalog.invalid. 0 IN TXT \"2\""), "\(cat.output.stdout)")
            #expect(lines.contains { $0.hasSuffix(".zones.catalog.invalid. 0 IN PTR gslb.test.") }, "\(cat.output.stdout)")
            let k = try await SecondaryServer.knot(zones: ["catalog.invalid."], primaryPort: s.port, key: TransferFixture.key,
                                                   port: knotPort, catalog: true)
            knot = k
            let member = await secondsUntil(limit: 20, every: .milliseconds(200)) {
                (try? await Dig.short("edge.gslb.test", "A", port: k.port)) == ["edge.gslb.test. 3600 IN A 192.0.2.200"]
            }
            #expect(member != nil, "knot never served the member zone:\n\(k.logText)\nmeridian:\n\(s.logText)")
            // A new zone in the configuration: the catalog changes, NOTIFY, Knot adds it.
            try "$ORIGIN extra.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n  IN NS ns1\nns1 IN A 192.0.2.54\n"
                .write(toFile: dir + "/extra.test.zone", atomically: true, encoding: .utf8)
            let yaml = try String(contentsOfFile: dir + "/meridian.yaml", encoding: .utf8)
                .replacingOccurrences(of: "zones:\n", with: "zones:\n  extra.test: { file: \(dir)/extra.test.zone }\n")
            try yaml.write(toFile: dir + "/meridian.yaml", atomically: true, encoding: .utf8)
            s.signal(SIGHUP)
            let added = await secondsUntil(limit: 20, every: .milliseconds(200)) {
                (try? await Dig.short("ns1.extra.test", "A", port: k.port)) == ["ns1.extra.test. 3600 IN A 192.0.2.54"]
            }
            #expect(added != nil, "knot never added extra.test:\n\(k.logText)\nmeridian:\n\(s.logText)")
            if let added { print("catalog: new zone served by knot \(String(format: "%.2f", added)) s after SIGHUP") }
        } catch {
            await knot?.stop()
            await s.stop(); throw error
        }
        await knot?.stop()
        await s.stop()
    }

    @Test("NSD and Knot copy the fixture zones unsigned (--allow-transfer): delegation, glue, wildcards and big RRsets record for record",
          .enabled(if: TransferFixture.secondariesAvailable))
    func fixtureZonesUnsigned() async throws {
        try await withMeridian(extraArguments: ["--allow-transfer", "127.0.0.1"]) { s in
            let zones = ["example.com.", "example.net."]
            var secondaries: [SecondaryServer] = []
            do {
                secondaries.append(try await SecondaryServer.nsd(zones: zones, primaryPort: s.port, key: nil, axfrOnly: true))
                secondaries.append(try await SecondaryServer.knot(zones: zones, primaryPort: s.port, key: nil))
                for zone in zones {
                    let want = try await KDig.transfer(zone, port: s.port).records.dropLast().map(\.normalized).sorted()
                    #expect(want.count >= 5)
                    for sec in secondaries {
                        let got = await secondsUntil(limit: 20, every: .milliseconds(200)) {
                            (try? await KDig.transfer(zone, port: sec.port).records.dropLast().map(\.normalized).sorted()) == want
                        }
                        #expect(got != nil, "\(sec.name) \(zone):\n\(sec.logText)")
                    }
                }
            } catch {
                for sec in secondaries { await sec.stop() }
                throw error
            }
            for sec in secondaries { await sec.stop() }
        }
    }
}
