@testable import Routing
import Testing

/// The ECS scope of a compiled-map hit is computed from the range's bounds with bit counts;
/// it must be the length the search over prefix lengths found, for random ranges and
/// clients of both widths, the edges of the range included.
@Test func shortestPrefixMatchesTheSearch() {
    var rng = RoutingRandom(seed: 13)
    func check<K: FixedWidthInteger & UnsignedInteger>(_: K.Type, bits: Int) {
        for _ in 0..<20_000 {
            var a = K.random(in: K.min...K.max, using: &rng), b = K.random(in: K.min...K.max, using: &rng)
            // Ranges of every size: clear a random number of low bits of one bound or both.
            let k = Int.random(in: 0...bits, using: &rng)
            if Bool.random(using: &rng) { a = k == bits ? 0 : (a >> K(k)) << K(k) }
            if Bool.random(using: &rng) { b = k == bits ? K.max : b | ~(k == bits ? 0 : K.max << K(k)) }
            let first = min(a, b), last = max(a, b)
            for x in [first, last, first + (last - first) / 2, K.random(in: first...last, using: &rng)] {
                let fast = GeoRangeTable.shortestPrefix(x, first, last, bits: bits)
                let slow = GeoRangeTable.shortestPrefixBySearch(x, first, last, bits: bits)
                #expect(fast == slow, "x \(x) in [\(first), \(last)]")
                if fast != slow { return }
            }
        }
    }
    check(UInt32.self, bits: 32)
    check(UInt128.self, bits: 128)
}
