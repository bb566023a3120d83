import DNSWire
import Foundation
import Testing
import TestSupport

/// Checks of the test harness itself: the dig parser on captured output, and the NSD
/// reference, the raw client and the answer table against the real NSD.
@Suite("Harness")
struct HarnessTests {
    static let fullOutput = """

        ; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 15353 wWw.ExAmple.com A +subnet=192.0.2.0/24
        ; (1 server found)
        ;; global options: +cmd
        ;; Got answer:
        ;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 43209
        ;; flags: qr aa; QUERY: 1, ANSWER: 2, AUTHORITY: 1, ADDITIONAL: 2

        ;; OPT PSEUDOSECTION:
        ; EDNS: version: 0, flags: do; udp: 1232
        ; CLIENT-SUBNET: 192.0.2.0/24/0
        ; NSID: 6d 31 ("m1")
        ;; QUESTION SECTION:
        ;wWw.ExAmple.com.\t\tIN\tA

        ;; ANSWER SECTION:
        wWw.ExAmple.com.\t3600\tIN\tA\t192.0.2.10
        wWw.ExAmple.com.   3600 IN  A    192.0.2.11

        ;; AUTHORITY SECTION:
        ExAmple.com.\t\t3600\tIN\tNS\tns1.ExAmple.com.

        ;; ADDITIONAL SECTION:
        txt.example.com.\t3600\tIN\tTXT\t"a  b"   "c"

        ;; Query time: 4 msec
        ;; MSG SIZE  rcvd: 172

        """

    @Test func parsesFullOutput() {
        let r = DigResult(parsing: Self.fullOutput)
        #expect(r.status == "NOERROR")
        #expect(r.opcode == "QUERY")
        #expect(r.id == 43209)
        #expect(r.flags == ["qr", "aa"])
        #expect(r.counts["ANSWER"] == 2 && r.counts["ADDITIONAL"] == 2)
        #expect(r.question == "wWw.ExAmple.com. IN A")
        #expect(r.answer.map(\.normalized) == ["www.example.com. 3600 IN A 192.0.2.10", "www.example.com. 3600 IN A 192.0.2.11"])
        #expect(r.answer.first?.owner == "wWw.ExAmple.com.")
        #expect(r.authority.map(\.normalized) == ["example.com. 3600 IN NS ns1.example.com."])
        #expect(r.additional.map(\.normalized) == ["txt.example.com. 3600 IN TXT \"a  b\" \"c\""])
        #expect(r.ednsVersion == 0 && r.udpSize == 1232 && r.ednsFlags == ["do"])
        #expect(r.clientSubnet == "192.0.2.0/24/0")
        #expect(r.nsid == "6d 31 (\"m1\")")
        #expect(r.notes.isEmpty)
    }

    @Test func parsesShortOutputAndTimeouts() {
        let short = DigResult(parsing: "www.example.com.\t3600\tIN\tA\t192.0.2.10\n")
        #expect(short.answer.map(\.normalized) == ["www.example.com. 3600 IN A 192.0.2.10"])
        #expect(!short.gotReply)
        let timedOut = DigResult(parsing: ";; communications error to 127.0.0.1#1: timed out\n;; no servers could be reached\n")
        #expect(!timedOut.gotReply)
        #expect(timedOut.notes.count == 2)
        let badvers = DigResult(parsing: ";; ->>HEADER<<- opcode: QUERY, status: BADVERS, id: 1\n;; flags: qr; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1\n")
        #expect(badvers.status == "BADVERS" && badvers.flags == ["qr"] && badvers.ednsVersion == nil)
    }

    @Test func splitsBatchOutput() {
        let two = Self.fullOutput + Self.fullOutput.replacingOccurrences(of: "status: NOERROR", with: "status: NXDOMAIN")
        let rs = DigResult.splitBatch(two)
        #expect(rs.map(\.status) == ["NOERROR", "NXDOMAIN"])
    }

    @Test func scansZoneOrigins() throws {
        let zones = try ZoneFileEntry.scan(Fixtures.zones)
        #expect(zones == [ZoneFileEntry(origin: "example.com.", fileName: "example.com.zone"),
                          ZoneFileEntry(origin: "example.net.", fileName: "example.net.zone")])
    }

    @Test func freePortsAreUsable() throws {
        let a = try freePort()
        let b = try freePort()
        #expect(a > 0 && b > 0)
    }

    @Test func nothingListeningMeansNoAnswer() throws {
        let port = try freePort()
        let reply = try RawDNSClient(port: port).udpExchange(RawQuery(name: "example.com.").bytes(), timeout: .milliseconds(300))
        #expect(reply == nil)
    }

    @Test func missingBinaryFailsClearly() async throws {
        await #expect(throws: ProcessError.self) {
            _ = try await runCommand("/nonexistent/meridian", [])
        }
    }

    /// The answer table is validated against NSD, so a wrong expectation shows up here
    /// and not as a false Meridian bug.
    @Test func nsdGivesTheTableAnswers() async throws {
        try await withNSD { nsd in
            for c in answerTable {
                let r = try await Dig.query(c.name, c.type, port: nsd.port)
                c.check(r, server: "nsd")
            }
        }
    }

    /// The raw client against NSD: pipelined TCP, QR=1 dropped, QDCOUNT=2 refused.
    @Test func rawClientAgainstNSD() async throws {
        try await withNSD { nsd in
            let client = RawDNSClient(port: nsd.port)
            let ids: [UInt16] = [101, 102, 103]
            let conn = try client.tcpConnect()
            try conn.sendRaw(ids.flatMap { TCPConnection.frame(RawQuery(id: $0, name: "www.example.com.").bytes()) })
            var got: [UInt16] = []
            for _ in ids { if let m = try conn.receiveFramed() { got.append(DNSReply(m).id) } }
            #expect(got.sorted() == ids)
            conn.close()

            var resp = RawQuery(name: "www.example.com.")
            resp.flags = HeaderFlags.qr
            #expect(try client.udpExchange(resp.bytes(), timeout: .milliseconds(500)) == nil)

            var two = RawQuery(name: "www.example.com.")
            two.qdcountOverride = 2
            let reply = try #require(try client.udpExchange(two.bytes()))
            #expect(DNSReply(reply).rcode == RCode.formErr.rawValue)
        }
    }

    @Test func nsdTruncatesWithoutEDNSAndAnswersOverTCP() async throws {
        try await withNSD { nsd in
            let udp = try await Dig.query("big.example.com", "A", port: nsd.port, options: ["+noedns", "+ignore"])
            #expect(udp.tc)
            let tcp = try await Dig.query("big.example.com", "A", port: nsd.port, options: ["+tcp"])
            #expect(!tcp.tc && tcp.answer.count == 40)
        }
    }
}

@Test func temporaryZoneFolderIsAPrivateCopy() throws {
    let folder = try TemporaryZoneFolder(copying: Fixtures.zones)
    defer { folder.remove() }
    #expect(try ZoneFileEntry.scan(folder.path).count == 2)
    try folder.write("example.net.zone", contents: "; changed\n")
    #expect(try folder.read("example.net.zone") == "; changed\n")
    #expect(try String(contentsOfFile: Fixtures.zones + "/example.net.zone", encoding: .utf8).contains("203.0.113.10"))
}
