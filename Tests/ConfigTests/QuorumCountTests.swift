import Config
import Testing

/// `quorum:`'s words and counts, as the fleet decides with them (docs/quorum.md).
@Suite("quorum counts")
struct QuorumCountTests {
    @Test func requiredDownVotesForEachSetting() {
        let cases: [(Quorum, Int, Int)] = [
            (.majority, 1, 1), (.majority, 2, 2), (.majority, 3, 2), (.majority, 4, 3), (.majority, 5, 3),
            (.any, 3, 1), (.all, 3, 3), (.all, 1, 1),
            (.count(2), 3, 2), (.count(5), 3, 3), (.count(1), 0, 1),
        ]
        for (q, n, want) in cases { #expect(q.required(of: n) == want, "\(q) of \(n)") }
    }

    @Test func parsing() {
        #expect(Quorum(text: "majority") == .majority && Quorum(text: "any") == .any && Quorum(text: "all") == .all)
        #expect(Quorum(text: "3") == .count(3))
        for bad in ["0", "-1", "1001", "most", ""] { #expect(Quorum(text: bad) == nil, "\(bad)") }
    }
}
