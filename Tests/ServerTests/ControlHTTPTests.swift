import DNSWire
import Foundation
import Logging
@testable import Server
import Testing
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

    @Test(arguments: [("90", 90.0), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5m", 90)] as [(String, Double)])
    func durations(_ text: String, _ seconds: Double) {
        #expect(parseDurationText(text) == seconds)
    }

    @Test(arguments: ["", "m", "-5m", "0", "10x", "abc"])
    func badDurations(_ text: String) {
        #expect(parseDurationText(text) == nil)
    }

    @Test func loopbackAndTokens() throws {
        #expect(isLoopback(IPAddress("127.0.0.1")!) && isLoopback(IPAddress("127.8.9.1")!) && isLoopback(IPAddress("::1")!))
        #expect(!isLoopback(IPAddress("0.0.0.0")!) && !isLoopback(IPAddress("::")!) && !isLoopback(IPAddress("192.0.2.1")!))
        #expect(constantTimeEqual("Bearer abc", "Bearer abc"))
        #expect(!constantTimeEqual("Bearer abc", "Bearer abd") && !constantTimeEqual("Bearer abc", "Bearer abcd"))
    }

    @Test func clientURLs() throws {
        #expect(try ControlClient(url: "http://127.0.0.1:8053/").address.description == "127.0.0.1:8053")
        #expect(try ControlClient(url: "localhost:9").address.description == "127.0.0.1:9")
        #expect(try ControlClient(url: "[::1]:8053").address.description == "[::1]:8053")
        #expect(throws: ControlConfigError.self) { try ControlClient(url: "https://127.0.0.1:8053") }
        #expect(throws: ControlConfigError.self) { try ControlClient(url: "127.0.0.1") }
    }

    /// The per-worker counter block decodes qtype, rcode and TC from a response it did not
    /// parse before (RFC 1035 4.1.1 header, 4.1.2 question).
    @Test func counterBlockDecodesResponses() throws {
        let block = QueryCounterBlock()
        let q = DNSWire.QueryBuilder.query(id: 7, name: try DNSName("www.example.com."), type: .aaaa)
        var r = q
        r[2] |= 0x80 | 0x02   // QR, TC
        r[3] = (r[3] & 0xF0) | 3 // NXDOMAIN
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
        defer { raw.deallocate() }
        raw.copyBytes(from: r)
        block.countResponse(raw, length: r.count, tcp: true)
        block.countResponse(raw, length: 0, tcp: false)
        let aaaa = QueryCounterBlock.qtypeNames.firstIndex(of: "AAAA")!
        let slot = (1 * QueryCounterBlock.qtypeBuckets + aaaa) * QueryCounterBlock.rcodes + 3
        #expect(block.load(slot) == 1)
        #expect(block.load(QueryCounterBlock.querySlots + 1) == 1, "tcp truncated")
        #expect(block.load(QueryCounterBlock.querySlots + 2) == 1, "udp dropped")
        let total = (0..<block.slotCount).reduce(UInt64(0)) { $0 + block.load($1) }
        #expect(total == 3)
    }
}
