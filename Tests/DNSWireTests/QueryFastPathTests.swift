import Foundation
import Testing
@testable import DNSWire

/// The query path's shortcuts in DNSWire give exactly what the general code gives:
/// `ParsedQuery.readCommon` (one pass over the usual query shape) against
/// `ParsedQuery.parseGeneral`, and `Wire.uncompressedNameEnd` against `Wire.readName`, over
/// the FuzzQuery corpus (Tests/Fuzz/corpus) and bounded, seeded mutations of real queries.
@Suite("Query fast paths") struct QueryFastPathTests {
    /// The FuzzQuery corpus, and queries of every shape the server sees, each with 300
    /// mutations (a byte changed, a byte dropped, a byte added) from a fixed seed.
    static func messages() throws -> [[UInt8]] {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fuzz/corpus/FuzzQuery").standardized
        var out: [[UInt8]] = []
        for f in try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted() {
            out.append([UInt8](try Data(contentsOf: corpus.appendingPathComponent(f))))
        }
        let name = try DNSName("h0001.Bench.TEST.")
        let subnet = IPPrefix(address: IPAddress("192.0.2.0")!, length: 24)
        var seeds = [
            QueryBuilder.query(id: 1, name: name, type: .a),
            QueryBuilder.query(id: 2, name: name, type: .aaaa, edns: true),
            QueryBuilder.query(id: 3, name: name, type: .mx, edns: true, udpSize: 4096, clientSubnet: subnet, nsid: true),
            QueryBuilder.query(id: 4, name: .root, type: .soa, edns: true, ednsVersion: 1),
            QueryBuilder.query(id: 5, name: try DNSName(String(repeating: "a.", count: 127)), type: .a, edns: true),
        ]
        // A COOKIE option (RFC 7873): 8 bytes of client cookie.
        var cookie = QueryBuilder.query(id: 6, name: name, type: .a, edns: true)
        cookie[cookie.count - 1] = 12
        cookie += [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]
        seeds.append(cookie)
        // xorshift64 from a fixed seed: every run tests the same messages.
        var x: UInt64 = 0x1357_9BDF_2468_ACE0
        func next() -> UInt64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
        for s in seeds {
            out.append(s)
            for _ in 0..<300 {
                var m = s
                let at = Int(next() % UInt64(m.count))
                switch next() % 3 {
                case 0: m[at] = UInt8(truncatingIfNeeded: next())
                case 1: m.remove(at: at)
                default: m.insert(UInt8(truncatingIfNeeded: next()), at: at)
                }
                out.append(m)
            }
        }
        return out
    }

    @Test func readCommonAgreesWithTheGeneralParse() throws {
        var taken = 0
        let all = try Self.messages()
        for m in all {
            m.withUnsafeBytes { p in
                guard let h = ParsedQuery.header(p) else { return }
                let general = Result { () throws(DNSWireError) in try ParsedQuery.parseGeneral(p, header: h) }
                var common = h
                guard common.readCommon(p) else {
                    #expect(Self.fields(common) == Self.fields(h), "readCommon changed what it refused: \(m)")
                    return
                }
                taken += 1
                guard case .success(let g) = general else {
                    Issue.record("readCommon accepted what the general parse refuses: \(m)")
                    return
                }
                #expect(Self.fields(common) == Self.fields(g), "\(m)")
            }
        }
        // The shortcut is the common case, not a corner: most unmutated queries take it.
        #expect(taken >= 300, "\(taken) of \(all.count)")
    }

    /// The in-place forms the engine uses (`readHeader`, `parseBody`) give what `header` and
    /// `parse` give, and leave the header alone after an error.
    @Test func inPlaceParseAgreesWithParse() throws {
        var q = ParsedQuery()
        for m in try Self.messages() {
            m.withUnsafeBytes { p in
                let h = ParsedQuery.header(p)
                #expect(q.readHeader(p) == (h != nil))
                guard let h else { return }
                #expect(Self.fields(q) == Self.fields(h))
                let whole = Result { () throws(DNSWireError) in try ParsedQuery.parse(p, header: h) }
                do throws(DNSWireError) {
                    try q.parseBody(p)
                    guard case .success(let w) = whole else { Issue.record("parseBody accepted \(m)"); return }
                    #expect(Self.fields(q) == Self.fields(w))
                } catch {
                    guard case .failure(let e) = whole else { Issue.record("parseBody refused \(m)"); return }
                    #expect(e == error)
                    #expect(Self.fields(q) == Self.fields(h))
                }
            }
        }
    }

    @Test func uncompressedNameEndAgreesWithReadName() throws {
        for m in try Self.messages() {
            m.withUnsafeBytes { p in
                for at in 0...p.count {
                    let fast = Result { () throws(DNSWireError) in try Wire.uncompressedNameEnd(p, at: at) }
                    let general = Result { () throws(DNSWireError) in try Wire.readName(p, at: at) }
                    #expect("\(fast)" == "\(general)", "\(m) at \(at)")
                }
            }
        }
    }

    /// Every field of a parse, as text (ParsedQuery is not Equatable).
    static func fields(_ q: ParsedQuery) -> String {
        var s = "\(q.id) \(q.flags) \(q.qdcount) \(q.ancount) \(q.nscount) \(q.arcount) \(q.qnameLength) "
        s += "\(q.qtype.rawValue) \(q.qclass.rawValue) \(q.questionEnd) \(q.tsigStart)"
        if let e = q.edns {
            s += " edns \(e.udpSize) \(e.version) \(e.dnssecOK) \(e.compactOK) \(String(describing: e.clientSubnet))"
            s += " \(e.nsidRequested) \(e.cookieOffset) \(e.cookieLength) \(e.keepaliveRequested)"
        }
        return s
    }
}
