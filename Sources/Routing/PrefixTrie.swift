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

    /// Merges networks that give the same answer, so scopes are as short as the answers
    /// allow (gdnsd does the same with its maps): a leaf whose value equals what its
    /// parent already gives is dropped, and two sibling leaves with one value become their
    /// parent. Values must already be canonical (equal value = equal answer).
    public mutating func compact() {
        PrefixTrie.compact(&v4, 0, inherited: -1)
        PrefixTrie.compact(&v6, 0, inherited: -1)
    }

    private static func compact(_ nodes: inout [Node], _ n: Int, inherited: Int32) {
        let eff = nodes[n].value >= 0 ? nodes[n].value : inherited
        if nodes[n].zero >= 0 { compact(&nodes, Int(nodes[n].zero), inherited: eff) }
        if nodes[n].one >= 0 { compact(&nodes, Int(nodes[n].one), inherited: eff) }
        func isLeaf(_ c: Int32) -> Bool { c >= 0 && nodes[Int(c)].zero < 0 && nodes[Int(c)].one < 0 }
        // A leaf without a value answers what its parent does.
        func leafValue(_ c: Int32) -> Int32 { nodes[Int(c)].value >= 0 ? nodes[Int(c)].value : eff }
        let z = nodes[n].zero, o = nodes[n].one
        if isLeaf(z) && isLeaf(o) && leafValue(z) == leafValue(o) {
            nodes[n].value = leafValue(z)
            nodes[n].zero = -1; nodes[n].one = -1
            return
        }
        if isLeaf(z) && leafValue(z) == eff { nodes[n].zero = -1 }
        if isLeaf(o) && leafValue(o) == eff { nodes[n].one = -1 }
    }

    public var isEmpty: Bool { v4.count == 1 && v6.count == 1 && v4[0].value < 0 && v6[0].value < 0 }
}
