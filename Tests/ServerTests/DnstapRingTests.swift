import Testing
@testable import Server

/// The per-worker dnstap queue: a full ring drops and counts, never waits; the reader gets
/// records back whole and in order, across the wrap-around.
@Test func fullRingDropsAndCountsAndRecordsComeBackWhole() throws {
    let ring = DnstapRing(capacity: 1024, sample: 1, logQueries: true, logResponses: true)
    let query = [UInt8](repeating: 7, count: 100), response = [UInt8](repeating: 9, count: 150)
    var pushed = 0
    for i in 0..<20 {
        var h = DnstapRecordHeader()
        h.clientPort = UInt16(i)
        query.withUnsafeBytes { q in response.withUnsafeBytes { r in ring.push(h, query: q, response: r) } }
        pushed += 1
    }
    let fits = 1024 / (DnstapRecordHeader.size + 250)
    #expect(ring.queued.load(ordering: .relaxed) == UInt64(fits))
    #expect(ring.dropped.load(ordering: .relaxed) == UInt64(pushed - fits))
    // Drain, push more (these wrap around the end of the buffer), drain again.
    var ports: [UInt16] = []
    for round in 0..<3 {
        while let r = ring.pop() {
            #expect(r.query == query && r.response == response)
            #expect(r.header.flags & DnstapRecordHeader.hasQuery != 0 && r.header.flags & DnstapRecordHeader.hasResponse != 0)
            ports.append(r.header.clientPort)
        }
        for i in 0..<fits {
            var h = DnstapRecordHeader()
            h.clientPort = UInt16(100 * (round + 1) + i)
            query.withUnsafeBytes { q in response.withUnsafeBytes { r in ring.push(h, query: q, response: r) } }
        }
    }
    #expect(Array(ports.prefix(fits)) == (0..<fits).map { UInt16($0) })
    #expect(ports.count == 3 * fits)
}

@Test func samplingKeepsOneInN() {
    let ring = DnstapRing(capacity: 1024, sample: 4, logQueries: true, logResponses: false)
    let kept = (0..<100).filter { _ in ring.sampleNext(now: 1) }.count
    #expect(kept == 25)
}

@Test func perSecondCapCountsWhatItSkips() {
    let ring = DnstapRing(capacity: 1024, sample: 1, maxPerSecond: 10, logQueries: true, logResponses: true)
    #expect((0..<50).filter { _ in ring.sampleNext(now: 100) }.count == 10)
    #expect((0..<50).filter { _ in ring.sampleNext(now: 101) }.count == 10, "a new second starts a new budget")
    #expect(ring.capped.load(ordering: .relaxed) == 80)
}
