import Config
import DNSWire
import Testing
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

@Test func slipRewritesToAnEmptyTruncatedAnswer() {
    var s = RRLSettings()
    s.rate = 1
    s.slip = 1
    let rrl = ResponseRateLimiter(settings: s)
    // A response: header (1 answer) + question www.example. A IN + one A record.
    let name: [UInt8] = [3, 119, 119, 119, 7, 101, 120, 97, 109, 112, 108, 101, 0]
    let resp: [UInt8] = [0, 7, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0] + name + [0, 1, 0, 1]
        + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
    defer { buf.deallocate() }
    buf.copyBytes(from: resp)
    let client = IPAddress("203.0.113.1")!
    #expect(rrl.apply(response: buf, length: resp.count, client: client, now: 9) == resp.count)
    let n = rrl.apply(response: buf, length: resp.count, client: client, now: 9)
    #expect(n == 12 + name.count + 4)
    let m = try? Message(decoding: Array(buf[0..<n]))
    #expect(m?.has(HeaderFlags.tc) == true)
    #expect(m?.answers.isEmpty == true)
}
