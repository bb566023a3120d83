import DNSWire
import Foundation
import Testing
import TestSupport

/// Issue 18 with issue 16: a DNSSEC-signed zone goes to secondaries with its signatures and
/// an NSEC chain, and the signatures are refreshed (new serial, NOTIFY) before they expire.
enum SignedTransferFixture {
    static let available = NSDServer.isAvailable && hasDelv && findExecutable("dnssec-verify") != nil && findExecutable("dig") != nil
        && TransferFixture.kdigAvailable

    /// The signed example.com of the DNSSEC tests, transferred to 127.0.0.1 with the TSIG key
    /// and NOTIFY'd to `notifyPort`; `dnssec` replaces the zone's `dnssec:` block.
    static func make(notifyPort: UInt16, dnssec: String = "{ keys: keys }", serial: String? = nil) async throws -> SignedZone {
        let z = try await SignedZone.make()
        let config = SignedZone.config.replacingOccurrences(of: "dnssec: { keys: keys }", with: "dnssec: \(dnssec)") + """
            \(TransferFixture.tsigTransfers)
              notify:
                - { to: "127.0.0.1:\(notifyPort)", key: xfr-key }
            \(serial.map { "  serial: \($0)" } ?? "")

            """
        try z.folder.write("meridian.yaml", contents: config)
        return z
    }

    /// An AXFR with dig (TSIG-signed when `key`), as zone-file lines.
    static func axfr(port: UInt16, key: TestTSIGKey? = nil) async throws -> String {
        var args = ["@127.0.0.1", "-p", "\(port)", "example.com", "AXFR", "+noall", "+answer", "+time=5", "+tries=1"]
        if let key { args = ["-y", "hmac-sha256:\(key.name):\(key.secret)"] + args }
        return try await Dig.run(args).stdout
    }

    /// `dnssec-verify` over a transferred copy: every RRset signed by every algorithm of the
    /// DNSKEY RRset, a complete NSEC chain.
    static func verify(_ text: String, in folder: String, name: String) async throws -> CommandOutput {
        let file = folder + "/" + name
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return try await runCommand(try #require(findExecutable("dnssec-verify")), ["-o", "example.com", file], timeout: .seconds(60))
    }

    /// Waits until secondary `sec` serves the zone, then runs `dnssec-verify` over its AXFR
    /// copy (expecting success); returns that output.
    static func secondaryCopyVerifies(_ sec: SecondaryServer, primary s: MeridianProcess, zone z: SignedZone,
                                      name: String) async throws -> CommandOutput {
        let loaded = await secondsUntil(limit: 20, every: .milliseconds(200)) {
            (try? await Dig.short("www.example.com", "A", port: sec.port))?.count == 2
        }
        #expect(loaded != nil, "\(name) never loaded the zone:\n\(sec.logText)\nmeridian:\n\(s.logText)")
        let copy = try await axfr(port: sec.port)
        let verified = try await verify(copy, in: z.path, name: name.lowercased() + ".axfr")
        #expect(verified.status == 0, "dnssec-verify on \(name)'s copy:\n\(verified.combined)")
        return verified
    }

    /// delv at secondary `sec` validates its answers: positive, GSLB static views, wildcard,
    /// the 300-record RRset, and denials.
    static func expectValidated(at sec: SecondaryServer, anchor: String, name server: String) async throws {
        for (name, type, expected) in [("www.example.com", "A", "; fully validated"),
                                       ("geo.example.com", "A", "; fully validated"),
                                       ("edge.example.com", "A", "; fully validated"),
                                       ("x.wild.example.com", "A", "; fully validated"),
                                       ("many.example.com", "A", "; fully validated"),
                                       ("nope.example.com", "A", "; negative response, fully validated"),
                                       ("www.example.com", "TXT", "; negative response, fully validated")] {
            let out = try await delv(name, type, port: sec.port, anchor: anchor)
            #expect(out.contains(expected), "delv at \(server) \(name) \(type):\n\(out)")
        }
    }

    static func delv(_ name: String, _ type: String, port: UInt16, anchor: String) async throws -> String {
        try await runCommand(try #require(findExecutable("delv")),
                             ["-a", anchor, "@127.0.0.1", "-p", "\(port)", name, type, "+root=example.com"]).combined
    }

    static func serial(port: UInt16) async -> String? {
        (try? await Dig.short("example.com", "SOA", port: port))?.first?.split(separator: " ").dropFirst(6).first.map(String.init)
    }
}

/// Runs `body` with Meridian `s` and the secondary the body starts (it sets `secondary`),
/// and stops both afterwards, also when the body throws.
func withSecondary(_ s: MeridianProcess, _ body: (inout SecondaryServer?) async throws -> Void) async throws {
    var secondary: SecondaryServer?
    do { try await body(&secondary) } catch {
        await secondary?.stop(); await s.stop(); throw error
    }
    await secondary?.stop()
    await s.stop()
}

@Suite("Signed zone transfers", .serialized)
struct SignedTransferTests {
    @Test("A signed zone reaches NSD with its signatures and an NSEC chain: dnssec-verify passes, delv validates at NSD",
          .enabled(if: SignedTransferFixture.available))
    func signedZoneToNSD() async throws {
        let nsdPort = try freePort()
        let z = try await SignedTransferFixture.make(notifyPort: nsdPort)
        defer { z.folder.remove() }
        let s = try await z.serve()
        try await withSecondary(s) { nsd in
            let primary = try await SignedTransferFixture.axfr(port: s.port, key: TransferFixture.key)
            // Delegations: the NS RRsets unsigned, the DS signed; glue unsigned; an NSEC at each cut.
            let lines = primary.split(separator: "\n").map { DigRecord(line: $0)?.description ?? "" }
            #expect(lines.contains { $0.hasPrefix("secure.example.com. ") && $0.contains(" RRSIG DS ") }, "\(primary)")
            #expect(!lines.contains { $0.contains(" RRSIG NS ") && !$0.hasPrefix("example.com. ") }, "\(primary)")
            #expect(!lines.contains { $0.hasPrefix("ns.sub.example.com. ") && $0.contains(" RRSIG ") }, "\(primary)")
            #expect(lines.contains { $0.hasPrefix("sub.example.com. ") && $0.contains(" NSEC ") && $0.contains(" NS RRSIG NSEC") }, "\(primary)")
            #expect(!lines.contains { $0.contains(" NSEC ") && $0.contains("\\000") }, "compact denial in a transfer:\n\(primary)")
            // The GSLB names' static views are signed too.
            #expect(lines.contains { $0.hasPrefix("geo.example.com. ") && $0.contains(" RRSIG A ") }, "\(primary)")
            let own = try await SignedTransferFixture.verify(primary, in: z.path, name: "primary.axfr")
            #expect(own.status == 0, "dnssec-verify on Meridian's AXFR:\n\(own.combined)\n\(primary)")
            // IXFR of a signed zone is answered with the whole zone (RFC 1995 4), signed.
            let ixfr = try await KDig.transfer("example.com", type: "IXFR=1", port: s.port, key: TransferFixture.key)
            #expect(ixfr.records.count > 20 && ixfr.records.first?.type == "SOA" && ixfr.records.dropFirst().first?.type != "SOA"
                    && ixfr.records.contains { $0.type == "NSEC" }, "\(ixfr.output.stdout)")
            #expect(s.logText.contains("ixfr=full"), "\(s.logText)")

            let sec = try await SecondaryServer.nsd(zones: ["example.com."], primaryPort: s.port, key: TransferFixture.key, port: nsdPort)
            nsd = sec
            let verified = try await SignedTransferFixture.secondaryCopyVerifies(sec, primary: s, zone: z, name: "NSD")
            print("dnssec-verify on NSD's copy: \(verified.combined.split(separator: "\n").joined(separator: " | "))")

            let anchor = try z.anchorFile()
            try await SignedTransferFixture.expectValidated(at: sec, anchor: anchor, name: "NSD")
            // The GSLB name's static view (all up, no location: the geo default, fra).
            let geo = try await SignedTransferFixture.delv("geo.example.com", "A", port: sec.port, anchor: anchor)
            #expect(geo.contains("192.0.2.3"), "\(geo)")
            // The denial comes from NSD's chain, not from Meridian's compact denial.
            let nx = try await SignedTransferFixture.delv("nope.example.com", "A", port: sec.port, anchor: anchor)
            print("delv at NSD, nope.example.com A:\n\(nx)")
            #expect(nx.contains("NSEC") && !nx.contains("\\000"), "\(nx)")
        }
    }

    @Test("Signatures due for refresh are made again with a bumped serial and a NOTIFY: NSD serves the new copy and it verifies",
          .enabled(if: SignedTransferFixture.available))
    func refreshBumpsSerial() async throws {
        let nsdPort = try freePort()
        // Refresh 5 s short of validity: the transferred signatures are due (at the earliest)
        // 5 s after they are made.
        let z = try await SignedTransferFixture.make(notifyPort: nsdPort, dnssec: "{ keys: keys, validity: 1h, refresh: 3595s }")
        defer { z.folder.remove() }
        let s = try await z.serve()
        try await withSecondary(s) { nsd in
            let sec = try await SecondaryServer.nsd(zones: ["example.com."], primaryPort: s.port, key: TransferFixture.key, port: nsdPort)
            nsd = sec
            let first = await secondsUntil(limit: 20, every: .milliseconds(200)) { await SignedTransferFixture.serial(port: sec.port) != nil }
            #expect(first != nil, "NSD never loaded the zone:\n\(sec.logText)")
            let before = try #require(await SignedTransferFixture.serial(port: sec.port))
            let sigBefore = try await Dig.run(["@127.0.0.1", "-p", "\(sec.port)", "www.example.com", "A", "+dnssec", "+short"]).stdout
            let moved = await secondsUntil(limit: 30, every: .milliseconds(250)) {
                guard let now = await SignedTransferFixture.serial(port: sec.port) else { return false }
                return now != before
            }
            #expect(moved != nil, "the serial never moved:\n\(s.logText)")
            if let moved { print("signature refresh: NSD served a new serial \(String(format: "%.1f", moved)) s after its first copy") }
            let after = try #require(await SignedTransferFixture.serial(port: sec.port))
            #expect(UInt32(after) ?? 0 > UInt32(before) ?? 0, "\(before) -> \(after)")
            #expect(s.logText.contains("transferred signatures due for refresh"), "\(s.logText)")
            #expect(s.logText.contains("NOTIFY acknowledged"), "\(s.logText)")
            let sigAfter = try await Dig.run(["@127.0.0.1", "-p", "\(sec.port)", "www.example.com", "A", "+dnssec", "+short"]).stdout
            #expect(sigAfter != sigBefore, "the RRSIG did not change:\n\(sigBefore)\n\(sigAfter)")
            let copy = try await SignedTransferFixture.axfr(port: sec.port)
            let verified = try await SignedTransferFixture.verify(copy, in: z.path, name: "nsd.axfr")
            #expect(verified.status == 0, "\(verified.combined)")
        }
    }

    @Test("A signed zone reaches Knot too: dnssec-verify passes on Knot's copy, delv validates at Knot (positive, GSLB, wildcard, 300-record RRset, denial)",
          .enabled(if: SignedTransferFixture.available && SecondaryServer.knotBinary != nil))
    func signedZoneToKnot() async throws {
        let knotPort = try freePort()
        let z = try await SignedTransferFixture.make(notifyPort: knotPort)
        defer { z.folder.remove() }
        let s = try await z.serve()
        try await withSecondary(s) { knot in
            let sec = try await SecondaryServer.knot(zones: ["example.com."], primaryPort: s.port, key: TransferFixture.key, port: knotPort)
            knot = sec
            _ = try await SignedTransferFixture.secondaryCopyVerifies(sec, primary: s, zone: z, name: "Knot")
            let anchor = try z.anchorFile()
            try await SignedTransferFixture.expectValidated(at: sec, anchor: anchor, name: "Knot")
        }
    }

    @Test("A large signed zone: the view is signed in the background while TCP queries are answered, and the AXFR carries it whole",
          .enabled(if: SignedTransferFixture.available && TransferFixture.kdigAvailable))
    func largeSignedZone() async throws {
        let z = try await SignedTransferFixture.make(notifyPort: 9)
        defer { z.folder.remove() }
        var zone = SignedZone.zone
        let extra = 20_000
        zone.reserveCapacity(zone.count + extra * 32)
        for i in 0..<extra { zone += "h\(i) IN A 10.\(i >> 16).\((i >> 8) & 255).\(i & 255)\n" }
        try z.folder.write("example.com.zone", contents: zone)
        let s = try await z.serve()
        try await withSecondary(s) { _ in
            let t0 = Date()
            // The first message waits for the whole view: signing 20,000 names in a debug build
            // takes seconds on a busy host, so kdig waits longer than its usual 5 s.
            async let transfer = KDig.transfer("example.com", port: s.port, key: TransferFixture.key, wait: 60)
            // The same TCP worker answers while the view is being signed.
            let answered = try await Dig.run(["@127.0.0.1", "-p", "\(s.port)", "+tcp", "+short", "+time=3", "+tries=1", "www.example.com", "A"])
            let queryTime = Date().timeIntervalSince(t0)
            let x = try await transfer
            let total = Date().timeIntervalSince(t0)
            print("signed AXFR of \(extra) extra names: \(String(format: "%.2f", total)) s; a TCP query meanwhile: \(String(format: "%.2f", queryTime)) s")
            #expect(answered.stdout.contains("192.0.2.1"), "\(answered.combined)")
            let types = Dictionary(grouping: x.records, by: \.type).mapValues(\.count)
            #expect(types["NSEC"] ?? 0 > extra && types["RRSIG"] ?? 0 > 2 * extra, "\(types)\n\(x.output.stdout.suffix(400))")
            #expect(x.records.first?.type == "SOA" && x.records.last?.type == "SOA")
            #expect(s.logText.contains("signed transfer view built"), "\(s.logText)")
        }
    }

    @Test("serial: keep is refused for a signed, transferred zone, with the line and column where it is written")
    func keepRefused() async throws {
        let z = try await SignedTransferFixture.make(notifyPort: 53, serial: "keep")
        defer { z.folder.remove() }
        let out = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
        #expect(out.status != 0)
        let lines = try String(contentsOfFile: z.path + "/meridian.yaml", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex { $0.contains("serial: keep") }) + 1
        #expect(out.stderr.contains("meridian.yaml:\(line):11: transfers serial: keep cannot be used for example.com."), "\(out.combined)")
        // Left to the default, the zone is served with unixtime.
        try z.folder.write("meridian.yaml", contents: (try String(contentsOfFile: z.path + "/meridian.yaml", encoding: .utf8))
            .replacingOccurrences(of: "  serial: keep", with: ""))
        let ok = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
        #expect(ok.status == 0, "\(ok.combined)")
    }
}
