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
    static let plain = ZoneSet(zones: zoneSet.zones, prebuilt: nil)

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
        func has(_ name: String, _ type: RRType) -> Bool {
            let w = try! DNSName(name).lowercased().wire
            return w.withUnsafeBytes { pre.find(lowercaseWire: $0, type: type.rawValue) } != nil
        }
        #expect(has("web.example.com.", .a))
        #expect(has("example.com.", .mx))            // with the additional section
        #expect(has("child.example.com.", .soa))     // the child zone's apex, not the parent's cut
        #expect(!has("www.example.com.", .a))        // a CNAME: the chase depends on the type
        #expect(!has("web.example.com.", .aaaa))     // NODATA goes the full way
        #expect(!has("nothing.example.com.", .a))
        // A CNAME's node is held for its place only: the algorithm starts there.
        let cname = try DNSName("www.example.com.").lowercased().wire
        let k = cname.withUnsafeBytes { pre.find(lowercaseWire: $0) }
        #expect(k >= 0)
        let (zone, node) = pre.location(k)
        #expect(Self.zoneSet.zones[zone].nodes[node].rrset(.cname) != nil)
    }
}
