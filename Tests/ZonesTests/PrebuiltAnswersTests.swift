import DNSWire
import Foundation
import Testing
@testable import Zones

/// The fast path (answers encoded at load time) must answer exactly what the full
/// algorithm answers, byte for byte, for every name, type, case and size.
@Suite("Prebuilt answers") struct PrebuiltAnswersTests {
    static let zoneSet: ZoneSet = {
        let dir = Bundle.module.resourcePath! + "/Fixtures"
        let origin = try! DNSName("example.com.")
        let records = try! MasterFileParser(origin: origin, baseDirectory: dir).parseFile(path: dir + "/basic.zone")
        let child = try! DNSName("child.example.com.")
        let childRecords = try! MasterFileParser(origin: child, baseDirectory: dir).parse(contents: """
            $TTL 300
            @ SOA ns1 hostmaster 1 2 3 4 5
              NS ns1
            ns1 A 192.0.2.99
            www A 192.0.2.100
            """, file: "child.zone")
        return ZoneSet(zones: [try! Zone(origin: origin, records: records), try! Zone(origin: child, records: childRecords)])
    }()

    /// The same zones without the fast path.
    static let plain = ZoneSet(bare: zoneSet.zones)

    static let types: [RRType] = [.a, .aaaa, .ns, .mx, .soa, .txt, .cname, .srv, .caa, .https, .svcb, .hinfo, .naptr, .ds, .ptr, .any]

    /// Mixed case, so the copied question keeps the client's spelling.
    static func scramble(_ s: String) -> String {
        String(s.enumerated().map { $0.offset % 2 == 0 ? Character($0.element.uppercased()) : $0.element })
    }

    static func answer(_ q: [UInt8], zones: ZoneSet, tcp: Bool) -> [UInt8] {
        let engine = QueryEngine()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
        defer { out.deallocate() }
        let n = q.withUnsafeBytes { engine.respond(query: $0, client: IPAddress("192.0.2.1")!, tcp: tcp, zones: zones, options: EngineOptions(), out: out) }
        return Array(out[0..<n])
    }

    @Test func everyNameAndTypeMatchesTheFullAlgorithm() throws {
        var names = Set<String>()
        for z in Self.zoneSet.zones { for node in z.nodes { names.insert(node.name.description) } }
        names.formUnion(["nothing.example.com.", "a.b.child.example.com.", "www.child.example.com."])
        var compared = 0
        for name in names.sorted() {
            for spelled in [name, Self.scramble(name)] {
                let owner = try DNSName(spelled)
                for type in Self.types {
                    for (edns, tcp, size) in [(false, false, UInt16(512)), (true, false, 1232), (true, false, 512), (false, true, 512)] {
                        let q = QueryBuilder.query(id: 99, name: owner, type: type, edns: edns, udpSize: size)
                        let fast = Self.answer(q, zones: Self.zoneSet, tcp: tcp)
                        let full = Self.answer(q, zones: Self.plain, tcp: tcp)
                        #expect(fast == full, "\(spelled) \(type) edns \(edns) tcp \(tcp) size \(size)")
                        compared += 1
                    }
                }
            }
        }
        #expect(compared > 500)
    }

    @Test func holdsStaticNamesAndLeavesTheRestToTheAlgorithm() throws {
        let pre = try #require(Self.zoneSet.prebuilt)
        let zones = Self.zoneSet
        /// (held, has an entry for the type)
        func lookup(_ name: String, _ type: RRType) -> (Bool, Bool) {
            let w = try! DNSName(name).lowercased().wire
            guard let (z, _) = w.withUnsafeBytes({ zones.findZone(lowercaseWire: $0) }) else { return (false, false) }
            let i = w.withUnsafeBytes { zones.zones[z].nodeIndex(lowercaseWire: $0) }
            guard i >= 0, pre.holds(zone: z, node: i) else { return (false, false) }
            return (true, pre.entry(zone: z, node: i, type: type.rawValue) != nil)
        }
        #expect(lookup("web.example.com.", .a) == (true, true))
        #expect(lookup("example.com.", .mx) == (true, true))          // with the additional section
        #expect(lookup("child.example.com.", .soa) == (true, true))   // the child zone's apex
        #expect(lookup("www.example.com.", .a) == (true, false))      // a CNAME: held for its place only
        #expect(lookup("web.example.com.", .aaaa) == (true, false))   // NODATA goes the full way
        #expect(lookup("nothing.example.com.", .a) == (false, false))
    }

    /// A GSLB name at the apex beside SOA, NS, MX, TXT and CAA, and one answering only A
    /// beside a static AAAA: the static types are prebuilt (and equal the full algorithm's
    /// answer), the types the policy owns never are, so health decides them per query.
    @Test func gslbNodesKeepOnlyTheirStaticTypes() throws {
        let origin = try DNSName("gslb.test.")
        let records = try MasterFileParser(origin: origin, baseDirectory: ".").parse(contents: """
            $TTL 300
            @ SOA ns1 hostmaster 1 2 3 4 5
              NS ns1
              MX 10 mail
              TXT "v=spf1 -all"
              CAA 0 issue "ca.example"
            ns1 A 192.0.2.53
            mail A 192.0.2.25
            v4only AAAA 2001:db8::25
            v4only TXT "beside"
            """, file: "gslb.zone")
        let bindings = [GSLBBinding(owner: origin, index: 0, types: [.a, .aaaa]),
                        GSLBBinding(owner: try DNSName("v4only.gslb.test."), index: 1, types: [.a])]
        let zones = ZoneSet(zones: [try Zone(origin: origin, records: records, dynamicNames: bindings)])
        let plain = ZoneSet(bare: zones.zones)
        let pre = try #require(zones.prebuilt)
        func entry(_ name: String, _ type: RRType) -> Bool {
            let w = try! DNSName(name).lowercased().wire
            let i = w.withUnsafeBytes { zones.zones[0].nodeIndex(lowercaseWire: $0) }
            return pre.holds(zone: 0, node: i) && pre.entry(zone: 0, node: i, type: type.rawValue) != nil
        }
        for t in [RRType.soa, .ns, .mx, .txt, .caa] { #expect(entry("gslb.test.", t), "\(t) at the apex is prebuilt") }
        #expect(!entry("gslb.test.", .a) && !entry("gslb.test.", .aaaa))
        #expect(entry("v4only.gslb.test.", .aaaa) && entry("v4only.gslb.test.", .txt) && !entry("v4only.gslb.test.", .a))
        for name in ["gslb.test.", "v4only.gslb.test."] {
            for type in Self.types {
                let q = QueryBuilder.query(id: 7, name: try DNSName(name), type: type, edns: true, udpSize: 1232)
                #expect(Self.answer(q, zones: zones, tcp: false) == Self.answer(q, zones: plain, tcp: false), "\(name) \(type)")
            }
        }
    }
}
