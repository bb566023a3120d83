import Answering
import Config
import DNSWire
import Testing
import Zones
@testable import Server

@Test func burstFromOneNetworkIsLimitedAndSlipped() {
    var s = RRLSettings()
    s.rate = 10
    s.slip = 2
    let rrl = ResponseRateLimiter(settings: s)
    let attacker = IPAddress("198.51.100.7")!
    let neighbour = IPAddress("198.51.100.200")!   // same /24: shares the budget
    let other = IPAddress("203.0.113.5")!
    var verdicts: [ResponseRateLimiter.Verdict] = []
    for _ in 0..<30 { verdicts.append(rrl.check(client: attacker, kind: .answer, nameHash: 1, now: 1000)) }
    #expect(verdicts.prefix(10).allSatisfy { $0 == .pass })
    #expect(verdicts.dropFirst(10).filter { $0 == .slip }.count == 10)
    #expect(verdicts.dropFirst(10).filter { $0 == .drop }.count == 10)
    #expect(rrl.check(client: neighbour, kind: .answer, nameHash: 1, now: 1000) != .pass)
    // Another network, another kind, and the next second are each answered normally.
    #expect(rrl.check(client: other, kind: .answer, nameHash: 1, now: 1000) == .pass)
    #expect(rrl.check(client: attacker, kind: .nxdomain, nameHash: 1, now: 1000) == .pass)
    #expect(rrl.check(client: attacker, kind: .answer, nameHash: 1, now: 1001) == .pass)
    #expect(rrl.limited.load(ordering: .relaxed) == 21)
}

@Test func allowListAndOff() {
    var s = RRLSettings()
    s.rate = 1
    s.allow = [IPPrefix("192.0.2.0/24")!]
    let rrl = ResponseRateLimiter(settings: s)
    for _ in 0..<100 { #expect(rrl.check(client: IPAddress("192.0.2.9")!, kind: .answer, nameHash: 0, now: 5) == .pass) }
    let off = ResponseRateLimiter(settings: RRLSettings())
    for _ in 0..<100 { #expect(off.check(client: IPAddress("10.0.0.1")!, kind: .answer, nameHash: 0, now: 5) == .pass) }
}

@Test func slipRewritesToAnEmptyTruncatedAnswer() throws {
    var s = RRLSettings()
    s.rate = 1
    s.slip = 1
    let rrl = ResponseRateLimiter(settings: s)
    // A real answer from the pipeline: www.example. A, one record.
    func name(_ t: String) throws -> DNSName { try DNSName(t) }
    let soa = try name("ns.example.").wire + name("h.example.").wire + [UInt8](repeating: 0, count: 19) + [60]
    let zones = ZoneSet(zones: [try Zone(origin: try name("example."), records: [
        ResourceRecord(name: try name("example."), type: .soa, ttl: 60, rdata: soa),
        ResourceRecord(name: try name("example."), type: .ns, ttl: 60, rdata: try name("ns.example.").wire),
        ResourceRecord(name: try name("www.example."), type: .a, ttl: 60, rdata: [192, 0, 2, 1]),
    ])])
    let q = QueryBuilder.query(id: 7, name: try name("www.example."), type: .a)
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
    defer { buf.deallocate() }
    let answerer = Answerer()
    func answer() -> Answer {
        q.withUnsafeBytes {
            answerer.respond(query: $0, client: IPAddress("203.0.113.1")!, tcp: false, zones: zones, options: EngineOptions(),
                             health: HealthSnapshot.allUp(count: 0), out: buf, now: 9)
        }
    }
    let client = IPAddress("203.0.113.1")!
    let first = answer()
    #expect(first.outcome.kind == .answer && first.outcome.answers == 1)
    #expect(rrl.apply(first, response: buf, client: client, now: 9) == first.length)
    let second = answer()
    let n = rrl.apply(second, response: buf, client: client, now: 9)
    #expect(n == 12 + 13 + 4, "header and question only")
    let m = try? Message(decoding: Array(buf[0..<n]))
    #expect(m?.has(HeaderFlags.tc) == true)
    #expect(m?.answers.isEmpty == true)
}
