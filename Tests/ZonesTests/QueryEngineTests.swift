import DNSWire
import Testing
@testable import Zones

/// Records built in code, so the engine's logic is tested apart from the master-file parser.
private func n(_ s: String) -> DNSName { try! DNSName(s) }
private func rr(_ owner: String, _ t: RRType, _ ttl: UInt32, _ rdata: [UInt8]) -> ResourceRecord {
    ResourceRecord(name: n(owner), type: t, ttl: ttl, rdata: rdata)
}
private func a(_ s: String) -> [UInt8] { IPAddress(s)!.bytes }
private func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)] }
private func soa(minimum: UInt32) -> [UInt8] {
    n("ns1.example.com.").wire + n("hostmaster.example.com.").wire + u32(2026112601) + u32(7200) + u32(3600) + u32(1209600) + u32(minimum)
}
private func txt(_ s: String) -> [UInt8] { [UInt8(s.utf8.count)] + Array(s.utf8) }

private let zones: ZoneSet = {
    let ex: [ResourceRecord] = [
        rr("example.com.", .soa, 3600, soa(minimum: 300)),
        rr("example.com.", .ns, 3600, n("ns1.example.com.").wire),
        rr("example.com.", .mx, 3600, [0, 10] + n("mail.example.com.").wire),
        rr("ns1.example.com.", .a, 3600, a("192.0.2.53")),
        rr("mail.example.com.", .a, 3600, a("192.0.2.25")),
        rr("www.example.com.", .a, 300, a("192.0.2.1")),
        rr("www.example.com.", .a, 300, a("192.0.2.2")),
        rr("alias.example.com.", .cname, 300, n("www.example.com.").wire),
        rr("loop1.example.com.", .cname, 300, n("loop2.example.com.").wire),
        rr("loop2.example.com.", .cname, 300, n("loop1.example.com.").wire),
        rr("dangling.example.com.", .cname, 300, n("nothing.example.com.").wire),
        rr("away.example.com.", .cname, 300, n("www.example.org.").wire),
        rr("*.wild.example.com.", .txt, 60, txt("wild")),
        rr("x.y.deep.example.com.", .a, 60, a("192.0.2.9")),
        rr("sub.example.com.", .ns, 3600, n("ns.sub.example.com.").wire),
        rr("ns.sub.example.com.", .a, 3600, a("192.0.2.77")),
        rr("big.example.com.", .txt, 60, txt(String(repeating: "a", count: 200))),
        rr("big.example.com.", .txt, 60, txt(String(repeating: "b", count: 200))),
        rr("big.example.com.", .txt, 60, txt(String(repeating: "c", count: 200))),
    ]
    return ZoneSet(zones: [try! Zone(origin: n("example.com."), records: ex)])
}()

private struct Expect {
    var rcode: RCode
    var aa: Bool = true
    var tc: Bool = false
    var answers: [RRType] = []
    var authority: [RRType] = []
    var additional: [RRType] = []
}

private func ask(_ name: String, _ type: RRType, tcp: Bool = false, edns: Bool = false, ecs: IPPrefix? = nil, version: UInt8 = 0) -> Message {
    let q = QueryBuilder.query(id: 4242, name: n(name), type: type, edns: edns, ednsVersion: version, clientSubnet: ecs)
    return respond(q, tcp: tcp)
}

private func respond(_ q: [UInt8], tcp: Bool = false) -> Message {
    let engine = QueryEngine()
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
    defer { out.deallocate() }
    let len = q.withUnsafeBytes { engine.respond(query: $0, client: IPAddress("127.0.0.1")!, tcp: tcp, zones: zones, options: EngineOptions(), out: out) }
    return try! Message(decoding: Array(out[0..<len]))
}

private let cases: [(String, String, RRType, Expect)] = [
    ("exact A", "www.example.com.", .a, Expect(rcode: .noError, answers: [.a, .a])),
    ("apex MX with glue", "example.com.", .mx, Expect(rcode: .noError, answers: [.mx], additional: [.a])),
    ("NODATA", "www.example.com.", .aaaa, Expect(rcode: .noError, authority: [.soa])),
    ("NXDOMAIN", "nope.example.com.", .a, Expect(rcode: .nxDomain, authority: [.soa])),
    ("empty non-terminal is NODATA (RFC 8020)", "y.deep.example.com.", .a, Expect(rcode: .noError, authority: [.soa])),
    ("below an existing name NXDOMAIN", "z.x.y.deep.example.com.", .a, Expect(rcode: .nxDomain, authority: [.soa])),
    ("CNAME chase", "alias.example.com.", .a, Expect(rcode: .noError, answers: [.cname, .a, .a])),
    ("CNAME query gets CNAME only", "alias.example.com.", .cname, Expect(rcode: .noError, answers: [.cname])),
    ("CNAME to NXDOMAIN (RFC 6604)", "dangling.example.com.", .a, Expect(rcode: .nxDomain, answers: [.cname], authority: [.soa])),
    ("CNAME loop stops", "loop1.example.com.", .a, Expect(rcode: .noError, answers: Array(repeating: .cname, count: 9))),
    ("CNAME out of served zones", "away.example.com.", .a, Expect(rcode: .noError, answers: [.cname])),
    ("wildcard", "foo.wild.example.com.", .txt, Expect(rcode: .noError, answers: [.txt])),
    ("wildcard NODATA", "foo.wild.example.com.", .a, Expect(rcode: .noError, authority: [.soa])),
    ("wildcard not below two labels", "a.b.wild.example.com.", .txt, Expect(rcode: .noError, answers: [.txt])),
    ("referral", "www.sub.example.com.", .a, Expect(rcode: .noError, aa: false, authority: [.ns], additional: [.a])),
    ("referral at cut", "sub.example.com.", .a, Expect(rcode: .noError, aa: false, authority: [.ns], additional: [.a])),
    ("DS at cut answered by parent", "sub.example.com.", .ds, Expect(rcode: .noError, authority: [.soa])),
    ("out of zone REFUSED", "example.org.", .a, Expect(rcode: .refused, aa: false)),
    ("ANY one RRset (RFC 8482)", "www.example.com.", .any, Expect(rcode: .noError, answers: [.a, .a])),
    ("ANY at a CNAME is the CNAME", "alias.example.com.", .any, Expect(rcode: .noError, answers: [.cname])),
    ("ANY has no additional section", "example.com.", .any, Expect(rcode: .noError, answers: [.ns])),
    ("AXFR refused", "example.com.", .axfr, Expect(rcode: .refused, aa: false)),
    ("truncated without EDNS", "big.example.com.", .txt, Expect(rcode: .noError, tc: true)),
]

@Test(arguments: cases.indices)
func authoritativeAnswers(_ i: Int) {
    let (label, qname, qtype, e) = cases[i]
    let m = ask(qname, qtype)
    #expect(m.id == 4242, "\(label)")
    #expect(m.rcode == e.rcode, "\(label)")
    #expect(m.has(HeaderFlags.aa) == e.aa, "\(label)")
    #expect(m.has(HeaderFlags.tc) == e.tc, "\(label)")
    #expect(!m.has(HeaderFlags.ra), "\(label)")
    #expect(m.answers.map(\.type) == e.answers, "\(label)")
    #expect(m.authority.map(\.type) == e.authority, "\(label)")
    #expect(m.additional.map(\.type) == e.additional, "\(label)")
}

@Test func negativeTTLIsMinOfSOATTLAndMinimum() {
    let m = ask("nope.example.com.", .a)
    #expect(m.authority.first?.ttl == 300)
}

@Test func questionCasePreserved() {
    let m = ask("wWw.ExAmple.COM.", .a)
    #expect(m.questionName.description == "wWw.ExAmple.COM.")
    #expect(m.answers.first?.name.description == "wWw.ExAmple.COM.")
}

@Test func wildcardOwnerIsTheQuestion() {
    let m = ask("Foo.wild.example.com.", .txt)
    #expect(m.answers.first?.name.description == "Foo.wild.example.com.")
}

@Test func tcpCarriesTheWholeAnswer() {
    let m = ask("big.example.com.", .txt, tcp: true)
    #expect(!m.has(HeaderFlags.tc))
    #expect(m.answers.count == 3)
}

@Test func ednsAllowsLargerAnswersAndEchoesECS() throws {
    let m = ask("big.example.com.", .txt, edns: true, ecs: IPPrefix("192.0.2.0/24"))
    #expect(!m.has(HeaderFlags.tc))
    #expect(m.answers.count == 3)
    let ecs = try #require(m.ednsOptions.first { $0.code == EDNSOption.clientSubnet })
    #expect(ecs.data == [0, 1, 24, 0, 192, 0, 2])
}

@Test func badVersion() {
    let m = ask("www.example.com.", .a, edns: true, version: 1)
    #expect(m.rcode == .badVers)
    #expect(m.answers.isEmpty)
    #expect(m.opt != nil)
}

@Test func malformedQueries() {
    var two = QueryBuilder.query(id: 1, name: n("www.example.com."), type: .a)
    two[5] = 2
    #expect(respond(two).rcode == .formErr)
    // Compression pointer loop in the question.
    let loop: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]
    #expect(respond(loop).rcode == .formErr)
    // ECS with address bits set past the source prefix (RFC 7871 6).
    var bad = QueryBuilder.query(id: 1, name: n("www.example.com."), type: .a, edns: true, clientSubnet: IPPrefix("192.0.2.0/24"))
    bad[bad.count - 1] = 1; bad[bad.count - 5] = 23
    #expect(respond(bad).rcode == .formErr)
    // Trailing garbage.
    #expect(respond(QueryBuilder.query(id: 1, name: n("www.example.com."), type: .a) + [1, 2, 3]).rcode == .formErr)
}

@Test func responsesAreNotAnswered() {
    var q = QueryBuilder.query(id: 1, name: n("www.example.com."), type: .a)
    q[2] |= 0x80
    let engine = QueryEngine()
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
    defer { out.deallocate() }
    let len = q.withUnsafeBytes { engine.respond(query: $0, client: IPAddress("127.0.0.1")!, tcp: false, zones: zones, options: EngineOptions(), out: out) }
    #expect(len == 0)
}

/// A query with a COOKIE option holding `cookie` (8 bytes alone, or 8 + server cookie).
private func cookieQuery(_ cookie: [UInt8], question: Bool = true) -> [UInt8] {
    var q = QueryBuilder.query(id: 77, name: n("www.example.com."), type: .a, edns: true)
    if !question {
        // Drop the question: header, then the OPT record alone.
        let qlen = n("www.example.com.").wire.count + 4
        q.removeSubrange(12..<(12 + qlen))
        q[5] = 0
    }
    // Append the option to the OPT rdata (the OPT is the last record; its RDLENGTH the last 2 bytes).
    let opt: [UInt8] = [0, 10, 0, UInt8(cookie.count)] + cookie
    let len = Int(q[q.count - 2]) << 8 | Int(q[q.count - 1])
    let newLen = len + opt.count
    q[q.count - 2] = UInt8(newLen >> 8); q[q.count - 1] = UInt8(newLen & 0xFF)
    return q + opt
}

private func respondWithCookies(_ q: [UInt8], now: UInt32 = 1_700_000_000) -> Message {
    let engine = QueryEngine()
    var o = EngineOptions()
    o.cookies = ServerCookies(secret: Array(0..<16), previous: nil)
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    defer { out.deallocate() }
    let len = q.withUnsafeBytes { engine.respond(query: $0, client: IPAddress("192.0.2.1")!, tcp: false, zones: zones, options: o, out: out, now: now) }
    return try! Message(decoding: Array(out[0..<len]))
}

@Test func cookiesAreEchoedWithAServerCookie() throws {
    let cc: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2]
    let m = respondWithCookies(cookieQuery(cc))
    #expect(m.rcode == .noError)
    #expect(m.answers.count == 2)
    let c = try #require(m.ednsOptions.first { $0.code == EDNSOption.cookie })
    #expect(c.data.count == 24)
    #expect(Array(c.data[0..<8]) == cc)
    let jar = ServerCookies(secret: Array(0..<16), previous: nil)!
    #expect(c.data.withUnsafeBytes { jar.isValid(cookie: $0, client: IPAddress("192.0.2.1")!, now: 1_700_000_100) })
    // A stale or forged server cookie is not an error: the query is answered with a new one.
    let again = respondWithCookies(cookieQuery(cc + [UInt8](repeating: 0xAB, count: 16)))
    #expect(again.rcode == .noError && again.answers.count == 2)
}

@Test func cookieOnlyQueryWithoutQuestion() {
    let m = respondWithCookies(cookieQuery([1, 2, 3, 4, 5, 6, 7, 8], question: false))
    #expect(m.rcode == .noError)
    #expect(!m.hasQuestion)
    #expect(m.ednsOptions.contains { $0.code == EDNSOption.cookie })
    // Without a cookie, QDCOUNT 0 is FORMERR (RFC 9619).
    var bare = QueryBuilder.query(id: 1, name: n("www.example.com."), type: .a)
    bare = Array(bare[0..<12]); bare[5] = 0
    #expect(respond(bare).rcode == .formErr)
    // A COOKIE option of a bad length is FORMERR (RFC 7873 5.2.2).
    #expect(respondWithCookies(cookieQuery([1, 2, 3])).rcode == .formErr)
}
