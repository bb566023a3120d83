import Testing
@testable import Zones

/// `NameTable` finds every key it holds from any buffer, and nothing else: keys of every
/// length around the hash's and the compare's 8-byte words, near misses (one byte changed,
/// a byte more or less) and names longer than any key (refused without hashing).
@Suite("Name table") struct NameTableTests {
    /// Lowercase wire names: `count` labels of `length` letters from a fixed pattern.
    static func key(_ i: Int, labels: Int, length: Int) -> [UInt8] {
        var w: [UInt8] = []
        for l in 0..<labels {
            w.append(UInt8(length))
            for k in 0..<length { w.append(UInt8(ascii: "a") + UInt8((i &* 7 &+ l &* 3 &+ k) % 26)) }
        }
        return w + [0]
    }

    @Test func findsEveryKeyAndNoNearMiss() {
        var keys: [[UInt8]] = [[0]]
        for length in 1...20 {
            for labels in 1...3 {
                for i in 0..<20 { keys.append(Self.key(i, labels: labels, length: length)) }
            }
        }
        var unique: [[UInt8]] = []
        for k in keys where !unique.contains(k) { unique.append(k) }
        var t = NameTable(capacity: 4) // grows while inserting
        for (i, k) in unique.enumerated() { t.insert(lowercaseWire: k, value: Int32(i)) }
        let longest = unique.map(\.count).max()!
        for (i, k) in unique.enumerated() {
            // Through a copy at another address, as the engine probes from its scratch buffer.
            #expect(Array(k).withUnsafeBytes { t.find($0) } == Int32(i))
            for at in 0..<k.count {
                var miss = k
                miss[at] ^= 0x01
                if !unique.contains(miss) { #expect(t.find(miss) == -1) }
            }
            if !unique.contains(Array(k.dropLast())) { #expect(t.find(Array(k.dropLast())) == -1) }
            if !unique.contains(k + [0]) { #expect(t.find(k + [0]) == -1) }
        }
        #expect(t.find([UInt8](repeating: 1, count: longest + 1)) == -1)
    }
}
