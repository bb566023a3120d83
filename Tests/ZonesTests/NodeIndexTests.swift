import DNSWire
import Foundation
import Testing
@testable import Zones

/// The zone set's index of names (`ZoneSet.findNode`, one hash of the question for its zone
/// and node) must give exactly what the zone search and the zone's own node lookup give,
/// for nested zones (a served child inside a parent that holds glue and names for it), an
/// origin served twice, a served root zone, and zones of very different sizes; and the
/// engine that answers through it must answer as the full algorithm does (the walk from
/// the apex, which a set without prebuilt answers runs).
@Suite("Node index") struct NodeIndexTests {
    static func zone(_ origin: String, _ text: String) -> Zone {
        let o = try! DNSName(origin)
        let records = try! MasterFileParser(origin: o, baseDirectory: ".").parse(contents: text, file: origin + "zone")
        return try! Zone(origin: o, records: records)
    }

    static let head = "$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n  NS ns1\nns1 A 192.0.2.53\n"

    /// The end-to-end tests' nested zones (EndToEndTests/Fixtures/nested): example.test
    /// holds the cut to child.example.test with glue and a name the child zone lacks (the
    /// child, served, answers it NXDOMAIN); the child holds a cut of its own (gc), a
    /// wildcard, CNAMEs back to the parent and out of every zone, and an escaped dot;
    /// other.test points into both. Here also a CNAME loop.
    static let nested: [Zone] = {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("EndToEndTests/Fixtures/nested").path
        var zones = ["example.test.", "child.example.test.", "other.test."].map { origin in
            let o = try! DNSName(origin)
            let records = try! MasterFileParser(origin: o, baseDirectory: dir).parseFile(path: dir + "/" + origin + "zone")
            return try! Zone(origin: o, records: records)
        }
        zones.append(zone("loop.test.", head + "loop CNAME LOOP2\nloop2 CNAME loop\n"))
        return zones
    }()

    static func lower(_ s: String) -> [UInt8] { try! DNSName(s).lowercased().wire }

    /// Every node name of every zone, their ancestors, and names that are no node.
    static func names(_ zones: [Zone]) -> [String] {
        var out = Set<String>()
        for z in zones {
            for node in z.nodes {
                let name = node.name.description
                let under = name == "." ? "" : name
                out.formUnion([name, "nope." + under, "a.b." + under])
            }
        }
        out.formUnion(["elsewhere.invalid.", ".", "test.", "x.child.example.test.", "ns.gc.child.example.test.",
                       "onlyparent.child.example.test.", "z.wild.child.example.test."])
        return out.sorted()
    }

    /// findNode against findZone + Zone.nodeIndex for every name.
    static func expectAgreement(_ set: ZoneSet, _ names: [String]) -> Int {
        var found = 0
        for name in names {
            let w = lower(name)
            let expected: (Int, Int, Int)? = w.withUnsafeBytes { p in
                guard let (z, o) = set.findZone(lowercaseWire: p) else { return nil }
                let i = set.zones[z].nodeIndex(lowercaseWire: p)
                return i >= 0 ? (z, i, o) : nil
            }
            let got = w.withUnsafeBytes { set.findNode(lowercaseWire: $0) }
            #expect(got?.zone == expected?.0 && got?.node == expected?.1 && got?.originOffset == expected?.2, "\(name)")
            if got != nil { found += 1 }
        }
        return found
    }

    @Test func agreesWithTheZoneSearchAndTheNodeLookup() {
        let set = ZoneSet(zones: Self.nested)
        let names = Self.names(Self.nested)
        let found = Self.expectAgreement(set, names)
        // 14 + 12 + 5 + 4 nodes, less the parent's three at and under the served child (the
        // child's apex and its own ns are found in the child instead).
        #expect(found >= 32)
        // Names the parent holds below the served child are the child's to answer.
        for name in ["onlyparent.child.example.test.", "ns.child.example.test."] {
            let hit = Self.lower(name).withUnsafeBytes { set.findNode(lowercaseWire: $0) }
            #expect(hit == nil || hit?.zone == 1, "\(name)")
        }
        #expect(Self.lower("ns.child.example.test.").withUnsafeBytes { set.findNode(lowercaseWire: $0) }?.zone == 1)
    }

    /// A root zone contains every name, so every other zone is inside it; and an origin
    /// served twice is found in the zone the search picks (the last given).
    @Test func rootZoneAndAnOriginServedTwice() {
        let root = Self.zone(".", Self.head + "test NS ns1.test.\nns1.test A 192.0.2.1\n")
        let again = Self.zone("other.test.", Self.head + "second A 192.0.2.2\n")
        for zones in [[root] + Self.nested, Self.nested + [root], Self.nested + [again], [again] + Self.nested] {
            let set = ZoneSet(zones: zones)
            _ = Self.expectAgreement(set, Self.names(zones))
        }
        let set = ZoneSet(zones: Self.nested + [again])
        #expect(Self.lower("second.other.test.").withUnsafeBytes { set.findNode(lowercaseWire: $0) }?.zone == Self.nested.count)
        #expect(Self.lower("into.other.test.").withUnsafeBytes { set.findNode(lowercaseWire: $0) } == nil)
    }

    /// Zones of 1 to 5,000 names: the zone and node packed beside the hash's tag in each slot.
    @Test func zonesOfVeryDifferentSizes() {
        var zones: [Zone] = []
        for (i, size) in [1, 300, 5000, 2, 70].enumerated() {
            var text = Self.head
            for k in 0..<size { text += "h\(k) A 192.0.2.\(k % 250)\n" }
            zones.append(Self.zone("z\(i).test.", text))
        }
        let set = ZoneSet(zones: zones)
        var names: [String] = []
        for (i, size) in [1, 300, 5000, 2, 70].enumerated() {
            for k in stride(from: 0, to: size + 3, by: max(1, size / 97)) { names += ["h\(k).z\(i).test.", "H\(k).Z\(i).TEST."] }
            names.append("z\(i).test.")
        }
        #expect(Self.expectAgreement(set, names) > 250)
    }

    /// Each wildcard's parent points to it (the engine's source of synthesis), no other node does.
    @Test func wildcardParentsPointToTheirWildcard() throws {
        let zone = Self.zone("w.test.", Self.head + "*.a A 192.0.2.1\n*.b.c TXT x\n*.w.test. A 192.0.2.2\nd A 192.0.2.3\n")
        var pointed: [String: String] = [:]
        for node in zone.nodes where node.wildcard >= 0 {
            pointed[node.name.description.lowercased()] = zone.nodes[Int(node.wildcard)].name.description.lowercased()
        }
        #expect(pointed == ["a.w.test.": "*.a.w.test.", "b.c.w.test.": "*.b.c.w.test.", "w.test.": "*.w.test."])
    }

    static let types: [RRType] = [.a, .aaaa, .mx, .txt, .ns, .soa, .cname, .ds, .any]

    static func answer(_ q: [UInt8], _ zones: ZoneSet) -> [UInt8] {
        let engine = QueryEngine()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
        defer { out.deallocate() }
        let n = q.withUnsafeBytes {
            engine.respond(query: $0, client: IPAddress("192.0.2.1")!, tcp: false, zones: zones, options: EngineOptions(), out: out)
        }
        return Array(out[0..<n])
    }

    /// Byte for byte what the walk answers: delegations, names under a served child,
    /// wildcards, CNAME chains inside, across and out of the zones, a CNAME loop,
    /// NXDOMAIN, escaped labels, in mixed case.
    @Test func engineAnswersAsTheFullAlgorithm() throws {
        let fast = ZoneSet(zones: Self.nested)
        let full = ZoneSet(bare: Self.nested)
        var compared = 0
        for name in Self.names(Self.nested) + ["Chain.Other.Test.", "WILDHIT.other.test.", "Back.Child.Example.Test."] {
            for spelled in [name, PrebuiltAnswersTests.scramble(name)] {
                for type in Self.types {
                    let q = QueryBuilder.query(id: 5, name: try DNSName(spelled), type: type, edns: true, udpSize: 1232)
                    #expect(Self.answer(q, fast) == Self.answer(q, full), "\(spelled) \(type)")
                    compared += 1
                }
            }
        }
        #expect(compared > 400)
    }

    /// What the answers hold, so the comparison above is not only of two equal mistakes.
    /// DS at a served zone's apex comes from the parent side of the cut (RFC 4035 3.1.4.1)
    /// when a served parent delegates it; a served parent without that cut leaves it to the
    /// zone itself.
    @Test func dsAtAServedApexIsAnsweredByTheParentThatDelegatesIt() throws {
        func ask(_ set: ZoneSet, _ name: String) throws -> Message {
            try Message(decoding: Self.answer(QueryBuilder.query(id: 1, name: try DNSName(name), type: .ds), set))
        }
        let parent = try DNSName("example.test."), child = try DNSName("child.example.test.")
        var m = try ask(ZoneSet(zones: Self.nested), "Child.Example.Test.")
        #expect(m.rcode == .noError && m.answers.isEmpty && m.authority.first?.type == .soa && m.authority.first?.name == parent)
        let noCut = [Self.zone("example.test.", Self.head), Self.zone("child.example.test.", Self.head)]
        m = try ask(ZoneSet(zones: noCut), "child.example.test.")
        #expect(m.rcode == .noError && m.answers.isEmpty && m.authority.first?.type == .soa && m.authority.first?.name == child)
    }

    @Test func answersAcrossNestedZones() throws {
        let set = ZoneSet(zones: Self.nested)
        func ask(_ name: String, _ type: RRType) throws -> Message {
            try Message(decoding: Self.answer(QueryBuilder.query(id: 1, name: try DNSName(name), type: type), set))
        }
        // The child answers its own names, and NXDOMAIN for one only the parent holds.
        var m = try ask("WWW.child.example.test.", .a)
        #expect(m.rcode == .noError && m.answers.count == 1 && m.answers[0].rdata == [192, 0, 2, 20])
        m = try ask("onlyparent.child.example.test.", .a)
        let childApex = try DNSName("child.example.test."), cut = try DNSName("gc.child.example.test.")
        #expect(m.rcode == .nxDomain && m.authority.first?.type == .soa && m.authority.first?.name == childApex)
        // The parent refers below its cut; the child refers below its own.
        m = try ask("x.gc.child.example.test.", .a)
        #expect(m.rcode == .noError && m.answers.isEmpty && m.authority.first?.type == .ns && m.authority.first?.name == cut)
        // other.test -> example.test -> child: three CNAMEs and the address.
        m = try ask("chain.other.test.", .a)
        #expect(m.answers.map(\.type) == [.cname, .cname, .cname, .a] && m.answers.last?.rdata == [192, 0, 2, 20])
        // Into a wildcard of the child.
        m = try ask("wildhit.other.test.", .a)
        #expect(m.answers.map(\.type) == [.cname, .a] && m.answers.last?.rdata == [192, 0, 2, 21])
        m = try ask("exists.wild.child.example.test.", .a)
        #expect(m.rcode == .noError && m.answers.isEmpty)
        // Out of every zone: the chain stops with its CNAME.
        m = try ask("out.child.example.test.", .a)
        #expect(m.rcode == .noError && m.answers.map(\.type) == [.cname])
        m = try ask("escaped\\.dot.child.example.test.", .a)
        #expect(m.answers.first?.rdata == [192, 0, 2, 23])
        m = try ask("escaped.dot.child.example.test.", .a)
        #expect(m.rcode == .nxDomain)
        m = try ask("nope.elsewhere.invalid.", .a)
        #expect(m.rcode == .refused)
    }
}
