import DNSWire

/// A binary trie of address prefixes built at load time, answering longest-prefix match
/// together with the shortest network for which that answer holds (the ECS scope).
///
///     var t = PrefixTrie()
///     t.insert(IPPrefix("10.0.0.0/8")!, value: 0)
///     t.insert(IPPrefix("10.1.0.0/16")!, value: 1)
///     t.lookup(IPAddress("10.2.3.4")!)   // value 0, scope 15: 10.0.0.0/15 holds no more specific rule
///
/// Why the scope can be shorter than the client's address but longer than the matched
/// rule: every address in client/scope matches the same rule and no more specific one, so
/// a resolver may reuse the answer across that whole network (RFC 7871 7.2), and no
/// further (10.1.0.0/16 above gets a different answer).
public struct PrefixTrie: Sendable {
    struct Node: Sendable {
        var zero: Int32 = -1
        var one: Int32 = -1
        var value: Int32 = -1
    }
    private var v4: [Node] = [Node()]
    private var v6: [Node] = [Node()]

    public init() {}

    @inline(__always) static func bit(_ a: IPAddress, _ i: Int) -> Int {
        i < 64 ? Int((a.hi >> UInt64(63 - i)) & 1) : Int((a.lo >> UInt64(127 - i)) & 1)
    }

    public mutating func insert(_ p: IPPrefix, value: Int32) {
        if p.address.isV4 { PrefixTrie.insert(&v4, p, value) } else { PrefixTrie.insert(&v6, p, value) }
    }

    private static func insert(_ nodes: inout [Node], _ p: IPPrefix, _ value: Int32) {
        var n = 0
        for i in 0..<p.length {
            let b = bit(p.address, i)
            var next = b == 0 ? nodes[n].zero : nodes[n].one
            if next < 0 {
                nodes.append(Node())
                next = Int32(nodes.count - 1)
                if b == 0 { nodes[n].zero = next } else { nodes[n].one = next }
            }
            n = Int(next)
        }
        nodes[n].value = value
    }

    /// Longest match (`value` -1 when none) and the scope prefix length of that decision.
    @inline(__always) public func lookup(_ a: IPAddress) -> (value: Int32, matched: Int, scope: Int) {
        a.isV4 ? PrefixTrie.walk(v4, a) : PrefixTrie.walk(v6, a)
    }

    private static func walk(_ nodes: [Node], _ a: IPAddress) -> (value: Int32, matched: Int, scope: Int) {
        var n = 0, depth = 0, best: Int32 = -1, matched = 0
        let bits = a.bitLength
        while true {
            let node = nodes[n]
            if node.value >= 0 { best = node.value; matched = depth }
            if depth == bits { return (best, matched, depth) }
            let next = bit(a, depth) == 0 ? node.zero : node.one
            if next < 0 {
                // Stop here: client/depth+1 holds no rule below this node; if the node has no
                // children at all, client/depth already does.
                let leaf = node.zero < 0 && node.one < 0
                return (best, matched, leaf ? depth : depth + 1)
            }
            n = Int(next); depth += 1
        }
    }

    public var isEmpty: Bool { v4.count == 1 && v6.count == 1 && v4[0].value < 0 && v6[0].value < 0 }
}
