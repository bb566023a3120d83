import DNSWire
import Foundation
import Synchronization
import Testing
import TestSupport

/// A signed example.com in a temporary folder: static records, a wildcard, an empty
/// non-terminal, two delegations (one with DS), a large TXT RRset, and GSLB names (`geo`
/// by the client's network, `edge` answering a CNAME), with keys made by `meridian keygen`.
struct SignedZone {
    let folder: TemporaryZoneFolder
    var path: String { folder.path }
    var keys: String { folder.path + "/keys" }
    /// The DS records `keygen` printed for the key-signing keys.
    var ds: [String] = []

    /// `many`: an RRset of 300 records, more than a fixed 256-entry table would hold.
    static let manyRecords = 300
    static let zone = """
        $ORIGIN example.com.
        $TTL 2
        @ 2 IN SOA ns1 hostmaster 1 3600 600 86400 2
        @ IN NS ns1
        ns1 IN A 127.0.0.1
        www IN A 192.0.2.1
        www IN A 192.0.2.2
        alias IN CNAME www
        *.wild IN A 192.0.2.9
        a.b.ent IN TXT "deep"
        sub IN NS ns.sub
        ns.sub IN A 192.0.2.53
        secure IN NS ns.secure
        secure IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
        big IN TXT "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        big IN TXT "1123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        big IN TXT "2123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        big IN TXT "3123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"

        """ + (0..<manyRecords).map { "many IN A 10.1.\($0 >> 8).\($0 & 255)\n" }.joined()

    static let config = """
        defaults: { ttl: 2 }
        zones:
          example.com:
            file: example.com.zone
            dnssec: { keys: keys }
            names:
              geo:
                policy:
                  geo:
                    office: iad
                    default: fra
              edge:
                policy: cdn
        geo:
          cidr:
            203.0.113.0/24: office
        datacenters:
          fra: { lat: 50.11, lon: 8.68, country: DE, continent: EU }
          iad: { lat: 38.95, lon: -77.45, country: US, continent: NA }
        endpoints:
          fra-1: { v4: 192.0.2.3, dc: fra }
          iad-1: { v4: 198.51.100.1, dc: iad }
          cdn: { cname: www.example.com. }

        """

    /// Writes the zone and config and makes keys: `roles` as `meridian keygen --role` takes them.
    static func make(algorithm: Int = 13, roles: [String] = ["ksk", "zsk"]) async throws -> SignedZone {
        let dir = try makeTemporaryDirectory(prefix: "meridian-dnssec")
        let folder = try TemporaryZoneFolder(copying: dir.path)
        try? FileManager.default.removeItem(at: dir)
        try folder.write("example.com.zone", contents: zone)
        try folder.write("meridian.yaml", contents: config)
        try FileManager.default.createDirectory(atPath: folder.path + "/keys", withIntermediateDirectories: true)
        var z = SignedZone(folder: folder)
        for role in roles {
            let out = try await z.keygen(algorithm: algorithm, role: role)
            z.ds += out.stdout.split(separator: "\n").filter { $0.contains(" IN DS ") }.map(String.init)
        }
        return z
    }

    @discardableResult
    func keygen(algorithm: Int = 13, role: String) async throws -> CommandOutput {
        let out = try await MeridianProcess.run(["keygen", "example.com", "--algorithm", "\(algorithm)", "--role", role, "--dir", keys])
        #expect(out.status == 0, "keygen: \(out.combined)")
        return out
    }

    func serve() async throws -> MeridianProcess {
        var server: MeridianProcess?
        for _ in 0..<3 where server == nil {
            let port = try freePort()
            server = try? await MeridianProcess.start(["serve", "--config", path + "/meridian.yaml", "--listen", "127.0.0.1:\(port)"], port: port)
        }
        return try #require(server, "meridian serve did not start")
    }

    /// A delv trust-anchors file for the zone's key-signing keys.
    func anchorFile() throws -> String {
        var lines: [String] = []
        for f in try FileManager.default.contentsOfDirectory(atPath: keys) where f.hasSuffix(".key") {
            let text = try String(contentsOfFile: keys + "/" + f, encoding: .utf8)
            for line in text.split(separator: "\n") where !line.hasPrefix(";") {
                let t = line.split(separator: " ")
                guard t.count >= 7, t[3] == "257" else { continue }
                lines.append("trust-anchors { \(t[0]) static-key \(t[3]) \(t[4]) \(t[5]) \"\(t[6...].joined())\"; };")
            }
        }
        let file = path + "/anchor.conf"
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

func withSigned(algorithm: Int = 13, roles: [String] = ["ksk", "zsk"], _ body: (SignedZone, MeridianProcess) async throws -> Void) async throws {
    let z = try await SignedZone.make(algorithm: algorithm, roles: roles)
    defer { z.folder.remove() }
    let s = try await z.serve()
    do { try await body(z, s) } catch { await s.stop(); throw error }
    #expect(s.isRunning, "meridian died; log:\n\(s.logText)")
    await s.stop()
}

func withUnbound(stubPort: UInt16, ds: String, _ body: (UnboundServer) async throws -> Void) async throws {
    let ub = try await UnboundServer.start(zone: "example.com.", stubPort: stubPort, trustAnchor: ds)
    do { try await body(ub) } catch { await ub.stop(); throw error }
    await ub.stop()
}

let hasDelv = findExecutable("delv") != nil

/// Issue 16: online DNSSEC signing, checked by real validators (delv, Unbound).
@Suite("DNSSEC end to end", .serialized)
struct DNSSECEndToEndTests {
    @Test("keygen writes BIND key files that check loads, and check prints the DS that keygen printed")
    func keygenAndCheck() async throws {
        for (alg, roles) in [(13, ["ksk", "zsk"]), (15, ["csk"])] {
            let z = try await SignedZone.make(algorithm: alg, roles: roles)
            defer { z.folder.remove() }
            let names = try FileManager.default.contentsOfDirectory(atPath: z.keys).sorted()
            #expect(names.count == 2 * roles.count)
            #expect(names.allSatisfy { $0.hasPrefix("Kexample.com.+0\(alg)+") })
            let check = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
            #expect(check.status == 0, "\(check.combined)")
            #expect(z.ds.count == 1)
            for d in z.ds { #expect(check.stdout.contains(d), "check output lacks \(d):\n\(check.stdout)") }
            #expect(check.stdout.contains("zone example.com.: signed online"))
        }
    }

    @Test("Keys made by BIND's dnssec-keygen in DIR/keys sign a zone served with --zones DIR, and delv validates it",
          .enabled(if: hasDelv && findExecutable("dnssec-keygen") != nil))
    func bindKeysWithZonesFolder() async throws {
        let z = try await SignedZone.make(roles: [])
        defer { z.folder.remove() }
        try FileManager.default.removeItem(atPath: z.path + "/meridian.yaml")
        let keygen = try #require(findExecutable("dnssec-keygen"))
        for flags in [["-f", "KSK"], []] {
            let out = try await runCommand(keygen, ["-q", "-a", "ECDSAP256SHA256"] + flags + ["-K", z.keys, "example.com"])
            #expect(out.status == 0, "\(out.combined)")
        }
        let check = try await MeridianProcess.run(["check", "--zones", z.path])
        #expect(check.stdout.contains("zone example.com.: signed online"), "\(check.combined)")
        // The key tags Meridian computes are the ones BIND put in the file names.
        for f in try FileManager.default.contentsOfDirectory(atPath: z.keys) where f.hasSuffix(".key") {
            let tag = Int(f.split(separator: "+").last!.dropLast(4))!
            #expect(check.stdout.contains("13/\(tag)"), "tag \(tag) of \(f) not in:\n\(check.stdout)")
        }
        #expect(check.stdout.contains("example.com. IN DS "), "\(check.combined)")
        let s = try await MeridianProcess.serve(zones: z.path)
        defer { Task { await s.stop() } }
        let anchor = try z.anchorFile()
        for (name, type, expected) in [("www.example.com", "A", "; fully validated"), ("nope.example.com", "A", "; negative response, fully validated")] {
            let out = try await runCommand(try #require(findExecutable("delv")),
                                           ["-a", anchor, "@127.0.0.1", "-p", "\(s.port)", name, type, "+root=example.com"])
            #expect(out.combined.contains(expected), "delv \(name) \(type):\n\(out.combined)")
        }
        await s.stop()
        // A KSK of one algorithm with a ZSK of another is refused (RFC 6840 5.11).
        _ = try await runCommand(keygen, ["-q", "-a", "ED25519", "-K", z.keys, "example.com"])
        let mixed = try await MeridianProcess.run(["check", "--zones", z.path])
        #expect(mixed.status != 0 && mixed.stderr.contains("must use the same algorithms"), "\(mixed.combined)")
    }

    @Test("Bad key files are refused by check with the file and line")
    func badKeyFiles() async throws {
        let z = try await SignedZone.make(roles: ["csk"])
        defer { z.folder.remove() }
        let keyFile = try #require(try FileManager.default.contentsOfDirectory(atPath: z.keys).first { $0.hasSuffix(".key") })
        let keyPath = z.keys + "/" + keyFile
        let good = try String(contentsOfFile: keyPath, encoding: .utf8)
        // Algorithm 8 in the DNSKEY line (line 5, after four comment lines).
        try good.replacingOccurrences(of: " 257 3 13 ", with: " 257 3 8 ").write(toFile: keyPath, atomically: true, encoding: .utf8)
        var out = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
        #expect(out.status != 0)
        #expect(out.stderr.contains("\(keyPath):5:1: unsupported algorithm \"8\""), "\(out.stderr)")
        // A private key that is not the public key's half.
        try good.write(toFile: keyPath, atomically: true, encoding: .utf8)
        let privatePath = String(keyPath.dropLast(4)) + ".private"
        let priv = try String(contentsOfFile: privatePath, encoding: .utf8)
        let other = priv.split(separator: "\n").map { $0.hasPrefix("PrivateKey:") ? "PrivateKey: AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=" : String($0) }
        try other.joined(separator: "\n").write(toFile: privatePath, atomically: true, encoding: .utf8)
        out = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
        #expect(out.status != 0)
        #expect(out.stderr.contains("\(privatePath):1:1: the private key does not match the public key"), "\(out.stderr)")
        // A bad PrivateKey line names its line.
        let broken = priv.split(separator: "\n").map { $0.hasPrefix("PrivateKey:") ? "PrivateKey: !!!" : String($0) }
        try broken.joined(separator: "\n").write(toFile: privatePath, atomically: true, encoding: .utf8)
        out = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
        #expect(out.stderr.contains("\(privatePath):3:1: bad PrivateKey"), "\(out.stderr)")
        // No key files at all for a zone with a dnssec block.
        for f in try FileManager.default.contentsOfDirectory(atPath: z.keys) { try FileManager.default.removeItem(atPath: z.keys + "/" + f) }
        out = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
        #expect(out.stderr.contains("meridian.yaml:5:21: zone example.com.: no key files Kexample.com.+*.key"), "\(out.stderr)")
    }

    @Test("delv validates answers with the zone's key as trust anchor (ECDSA KSK+ZSK, Ed25519 CSK)",
          .enabled(if: hasDelv), arguments: [13, 15])
    func delvValidates(_ algorithm: Int) async throws {
        try await withSigned(algorithm: algorithm, roles: algorithm == 13 ? ["ksk", "zsk"] : ["csk"]) { z, s in
            let anchor = try z.anchorFile()
            let cases: [(String, String, String)] = [
                ("www.example.com", "A", "; fully validated"),
                // Too big for UDP: delv asks again over TCP; the 300-record RRset is signed.
                ("many.example.com", "A", "; fully validated"),
                ("x.wild.example.com", "A", "; fully validated"),
                ("alias.example.com", "A", "; fully validated"),
                ("geo.example.com", "A", "; fully validated"),
                ("example.com", "DNSKEY", "; fully validated"),
                ("secure.example.com", "DS", "; fully validated"),
                ("nope.example.com", "A", "; negative response, fully validated"),
                ("www.example.com", "AAAA", "; negative response, fully validated"),
                ("ent.example.com", "TXT", "; negative response, fully validated"),
                ("sub.example.com", "DS", "; negative response, fully validated"),
            ]
            for (name, type, expected) in cases {
                let out = try await runCommand(try #require(findExecutable("delv")),
                                               ["-a", anchor, "@127.0.0.1", "-p", "\(s.port)", name, type, "+root=example.com"])
                #expect(out.combined.contains(expected), "delv \(name) \(type):\n\(out.combined)")
            }
        }
    }

    @Test("A validating Unbound returns AD for static, GSLB per ECS subnet, CNAME, wildcard, NXDOMAIN, NODATA, delegation and DNSKEY answers",
          .enabled(if: UnboundServer.isAvailable))
    func unboundValidates() async throws {
        try await withSigned { z, s in
            try await withUnbound(stubPort: s.port, ds: try #require(z.ds.first)) { ub in
                struct Case { var name: String; var type: String; var options: [String] = []; var status = "NOERROR"; var answer: String? = nil }
                let cases = [
                    Case(name: "www.example.com", type: "A", answer: "192.0.2.1"),
                    Case(name: "geo.example.com", type: "A", options: ["+subnet=203.0.113.0/24"], answer: "198.51.100.1"),
                    Case(name: "geo.example.com", type: "A", options: ["+subnet=192.0.2.0/24"], answer: "192.0.2.3"),
                    Case(name: "alias.example.com", type: "A", answer: "192.0.2.2"),
                    Case(name: "edge.example.com", type: "A", answer: "192.0.2.1"),
                    Case(name: "x.wild.example.com", type: "A", answer: "192.0.2.9"),
                    Case(name: "nope.example.com", type: "A"),
                    Case(name: "www.example.com", type: "AAAA"),
                    Case(name: "ent.example.com", type: "TXT"),
                    Case(name: "secure.example.com", type: "DS", answer: "12345 13 2"),
                    Case(name: "sub.example.com", type: "DS"),
                    Case(name: "example.com", type: "DNSKEY", answer: "257 3 13"),
                    Case(name: "example.com", type: "CDS", answer: "13 2"),
                ]
                for c in cases {
                    let r = try await Dig.query(c.name, c.type, port: ub.port, options: ["+dnssec", "+rec"] + c.options)
                    let what = "\(c.name) \(c.type) \(c.options)"
                    #expect(r.status == c.status, "\(what): \(r)\nunbound:\n\(ub.logText)")
                    #expect(r.flags.contains("ad"), "\(what) not AD: \(r)\nunbound:\n\(ub.logText)")
                    if let a = c.answer {
                        #expect(r.answer.contains { $0.rdata.contains(a) }, "\(what): \(r)")
                        #expect(r.answer.contains { $0.type == "RRSIG" }, "\(what): \(r)")
                    } else {
                        #expect(r.answer.filter { $0.type != "RRSIG" && $0.type != "CNAME" }.isEmpty, "\(what): \(r)")
                    }
                }
            }
        }
    }

    @Test("Answers changed on the way (a proxy flipping address bytes) make Unbound SERVFAIL",
          .enabled(if: UnboundServer.isAvailable))
    func tamperingIsCaught() async throws {
        try await withSigned { z, s in
            // 192.0.2.1 (www's first address) becomes 192.0.2.99 in every answer.
            let proxy = try TamperingUDPProxy(upstream: s.port, find: [192, 0, 2, 1], replace: [192, 0, 2, 99])
            defer { proxy.stop() }
            try await withUnbound(stubPort: proxy.port, ds: try #require(z.ds.first)) { ub in
                // Untouched answers through the same proxy validate: the proxy itself is sound.
                let key = try await Dig.query("example.com", "DNSKEY", port: ub.port, options: ["+dnssec", "+rec"])
                #expect(key.status == "NOERROR" && key.flags.contains("ad"), "\(key)")
                let r = try await Dig.query("www.example.com", "A", port: ub.port, options: ["+dnssec", "+rec"])
                #expect(r.status == "SERVFAIL", "tampered answer accepted: \(r)")
                #expect(proxy.tampered.load(ordering: .relaxed) > 0)
                // Straight to Meridian, the same name validates.
                let direct = try await Dig.query("www.example.com", "A", port: s.port, options: ["+dnssec"])
                #expect(direct.answer.contains { $0.rdata == "192.0.2.1" })
            }
        }
    }

    @Test("Signatures only with DO; compact denial only with DO; TC when the signed answer outgrows UDP, whole over TCP; ANY answers one signed RRset")
    func interactions() async throws {
        try await withSigned { _, s in
            let plain = try await Dig.query("www.example.com", "A", port: s.port)
            #expect(!plain.answer.contains { $0.type == "RRSIG" })
            let nx = try await Dig.query("nope.example.com", "A", port: s.port)
            #expect(nx.status == "NXDOMAIN")
            let nxSigned = try await Dig.query("nope.example.com", "A", port: s.port, options: ["+dnssec"])
            #expect(nxSigned.status == "NOERROR")
            #expect(nxSigned.authority.contains { $0.type == "NSEC" && $0.rdata == "\\000.nope.example.com. RRSIG NSEC TYPE128" }, "\(nxSigned)")
            #expect(nxSigned.authority.contains { $0.type == "RRSIG" && $0.rdata.hasPrefix("SOA ") })
            // 4 TXT records of 100 bytes fit in 512 unsigned, not with their RRSIG.
            let small = try await Dig.query("big.example.com", "TXT", port: s.port, options: ["+bufsize=512", "+ignore"])
            #expect(!small.flags.contains("tc") && small.answer.count == 4, "\(small)")
            let signedUDP = try await Dig.query("big.example.com", "TXT", port: s.port, options: ["+bufsize=512", "+ignore", "+dnssec"])
            #expect(signedUDP.flags.contains("tc") && signedUDP.answer.isEmpty, "\(signedUDP)")
            let signedTCP = try await Dig.query("big.example.com", "TXT", port: s.port, options: ["+tcp", "+dnssec"])
            #expect(signedTCP.answer.count == 5 && signedTCP.answer.contains { $0.type == "RRSIG" }, "\(signedTCP)")
            let any = try await Dig.query("www.example.com", "ANY", port: s.port, options: ["+dnssec"])
            #expect(Set(any.answer.map(\.type)) == ["A", "RRSIG"], "\(any)")
            // Referrals: the NS RRset unsigned (the child's), with the signed DS, or a signed
            // NSEC at the cut without DS (an insecure delegation).
            let insecure = try await Dig.query("www.sub.example.com", "A", port: s.port, options: ["+dnssec"])
            #expect(insecure.authority.contains { $0.type == "NSEC" && $0.rdata == "\\000.sub.example.com. NS RRSIG NSEC" }, "\(insecure)")
            #expect(insecure.authority.contains { $0.type == "RRSIG" && $0.rdata.hasPrefix("NSEC ") }, "\(insecure)")
            #expect(!insecure.authority.contains { $0.type == "RRSIG" && $0.rdata.hasPrefix("NS ") }, "\(insecure)")
            let secure = try await Dig.query("www.secure.example.com", "A", port: s.port, options: ["+dnssec"])
            #expect(secure.authority.contains { $0.type == "DS" } && secure.authority.contains { $0.type == "RRSIG" && $0.rdata.hasPrefix("DS ") },
                    "\(secure)")
            // GSLB answers per client subnet, each signed over its own addresses.
            for (subnet, address) in [("203.0.113.0/24", "198.51.100.1"), ("192.0.2.0/24", "192.0.2.3")] {
                let g = try await Dig.query("geo.example.com", "A", port: s.port, options: ["+dnssec", "+subnet=\(subnet)"])
                #expect(g.answer.contains { $0.rdata == address } && g.answer.contains { $0.type == "RRSIG" }, "\(g)")
            }
        }
    }

    @Test("CO (RFC 9824): with DO and CO a missing name is NXDOMAIN with the same signed NXNAME proof and CO echoed; without CO, NOERROR; delv validates the records both forms carry",
          .enabled(if: hasDelv))
    func compactAnswersOK() async throws {
        try await withSigned { z, s in
            let client = RawDNSClient(host: "127.0.0.1", port: s.port)
            func ask(_ name: String, _ type: RRType, dnssec: Bool = true, compact: Bool) throws -> Message {
                var q = RawQuery(name: name, type: type)
                q.edns = .init(udpSize: 1232, dnssecOK: dnssec, compactOK: compact)
                let reply = try #require(try client.udpExchange(q.bytes()), "no answer to \(name) \(type)")
                return try Message(decoding: reply)
            }
            func flags(_ m: Message) -> UInt32 { (m.opt?.ttl ?? 0) & 0xFFFF }
            let nxname = RRType.nxname.rawValue
            func listsNXNAME(_ m: Message) -> Bool {
                // NSEC rdata: next name, then window 0 whose bitmap has bit 128 (octet 16, 0x80).
                m.authority.contains { r in
                    guard r.type == .nsec, let e = try? r.rdata.withUnsafeBytes({ try Wire.readName($0, at: 0) }),
                          e + 2 + 17 <= r.rdata.count, r.rdata[e] == 0 else { return false }
                    return r.rdata[e + 2 + Int(nxname / 8)] & UInt8(0x80 >> (nxname % 8)) != 0
                }
            }
            let co = try ask("nope.example.com.", .a, compact: true)
            #expect(co.rcode == .nxDomain, "\(co)")
            #expect(flags(co) & 0x4000 != 0 && flags(co) & 0x8000 != 0, "CO and DO echoed: \(String(flags(co), radix: 16))")
            #expect(listsNXNAME(co), "\(co.authority)")
            #expect(co.authority.contains { $0.type == .rrsig } && co.authority.contains { $0.type == .soa })
            let plain = try ask("nope.example.com.", .a, compact: false)
            #expect(plain.rcode == .noError, "\(plain)")
            #expect(flags(plain) & 0x4000 == 0)
            // Same records and signatures (they cover the RRsets, not the rcode): what
            // validates in the NOERROR form below validates in the NXDOMAIN form.
            #expect(Set(co.authority) == Set(plain.authority), "CO:\n\(co.authority)\nplain:\n\(plain.authority)")
            // NODATA and existing names are NOERROR either way; without DO, CO changes nothing.
            let nodata = try ask("www.example.com.", .aaaa, compact: true)
            #expect(nodata.rcode == .noError && nodata.answers.isEmpty && !listsNXNAME(nodata), "\(nodata)")
            let exists = try ask("www.example.com.", .a, compact: true)
            #expect(exists.rcode == .noError && exists.answers.contains { $0.type == .rrsig }, "\(exists)")
            let unsigned = try ask("nope.example.com.", .a, dnssec: false, compact: true)
            #expect(unsigned.rcode == .nxDomain && !unsigned.authority.contains { $0.type == .nsec }, "\(unsigned)")
            #expect(flags(unsigned) & 0x4000 == 0)
            // CO is echoed on a TC answer too (4 TXT records and their RRSIG outgrow 512 bytes).
            var big = RawQuery(name: "big.example.com.", type: .txt)
            big.edns = .init(udpSize: 512, dnssecOK: true, compactOK: true)
            let tc = try Message(decoding: try #require(try client.udpExchange(big.bytes())))
            #expect(tc.has(HeaderFlags.tc) && flags(tc) & 0x4000 != 0, "\(tc)")
            // RFC 9824 3.5: NXNAME itself is not a type to ask for.
            let explicit = try ask("www.example.com.", RRType(nxname), compact: true)
            #expect(explicit.rcode == .formErr, "explicit NXNAME query: \(explicit)")
            // dig sets CO with +coflag (Debian 12: 9.18.49) and prints it back among the EDNS flags.
            let dig = try await Dig.query("nope.example.com", "A", port: s.port, options: ["+dnssec", "+coflag"])
            #expect(dig.status == "NXDOMAIN" && dig.ednsFlags == ["do", "co"], "\(dig.raw)")
            #expect(dig.authority.contains { $0.type == "NSEC" && $0.rdata == "\\000.nope.example.com. RRSIG NSEC TYPE128" }, "\(dig.raw)")
            let out = try await runCommand(try #require(findExecutable("delv")),
                                           ["-a", try z.anchorFile(), "@127.0.0.1", "-p", "\(s.port)", "nope.example.com", "A", "+root=example.com"])
            #expect(out.combined.contains("; negative response, fully validated"), "delv:\n\(out.combined)")
        }
    }

    @Test("Signatures of unchanged RRsets survive a reload; a removed key's signatures are never served")
    func cacheAcrossReloads() async throws {
        try await withSigned { z, s in
            func rrsig(_ name: String) async throws -> [String] {
                try await Dig.query(name, "A", port: s.port, options: ["+dnssec"]).answer.filter { $0.type == "RRSIG" }.map(\.rdata)
            }
            let before = try await rrsig("www.example.com")
            s.signal(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await rrsig("www.example.com") == before, "a reload with the same keys re-signed an unchanged RRset")
            // A second ZSK, then the first one removed: only the new key's tag signs.
            let zsk = try FileManager.default.contentsOfDirectory(atPath: z.keys).filter { $0.hasSuffix(".key") }
                .first { (try? String(contentsOfFile: z.keys + "/" + $0, encoding: .utf8))?.contains("DNSKEY 256") == true }
            let oldZSK = try #require(zsk)
            let oldTag = String(oldZSK.split(separator: "+").last!.dropLast(4))
            try await z.keygen(role: "zsk")
            for f in [oldZSK, String(oldZSK.dropLast(4)) + ".private"] { try FileManager.default.removeItem(atPath: z.keys + "/" + f) }
            s.signal(SIGHUP)
            var after: [String] = before
            for _ in 0..<50 where after == before {
                try await Task.sleep(for: .milliseconds(100))
                after = try await rrsig("www.example.com")
            }
            #expect(after.count == 1)
            #expect(!after.contains { $0.contains(" \(Int(oldTag)!) example.com.") }, "old ZSK \(oldTag) still signs: \(after)")
        }
    }

    @Test("A KSK roll: both KSKs sign the DNSKEY RRset and CDS lists both; validators trusting the old DS, then the new one, stay secure",
          .enabled(if: UnboundServer.isAvailable), .timeLimit(.minutes(2)))
    func kskRoll() async throws {
        try await withSigned { z, s in
            let oldDS = try #require(z.ds.first)
            let oldKSK = try #require(try FileManager.default.contentsOfDirectory(atPath: z.keys).filter { $0.hasSuffix(".key") }
                .first { (try? String(contentsOfFile: z.keys + "/" + $0, encoding: .utf8))?.contains("DNSKEY 257") == true })
            let made = try await z.keygen(role: "ksk")
            let newDS = try #require(made.stdout.split(separator: "\n").first { $0.contains(" IN DS ") }.map(String.init))
            s.signal(SIGHUP)
            var keys = try await Dig.query("example.com", "DNSKEY", port: s.port, options: ["+dnssec"])
            for _ in 0..<50 where keys.answer.filter({ $0.type == "DNSKEY" }).count < 3 {
                try await Task.sleep(for: .milliseconds(100))
                keys = try await Dig.query("example.com", "DNSKEY", port: s.port, options: ["+dnssec"])
            }
            #expect(keys.answer.filter { $0.type == "RRSIG" }.count == 2, "\(keys)")
            let cds = try await Dig.query("example.com", "CDS", port: s.port)
            #expect(cds.answer.count == 2, "\(cds)")
            let check = try await MeridianProcess.run(["check", "--config", z.path + "/meridian.yaml"])
            #expect(check.stdout.contains(oldDS) && check.stdout.contains(newDS), "\(check.stdout)")
            for ds in [oldDS, newDS] {
                try await withUnbound(stubPort: s.port, ds: ds) { ub in
                    let r = try await Dig.query("www.example.com", "A", port: ub.port, options: ["+dnssec", "+rec"])
                    #expect(r.status == "NOERROR" && r.flags.contains("ad"), "trusting \(ds): \(r)")
                }
            }
            for f in [oldKSK, String(oldKSK.dropLast(4)) + ".private"] { try FileManager.default.removeItem(atPath: z.keys + "/" + f) }
            s.signal(SIGHUP)
            for _ in 0..<50 where keys.answer.filter({ $0.type == "DNSKEY" }).count > 2 {
                try await Task.sleep(for: .milliseconds(100))
                keys = try await Dig.query("example.com", "DNSKEY", port: s.port, options: ["+dnssec"])
            }
            #expect(keys.answer.filter { $0.type == "RRSIG" }.count == 1, "\(keys)")
            try await withUnbound(stubPort: s.port, ds: newDS) { ub in
                let r = try await Dig.query("www.example.com", "A", port: ub.port, options: ["+dnssec", "+rec"])
                #expect(r.status == "NOERROR" && r.flags.contains("ad"), "trusting the new DS: \(r)")
            }
        }
    }

    @Test("A ZSK roll (add a key, reload, remove the old one, reload) under a query loop through Unbound: no lost query, no bogus answer",
          .enabled(if: UnboundServer.isAvailable), .timeLimit(.minutes(2)))
    func zskRollUnderLoad() async throws {
        try await withSigned { z, s in
            try await withUnbound(stubPort: s.port, ds: try #require(z.ds.first)) { ub in
                let client = RawDNSClient(port: ub.port)
                let stop = Atomic<Bool>(false)
                // The loop: DO queries with RD, each must come back NOERROR, AD, with an answer.
                let loop = Task { () -> (ok: Int, bad: [String]) in
                    var ok = 0
                    var bad: [String] = []
                    for i in 0..<2000 where !stop.load(ordering: .relaxed) {
                        var q = RawQuery(id: UInt16(truncatingIfNeeded: i), name: i % 2 == 0 ? "www.example.com." : "x.wild.example.com.", type: .a)
                        q.flags = HeaderFlags.rd
                        q.edns = .init(dnssecOK: true)
                        guard let bytes = try? client.udpExchange(q.bytes(), timeout: .seconds(3)) else { bad.append("query \(i): no answer"); continue }
                        let r = DNSReply(bytes)
                        if r.rcode != 0 || r.flags & HeaderFlags.ad == 0 || r.ancount == 0 {
                            bad.append("query \(i): rcode \(r.rcode) flags \(String(r.flags, radix: 16)) answers \(r.ancount)")
                        } else {
                            ok += 1
                        }
                        try? await Task.sleep(for: .milliseconds(20))
                    }
                    return (ok, bad)
                }
                try await Task.sleep(for: .seconds(2))
                let zsk = try FileManager.default.contentsOfDirectory(atPath: z.keys).filter { $0.hasSuffix(".key") }
                    .first { (try? String(contentsOfFile: z.keys + "/" + $0, encoding: .utf8))?.contains("DNSKEY 256") == true }
                let oldZSK = try #require(zsk)
                try await z.keygen(role: "zsk")
                s.signal(SIGHUP)
                // Both ZSKs publish and sign; wait past the DNSKEY and record TTLs (2 s).
                try await Task.sleep(for: .seconds(4))
                for f in [oldZSK, String(oldZSK.dropLast(4)) + ".private"] { try FileManager.default.removeItem(atPath: z.keys + "/" + f) }
                s.signal(SIGHUP)
                try await Task.sleep(for: .seconds(4))
                stop.store(true, ordering: .relaxed)
                let (ok, bad) = await loop.value
                #expect(bad.isEmpty, "\(bad.count) bad answers: \(bad.prefix(5))\nunbound:\n\(ub.logText)")
                #expect(ok > 100, "only \(ok) answers")
                let keys = try await Dig.query("example.com", "DNSKEY", port: s.port, options: ["+dnssec"])
                #expect(keys.answer.filter { $0.type == "DNSKEY" }.count == 2, "the old ZSK is still published: \(keys)")
            }
        }
    }
}
