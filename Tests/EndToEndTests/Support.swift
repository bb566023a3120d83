import DNSWire
import Foundation
import Testing
import TestSupport

/// The fixture folders, located from this file so they are read in place.
enum Fixtures {
    static var root: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures") }
    /// example.com (every case the tests need) and example.net (a second zone, origin from its file name).
    static var zones: String { root.appendingPathComponent("zones").path }
    /// A zone with a bad A record at line 6, for `meridian check`.
    static var broken: String { root.appendingPathComponent("broken").path }
}

/// The negative-answer SOA lines: TTL = min(SOA TTL, SOA MINIMUM) per RFC 2308 section 5.
enum SOA {
    static let exampleCom = "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300"
    static let exampleNet = "example.net. 1800 IN SOA ns1.example.com. hostmaster.example.net. 7 3600 900 604800 3600"
}

/// Starts Meridian on the fixture zones, runs `body`, checks the server survived
/// (a crash on any input is a failure of its own), and stops it.
func withMeridian(zones: String = Fixtures.zones, extraArguments: [String] = [],
                  _ body: (MeridianProcess) async throws -> Void) async throws {
    let server = try await MeridianProcess.serve(zones: zones, extraArguments: extraArguments)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    #expect(server.isRunning, "meridian is no longer running; its log:\n\(server.logText)")
    await server.stop()
}

/// The first address of the answer to an A query, over a raw UDP client (no dig process per
/// poll, so a loop can poll every 20 ms); nil on no answer.
final class FirstAddress: @unchecked Sendable {
    // @unchecked: `id` is touched by the one task that polls.
    private let client: RawDNSClient
    private let name: DNSName
    private var id: UInt16 = 0

    init(port: UInt16, name: String) throws {
        client = RawDNSClient(host: "127.0.0.1", port: port)
        self.name = try DNSName(name)
    }

    func next() -> String? {
        id &+= 1
        let q = DNSWire.QueryBuilder.query(id: id, name: name, type: .a)
        guard let r = try? client.udpExchange(q, timeout: .seconds(1)), let m = try? Message(decoding: r) else { return nil }
        return m.answers.first.flatMap { IPAddress(bytes: $0.rdata)?.description }
    }
}

/// The server's resident memory in KiB (VmRSS, from /proc), or nil.
func residentKiB(_ server: MeridianProcess) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(server.child.pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
    return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
}

/// Polls `condition` every `every` (100 ms) for at most `limit` seconds; the seconds until
/// it held, or nil.
func secondsUntil(limit: Double, every: Duration = .milliseconds(100),
                  _ condition: () async throws -> Bool) async rethrows -> Double? {
    let t0 = Date()
    while Date().timeIntervalSince(t0) < limit {
        if try await condition() { return Date().timeIntervalSince(t0) }
        try? await Task.sleep(for: every)
    }
    return nil
}

/// Polls `body` every 50 ms until it returns true or `seconds` pass, then asks once more.
func eventually(_ seconds: Double = 5, _ body: () async throws -> Bool) async rethrows -> Bool {
    if try await secondsUntil(limit: seconds, every: .milliseconds(50), body) != nil { return true }
    return try await body()
}

/// Starts NSD on the fixture zones for the duration of `body`.
func withNSD(zones: String = Fixtures.zones, _ body: (NSDServer) async throws -> Void) async throws {
    let nsd = try await NSDServer.start(zonesDirectory: zones)
    do {
        try await body(nsd)
    } catch {
        await nsd.stop()
        throw error
    }
    await nsd.stop()
}

/// One row of the table of authoritative answers that both NSD and Meridian must give.
struct AnswerCase: CustomStringConvertible, Sendable {
    var name: String
    var type: String
    var status: String = "NOERROR"
    var aa: Bool = true
    /// Normalized answer lines (order ignored).
    var answer: [String] = []
    /// Normalized authority lines, checked when non-nil. Left nil for positive answers,
    /// where NSD adds the apex NS RRset and Meridian need not (RFC 2181 leaves it optional).
    var authority: [String]? = nil
    /// Normalized additional lines (OPT excluded), checked when non-nil.
    var additional: [String]? = nil
    var why: String

    var description: String { "\(name) \(type): \(why)" }

    /// Checks one parsed reply against the row; records issues through `#expect`.
    func check(_ r: DigResult, server: String) {
        let ctx = Comment(rawValue: "\(server): \(self)\n\(r.raw)")
        #expect(r.status == status, ctx)
        #expect(r.aa == aa, ctx)
        #expect(!r.flags.contains("ra"), ctx)
        #expect(r.answer.map(\.normalized).sorted() == answer.sorted(), ctx)
        if let authority { #expect(r.authority.map(\.normalized).sorted() == authority.sorted(), ctx) }
        if let additional { #expect(r.additional.map(\.normalized).sorted() == additional.sorted(), ctx) }
    }
}

/// The cases from issue 2's list, each with the RFC rule it shows.
let answerTable: [AnswerCase] = [
    AnswerCase(name: "www.example.com", type: "A",
               answer: ["www.example.com. 3600 IN A 192.0.2.10", "www.example.com. 3600 IN A 192.0.2.11"],
               why: "authoritative answer, AA set (RFC 1034 4.3.2 step 3a)"),
    AnswerCase(name: "www.example.com", type: "AAAA", answer: ["www.example.com. 3600 IN AAAA 2001:db8::10"], why: "AAAA"),
    AnswerCase(name: "example.com", type: "MX",
               answer: ["example.com. 3600 IN MX 10 mail.example.com.", "example.com. 3600 IN MX 20 mail.example.net."], why: "MX at the apex"),
    AnswerCase(name: "example.com", type: "NS",
               answer: ["example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.com."], why: "apex NS"),
    AnswerCase(name: "example.com", type: "SOA",
               answer: ["example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300"], why: "SOA"),
    AnswerCase(name: "example.com", type: "CAA", answer: ["example.com. 3600 IN CAA 0 issue \"letsencrypt.org\""], why: "CAA"),
    AnswerCase(name: "example.com", type: "TXT", answer: ["example.com. 3600 IN TXT \"v=spf1 -all\""], why: "TXT at the apex"),
    AnswerCase(name: "txt.example.com", type: "TXT",
               answer: ["txt.example.com. 3600 IN TXT \"hello world\" \"second string\"",
                        "txt.example.com. 3600 IN TXT \"semi;colon and \\\"quotes\\\"\""],
               why: "TXT with several strings and escapes"),
    AnswerCase(name: "_sip._tcp.example.com", type: "SRV", answer: ["_sip._tcp.example.com. 3600 IN SRV 10 60 5060 sip.example.com."], why: "SRV"),
    AnswerCase(name: "short.example.com", type: "A", answer: ["short.example.com. 60 IN A 192.0.2.60"], why: "TTL served as written"),
    AnswerCase(name: "nope.example.com", type: "A", status: "NXDOMAIN", authority: [SOA.exampleCom],
               why: "NXDOMAIN with SOA, negative TTL min(3600, 300) (RFC 2308 3, 5)"),
    AnswerCase(name: "www.example.com", type: "TXT", authority: [SOA.exampleCom], why: "NODATA with SOA (RFC 2308 2.2)"),
    AnswerCase(name: "b.ent.example.com", type: "A", authority: [SOA.exampleCom], why: "empty non-terminal is NODATA (RFC 8020)"),
    AnswerCase(name: "ent.example.com", type: "A", authority: [SOA.exampleCom], why: "empty non-terminal two levels up"),
    AnswerCase(name: "c.b.ent.example.com", type: "A", status: "NXDOMAIN", authority: [SOA.exampleCom], why: "below an ENT, nothing"),
    AnswerCase(name: "nope.example.net", type: "A", status: "NXDOMAIN", authority: [SOA.exampleNet],
               why: "second zone, negative TTL min(1800, 3600)"),
    AnswerCase(name: "www.example.net", type: "A", answer: ["www.example.net. 1800 IN A 203.0.113.10"], why: "second zone, $TTL"),
    AnswerCase(name: "www.example.org", type: "A", status: "REFUSED", aa: false, authority: [], why: "out of every zone: REFUSED"),
    AnswerCase(name: "foo.wild.example.com", type: "A", answer: ["foo.wild.example.com. 3600 IN A 192.0.2.100"],
               why: "wildcard synthesis with the query name as owner (RFC 4592 3.3.1)"),
    AnswerCase(name: "x.y.wild.example.com", type: "TXT", answer: ["x.y.wild.example.com. 3600 IN TXT \"wildcard\""],
               why: "wildcard two labels below the closest encloser"),
    AnswerCase(name: "foo.wild.example.com", type: "MX", authority: [SOA.exampleCom], why: "wildcard NODATA"),
    AnswerCase(name: "exists.wild.example.com", type: "A", answer: ["exists.wild.example.com. 3600 IN A 192.0.2.101"],
               why: "an existing name wins over the wildcard"),
    AnswerCase(name: "exists.wild.example.com", type: "TXT", authority: [SOA.exampleCom],
               why: "no wildcard for an existing name (RFC 4592 2.2.1): NODATA"),
    AnswerCase(name: "alias.example.com", type: "A",
               answer: ["alias.example.com. 3600 IN CNAME alias2.example.com.", "alias2.example.com. 3600 IN CNAME www.example.com.",
                        "www.example.com. 3600 IN A 192.0.2.10", "www.example.com. 3600 IN A 192.0.2.11"],
               why: "CNAME chain chased inside the zone (RFC 1034 4.3.2 step 3a)"),
    AnswerCase(name: "alias.example.com", type: "CNAME", answer: ["alias.example.com. 3600 IN CNAME alias2.example.com."],
               why: "a CNAME query is not chased"),
    AnswerCase(name: "cross.example.com", type: "A",
               answer: ["cross.example.com. 3600 IN CNAME www.example.net.", "www.example.net. 1800 IN A 203.0.113.10"],
               why: "CNAME chased into another served zone"),
    AnswerCase(name: "out.example.com", type: "A", answer: ["out.example.com. 3600 IN CNAME www.example.org."],
               why: "CNAME leaving the served zones: the CNAME alone, no recursion"),
    AnswerCase(name: "www.sub.example.com", type: "A", aa: false,
               authority: ["sub.example.com. 3600 IN NS ns1.sub.example.com.", "sub.example.com. 3600 IN NS ns2.sub.example.com."],
               additional: ["ns1.sub.example.com. 3600 IN A 192.0.2.53", "ns2.sub.example.com. 3600 IN A 192.0.2.54"],
               why: "referral: no AA, NS in authority, glue in additional (RFC 1034 4.3.2 step 3b)"),
    AnswerCase(name: "sub.example.com", type: "NS", aa: false,
               authority: ["sub.example.com. 3600 IN NS ns1.sub.example.com.", "sub.example.com. 3600 IN NS ns2.sub.example.com."],
               additional: ["ns1.sub.example.com. 3600 IN A 192.0.2.53", "ns2.sub.example.com. 3600 IN A 192.0.2.54"],
               why: "NS at the delegation point is a referral too"),
    AnswerCase(name: "ns1.sub.example.com", type: "A", aa: false,
               authority: ["sub.example.com. 3600 IN NS ns1.sub.example.com.", "sub.example.com. 3600 IN NS ns2.sub.example.com."],
               why: "glue is not authoritative data: referral"),
]
