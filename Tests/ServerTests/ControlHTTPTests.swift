import Answering
import Config
import DNSWire
import Foundation
import Logging
@testable import Server
import Testing
import Zones
import TestSupport

/// The control API's HTTP layer, in process: an echo handler behind `ControlHTTPServer`,
/// fed well-formed and malformed requests as raw bytes.
@Suite("Control HTTP server")
struct ControlHTTPTests {
    static func withEcho(readTimeout: Double = 2, _ body: (UInt16) throws -> Void) throws {
        let server = ControlHTTPServer(address: try ListenAddress("127.0.0.1:0"), headDeadline: readTimeout,
                                       logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })) { req in
            let q = req.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return .text(200, "\(req.method) \(req.path) \(q) [\(String(decoding: req.body, as: UTF8.self))] \(req.headers["x-test"] ?? "")")
        }
        try server.start()
        defer { server.stop() }
        try body(server.boundAddress.port)
    }

    struct Case: Sendable, CustomStringConvertible {
        var raw: String
        var status: Int
        var body: String?
        var description: String { String(raw.prefix(50)) }
    }

    static let cases: [Case] = [
        Case(raw: "GET /x?a=1&b=hello%20w+z HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, body: "GET /x a=1 b=hello w z [] "),
        Case(raw: "POST /o HTTP/1.1\r\nContent-Length: 5\r\nX-Test:  yes \r\n\r\nhello", status: 200, body: "POST /o  [hello] yes"),
        Case(raw: "GET /%7Euser HTTP/1.0\r\n\r\n", status: 200, body: "GET /~user  [] "),
        Case(raw: "NONSENSE\r\n\r\n", status: 400, body: nil),
        Case(raw: "GET / SPDY/3\r\n\r\n", status: 400, body: nil),
        Case(raw: "POST /o HTTP/1.1\r\nContent-Length: abc\r\n\r\n", status: 400, body: nil),
        Case(raw: "POST /o HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", status: 413, body: nil),
        Case(raw: "GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 20_000) + "\r\n\r\n", status: 431, body: nil),
    ]

    @Test(arguments: cases)
    func requests(_ c: Case) throws {
        try Self.withEcho { port in
            let r = try HTTP.exchange(Array(c.raw.utf8), port: port)
            #expect(r.status == c.status, "\(r.status) \(r.text)")
            if let b = c.body { #expect(r.text == b) }
            #expect(r.headers["connection"] == "close")
            #expect(r.headers["content-length"] == String(r.body.count))
        }
    }

    @Test func aSilentClientTimesOutAndOthersAreStillServed() throws {
        try Self.withEcho(readTimeout: 0.3) { port in
            // A client that connects and sends half a request holds its own thread only.
            let slow = Thread {
                _ = try? HTTP.exchange(Array("GET / HTTP/1.1\r\n".utf8), port: port, timeout: .seconds(3))
            }
            slow.start()
            let r = try HTTP.request("GET", port: port, path: "/fast")
            #expect(r.status == 200)
            let timedOut = try HTTP.exchange(Array("GET / HTTP/1.1\r\n".utf8), port: port, timeout: .seconds(3))
            #expect(timedOut.status == 408)
        }
    }

    @Test func loopbackAndTokens() throws {
        #expect(isLoopback(IPAddress("127.0.0.1")!) && isLoopback(IPAddress("127.8.9.1")!) && isLoopback(IPAddress("::1")!))
        #expect(!isLoopback(IPAddress("0.0.0.0")!) && !isLoopback(IPAddress("::")!) && !isLoopback(IPAddress("192.0.2.1")!))
        #expect(constantTimeEqual("Bearer abc", "Bearer abc"))
        #expect(!constantTimeEqual("Bearer abc", "Bearer abd") && !constantTimeEqual("Bearer abc", "Bearer abcd"))
    }

    /// The per-worker counter block counts what the answering pipeline reports: qtype,
    /// RCODE, TC, and a drop (nothing sent), without parsing the response.
    @Test func counterBlockCountsPipelineAnswers() throws {
        func name(_ s: String) throws -> DNSName { try DNSName(s) }
        let soa = try name("ns1.example.com.").wire + name("hostmaster.example.com.").wire + [UInt8](repeating: 0, count: 19) + [60]
        let txt = [UInt8(200)] + [UInt8](repeating: 0x61, count: 200)
        var records = [ResourceRecord(name: try name("example.com."), type: .soa, ttl: 60, rdata: soa),
                       ResourceRecord(name: try name("example.com."), type: .ns, ttl: 60, rdata: try name("ns1.example.com.").wire)]
        for i in 0..<4 {
            records.append(ResourceRecord(name: try name("big.example.com."), type: .txt, ttl: 60, rdata: txt + [UInt8(i)]))
        }
        let zones = ZoneSet(zones: [try Zone(origin: try name("example.com."), records: records)])
        let answerer = Answerer()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)
        defer { out.deallocate() }
        func ask(_ n: String, _ t: RRType) throws -> Answer {
            let q = DNSWire.QueryBuilder.query(id: 7, name: try name(n), type: t)
            return q.withUnsafeBytes {
                answerer.respond(query: $0, client: IPAddress("127.0.0.1")!, tcp: false, zones: zones, options: EngineOptions(),
                                 health: HealthSnapshot.allUp(count: 0), out: out, now: 0)
            }
        }
        let block = QueryCounterBlock()
        let nx = try ask("nope.example.com.", .aaaa)
        #expect(nx.outcome.kind == .nxdomain && nx.length > 12)
        block.count(nx, sent: nx.length, tcp: true)
        let big = try ask("big.example.com.", .txt)   // 4 x 202 bytes: over 512 without EDNS
        #expect(big.outcome.truncated)
        block.count(big, sent: big.length, tcp: false)
        block.count(nx, sent: 0, tcp: false)
        let aaaa = QueryCounterBlock.qtypeNames.firstIndex(of: "AAAA")!
        let txtBucket = QueryCounterBlock.qtypeNames.firstIndex(of: "TXT")!
        #expect(block.load((1 * QueryCounterBlock.qtypeBuckets + aaaa) * QueryCounterBlock.rcodes + 3) == 1, "tcp AAAA NXDOMAIN")
        #expect(block.load((0 * QueryCounterBlock.qtypeBuckets + txtBucket) * QueryCounterBlock.rcodes + 0) == 1, "udp TXT NOERROR")
        #expect(block.load(QueryCounterBlock.querySlots + 0) == 1, "udp truncated")
        #expect(block.load(QueryCounterBlock.querySlots + 2) == 1, "udp dropped")
        let total = (0..<block.slotCount).reduce(UInt64(0)) { $0 + block.load($1) }
        #expect(total == 4)
    }
}
