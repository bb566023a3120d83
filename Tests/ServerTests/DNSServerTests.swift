import DNSWire
import Foundation
import Glibc
import Platform
import Logging
import Server
import Testing

/// Echoes the query with QR set. ID 0xDEAD is dropped (returns 0); ID 0xC1C1 also appends
/// the client address it was given (family byte, then 16 address bytes).
final class EchoResponder: QueryResponder {
    func respond(query: UnsafeRawBufferPointer, client: IPAddress, transport: Transport,
                 response: UnsafeMutableRawBufferPointer) -> Int {
        guard query.count >= 12, query.count + 17 <= response.count else { return 0 }
        if query[0] == 0xDE && query[1] == 0xAD { return 0 }
        response.copyMemory(from: query)
        response[2] |= 0x80
        guard query[0] == 0xC1 && query[1] == 0xC1 else { return query.count }
        response[query.count] = client.isV4 ? 4 : 6
        for i in 0..<16 { response[query.count + 1 + i] = client.byte(i) }
        return query.count + 17
    }
}

func quietLogger() -> Logger {
    var l = Logger(label: "meridian.test.server")
    l.logLevel = .critical
    return l
}

func startServer(_ addresses: [String], limits: TCPLimits = TCPLimits(), workers: Int = 2) throws -> DNSServer {
    let server = DNSServer(listen: try addresses.map { try ListenAddress($0) }, workers: workers,
                           responderFactory: { EchoResponder() }, limits: limits, logger: quietLogger())
    try server.start()
    return server
}

/// Polls `condition` for up to `ms` (counters are updated by server threads just after
/// the client sees the effect).
func eventually(ms: Int = 2000, _ condition: () -> Bool) -> Bool {
    for _ in 0..<(ms / 10) {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// True when this machine can bind ::1 (containers sometimes have IPv6 disabled).
let ipv6Available: Bool = {
    let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var s = sockaddr_in6()
    s.sin6_family = sa_family_t(AF_INET6)
    s.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &s) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
    } == 0
}()

@Suite struct ListenAddressTests {
    @Test(arguments: [
        ("127.0.0.1:5353", "127.0.0.1", UInt16(5353)),
        ("[::1]:5353", "::1", 5353),
        ("0.0.0.0:53", "0.0.0.0", 53),
        ("[::]:53", "::", 53),
        ("[2001:db8::1]:0", "2001:db8::1", 0),
    ])
    func parses(text: String, address: String, port: UInt16) throws {
        let a = try ListenAddress(text)
        #expect(a.address == IPAddress(address)!)
        #expect(a.port == port)
        #expect(a.description == text)
    }

    @Test(arguments: [
        ("127.0.0.1", "missing ':port'"),
        ("127.0.0.1:", "missing port"),
        (":53", "missing address"),
        ("::1:53", "needs brackets"),
        ("[::1]", "missing ':port'"),
        ("[::1:53", "missing ']'"),
        ("[127.0.0.1]:53", "only for IPv6"),
        ("localhost:53", "not an IP address"),
        ("127.0.0.1:65536", "from 0 to 65535"),
        ("127.0.0.1:-1", "from 0 to 65535"),
        ("127.0.0.1:5x", "from 0 to 65535"),
        ("", "missing ':port'"),
    ])
    func rejects(text: String, reason: String) {
        #expect {
            _ = try ListenAddress(text)
        } throws: { error in
            let text = "\(error)"
            return text.contains(reason) && text.contains("bad listen address")
        }
    }
}

@Suite struct DNSServerTests {
    @Test func udpAnsweredOnIPv4() throws { try udpAnswered(on: ["127.0.0.1:0"]) }

    @Test(.enabled(if: ipv6Available, "this host cannot bind ::1"))
    func udpAnsweredOnIPv4AndIPv6() throws { try udpAnswered(on: ["127.0.0.1:0", "[::1]:0"]) }

    func udpAnswered(on listen: [String]) throws {
        let server = try startServer(listen)
        defer { server.stop() }
        let bound = server.boundAddresses
        #expect(bound.count == listen.count)
        for address in bound {
            #expect(address.port != 0)
            let reply = try #require(Net.udpQuery(address, makeQuery(id: 0xC1C1)))
            #expect(messageID(reply) == 0xC1C1)
            #expect(reply[2] & 0x80 != 0)
            // The responder saw the real client address of the right family.
            let q = makeQuery(id: 0xC1C1)
            #expect(reply.count == q.count + 17)
            let family = reply[q.count]
            let client = IPAddress(bytes: reply[(q.count + 1)..<(q.count + (family == 4 ? 5 : 17))])
            #expect(client == address.address)
        }
        // Workers bump counters after sendmmsg returns, which can be after the client has the reply.
        #expect(eventually { server.counters.udpSent >= UInt64(bound.count) })
        #expect(server.counters.udpReceived >= UInt64(bound.count))
    }

    // 127.0.0.2 is loopback too. Without IP_PKTINFO the reply to a query sent there
    // would leave from 127.0.0.1, and the connected client socket below would drop it.
    @Test func wildcardIPv4SocketAnswersFromQueriedAddress() throws {
        try wildcardSocketAnswersFromQueriedAddress(listen: "0.0.0.0:0", target: "127.0.0.2")
    }

    // IPv6 has only ::1 on loopback, so this case checks the IPV6_PKTINFO reply path works.
    @Test(.enabled(if: ipv6Available, "this host cannot bind ::1"))
    func wildcardIPv6SocketAnswersFromQueriedAddress() throws {
        try wildcardSocketAnswersFromQueriedAddress(listen: "[::]:0", target: "::1")
    }

    func wildcardSocketAnswersFromQueriedAddress(listen: String, target: String) throws {
        let to0 = ListenAddress(address: IPAddress(target)!, port: 0)
        let server = try startServer([listen])
        defer { server.stop() }
        let to = ListenAddress(address: to0.address, port: server.boundAddresses[0].port)
        let fd = socket(Net.family(to), Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        let connected = Net.withSockaddr(to) { connect(fd, $0, $1) }
        try #require(connected == 0)
        let q = makeQuery(id: 0x0202)
        #expect(q.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == q.count)
        // A connected UDP socket drops datagrams from any other source address.
        #expect(Net.wait(fd, POLLIN, ms: 1000))
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(n == q.count)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/dig"), "dig is not installed"))
    func digGetsAnswersOverUDPAndTCP() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let port = server.boundAddresses[0].port
        for extra in ["+notcp", "+tcp"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/dig")
            p.arguments = ["@127.0.0.1", "-p", "\(port)", "example.com", "A", extra, "+tries=1", "+time=2", "+nocookie", "+noedns"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = Pipe()
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            #expect(p.terminationStatus == 0, "dig \(extra): \(text)")
            #expect(text.contains("status: NOERROR"), "dig \(extra): \(text)")
        }
    }

    @Test(arguments: [1, 2])
    func tcpPipelinedQueriesAnsweredInOrder(tcpThreads: Int) throws {
        try tcpPipelinedQueriesAnsweredInOrder(listen: ["127.0.0.1:0"], tcpThreads: tcpThreads)
    }

    @Test(.enabled(if: ipv6Available, "this host cannot bind ::1"), arguments: [1, 2])
    func tcpPipelinedQueriesAnsweredInOrderOnIPv4AndIPv6(tcpThreads: Int) throws {
        try tcpPipelinedQueriesAnsweredInOrder(listen: ["127.0.0.1:0", "[::1]:0"], tcpThreads: tcpThreads)
    }

    func tcpPipelinedQueriesAnsweredInOrder(listen: [String], tcpThreads: Int) throws {
        let server = try startServer(listen, limits: TCPLimits(threads: tcpThreads))
        defer { server.stop() }
        // Several connections per address, so with two threads both listeners get some.
        for address in server.boundAddresses + server.boundAddresses + server.boundAddresses {
            let c = try #require(TCPClient(address))
            let ids: [UInt16] = [0x1111, 0x2222, 0x3333]
            // All three in one write, so the server reads them in one buffer.
            #expect(c.send(ids.flatMap { framed(makeQuery(id: $0)) }))
            for id in ids {
                let m = try #require(c.readMessage())
                #expect(messageID(m) == id)
                #expect(m[2] & 0x80 != 0)
            }
        }
        #expect(eventually { server.counters.tcpQueries >= 3 })
    }

    @Test func tcpQuerySentByteByByteIsAnswered() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let c = try #require(TCPClient(server.boundAddresses[0]))
        for b in framed(makeQuery(id: 0x4242)) {
            #expect(c.send([b]))
            usleep(2000)
        }
        let m = try #require(c.readMessage())
        #expect(messageID(m) == 0x4242)
    }

    @Test func stalledTCPClientDelaysNobody() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let address = server.boundAddresses[0]
        let stalled = try #require(TCPClient(address))
        #expect(stalled.send([0x00]))
        usleep(50_000)
        // Bounded: each must be answered within 1 s while the stalled one stays open.
        #expect(Net.udpQuery(address, makeQuery(id: 0x5151), ms: 1000).map(messageID) == 0x5151)
        let other = try #require(TCPClient(address))
        #expect(other.send(framed(makeQuery(id: 0x5252))))
        #expect(other.readMessage(ms: 1000).map(messageID) == 0x5252)
        // A client that sent half a message with a big length also delays nobody.
        let half = try #require(TCPClient(address))
        #expect(half.send([0x01, 0x00] + Array(repeating: 0, count: 40)))
        #expect(Net.udpQuery(address, makeQuery(id: 0x5353), ms: 1000).map(messageID) == 0x5353)
        withExtendedLifetime((stalled, half)) {}
    }

    @Test func largeTCPMessageIsAnswered() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let c = try #require(TCPClient(server.boundAddresses[0]))
        // 40000 bytes: far past the connection's initial buffer, so it has to grow.
        let big = makeQuery(id: 0x7777) + Array(repeating: 0xAB, count: 40_000)
        #expect(c.send(framed(big)))
        let m = try #require(c.readMessage(ms: 2000))
        #expect(m.count == big.count)
        #expect(messageID(m) == 0x7777)
    }

    @Test func clientThatDoesNotReadStillGetsEveryAnswer() throws {
        // Enough pipelined queries that the answers overflow the socket buffers and the
        // server's output high-water mark, so it must pause reading and resume later.
        // 3000 answers of 1.2 KB each: more than loopback socket buffers hold.
        let count = 3000
        let server = try startServer(["127.0.0.1:0"], limits: TCPLimits(maxQueriesPerConnection: count))
        defer { server.stop() }
        let c = try #require(TCPClient(server.boundAddresses[0]))
        let padding = [UInt8](repeating: 0, count: 1200)
        let payload = (0..<count).flatMap { framed(makeQuery(id: UInt16($0)) + padding) }
        let fd = c.fd
        let done = DispatchSemaphore(value: 0)
        let writer = Thread {
            var off = 0
            for _ in 0..<100_000 where off < payload.count {
                let n = payload.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
                off += n
            }
            done.signal()
        }
        // Let the server fill its buffers before reading anything.
        writer.start()
        usleep(300_000)
        var inOrder = 0
        for i in 0..<count {
            guard let m = c.readMessage(ms: 3000) else { break }
            if messageID(m) == UInt16(i) { inOrder += 1 }
        }
        #expect(inOrder == count)
        // The writer must be done before the socket closes and its number is reused.
        #expect(done.wait(timeout: .now() + 5) == .success)
    }

    @Test func oversizedUDPDatagramIsDropped() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let address = server.boundAddresses[0]
        let big = makeQuery(id: 0x8888) + Array(repeating: 0, count: 5000)
        #expect(Net.udpQuery(address, big, ms: 300) == nil)
        #expect(Net.udpQuery(address, makeQuery(id: 0x8889)).map(messageID) == 0x8889)
        #expect(eventually { server.counters.udpDropped >= 1 })
    }

    @Test func idleTimeoutClosesSilentConnection() throws {
        let server = try startServer(["127.0.0.1:0"], limits: TCPLimits(idleTimeout: .milliseconds(300)))
        defer { server.stop() }
        let c = try #require(TCPClient(server.boundAddresses[0]))
        #expect(c.send(framed(makeQuery(id: 7))))
        #expect(c.readMessage().map(messageID) == 7)
        #expect(c.closedByServer(ms: 3000))
        #expect(eventually { server.counters.tcpTimeouts >= 1 })
    }

    @Test func messageReadTimeoutClosesStalledMessage() throws {
        let server = try startServer(["127.0.0.1:0"], limits: TCPLimits(messageReadTimeout: .milliseconds(300)))
        defer { server.stop() }
        let c = try #require(TCPClient(server.boundAddresses[0]))
        #expect(c.send([0x00]))
        #expect(c.closedByServer(ms: 3000))
    }

    @Test func connectionCapRejectsTheNewest() throws {
        let server = try startServer(["127.0.0.1:0"], limits: TCPLimits(maxConnections: 2))
        defer { server.stop() }
        let address = server.boundAddresses[0]
        let a = try #require(TCPClient(address))
        let b = try #require(TCPClient(address))
        // A round trip on each proves both were accepted before the third arrives.
        for (c, id) in [(a, UInt16(1)), (b, 2)] {
            #expect(c.send(framed(makeQuery(id: id))))
            #expect(c.readMessage().map(messageID) == id)
        }
        let extra = try #require(TCPClient(address))
        #expect(extra.closedByServer(ms: 2000))
        #expect(eventually { server.counters.tcpRejected >= 1 })
        // The first two still work.
        #expect(a.send(framed(makeQuery(id: 3))))
        #expect(a.readMessage().map(messageID) == 3)
        withExtendedLifetime(b) {}
    }

    @Test func perClientCapRejectsTheNewest() throws {
        let server = try startServer(["127.0.0.1:0"], limits: TCPLimits(maxConnectionsPerClient: 1))
        defer { server.stop() }
        let address = server.boundAddresses[0]
        var a: TCPClient? = TCPClient(address)
        try #require(a != nil)
        #expect(a?.send(framed(makeQuery(id: 1))) == true)
        #expect(a?.readMessage().map(messageID) == 1)
        let b = try #require(TCPClient(address))
        #expect(b.closedByServer(ms: 2000))
        // Once the first is gone, the same client is admitted again.
        a = nil
        #expect(eventually { server.counters.tcpOpen == 0 })
        let c = try #require(TCPClient(address))
        #expect(c.send(framed(makeQuery(id: 2))))
        #expect(c.readMessage().map(messageID) == 2)
    }

    @Test func queryCapClosesAfterLastAnswer() throws {
        let server = try startServer(["127.0.0.1:0"], limits: TCPLimits(maxQueriesPerConnection: 2))
        defer { server.stop() }
        let c = try #require(TCPClient(server.boundAddresses[0]))
        #expect(c.send([10, 11, 12].flatMap { framed(makeQuery(id: $0)) }))
        #expect(c.readMessage().map(messageID) == 10)
        #expect(c.readMessage().map(messageID) == 11)
        #expect(c.closedByServer(ms: 2000))
    }

    @Test func badTCPFramesDoNotCrash() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let address = server.boundAddresses[0]
        // Garbage too short for a header: the responder drops it, the connection carries on.
        let g = try #require(TCPClient(address))
        #expect(g.send(framed([1, 2, 3, 4, 5]) + framed(makeQuery(id: 0x6161))))
        #expect(g.readMessage().map(messageID) == 0x6161)
        // A zero-length frame: the stream is out of sync, so the server closes it.
        let z = try #require(TCPClient(address))
        #expect(z.send([0, 0]))
        #expect(z.closedByServer(ms: 2000))
        // The largest length with too few bytes, then the client goes away.
        do {
            let big = try #require(TCPClient(address))
            #expect(big.send([0xFF, 0xFF, 1, 2, 3]))
        }
        let after = try #require(TCPClient(address))
        #expect(after.send(framed(makeQuery(id: 0x6262))))
        #expect(after.readMessage().map(messageID) == 0x6262)
    }

    @Test func responderReturningZeroSendsNothing() throws {
        let server = try startServer(["127.0.0.1:0"])
        defer { server.stop() }
        let address = server.boundAddresses[0]
        #expect(Net.udpQuery(address, makeQuery(id: 0xDEAD), ms: 300) == nil)
        #expect(eventually { server.counters.udpDropped >= 1 })
        let c = try #require(TCPClient(address))
        #expect(c.send(framed(makeQuery(id: 0xDEAD)) + framed(makeQuery(id: 0x0101))))
        // The first answer on the stream is the second query's: nothing was sent for the first.
        #expect(c.readMessage().map(messageID) == 0x0101)
    }

    @Test(arguments: [false, true])
    func stopReturnsPromptlyWithOpenConnections(twoAddresses: Bool) throws {
        // With two addresses each UDP worker waits in poll() instead of recvmmsg.
        let server = try startServer(twoAddresses ? ["127.0.0.1:0", "127.0.0.1:0"] : ["127.0.0.1:0"])
        let address = server.boundAddresses[0]
        let stalled = try #require(TCPClient(address))
        #expect(stalled.send([0x00]))
        #expect(Net.udpQuery(address, makeQuery(id: 9)).map(messageID) == 9)
        let started = ContinuousClock.now
        server.stop()
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(stalled.closedByServer(ms: 1000))
        server.stop()
        // The port is free again: nothing is left bound.
        #expect(Net.udpQuery(address, makeQuery(id: 10), ms: 200) == nil)
    }

    @Test func bindErrorNamesSyscallAndAddress() throws {
        // 192.0.2.1 (TEST-NET-1, RFC 5737) is not a local address here.
        let server = DNSServer(listen: [try ListenAddress("192.0.2.1:0")], workers: 1,
                               responderFactory: { EchoResponder() }, limits: TCPLimits(), logger: quietLogger())
        #expect {
            try server.start()
        } throws: { error in
            guard let e = error as? SystemError else { return false }
            return e.syscall == "bind" && e.errno == EADDRNOTAVAIL && "\(e)".contains("192.0.2.1:0, udp")
        }
        server.stop()
    }

    @Test func portInUseIsReported() throws {
        // SO_REUSEPORT lets the same user share a port, so hold it from a plain socket instead.
        let holder = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(holder) }
        let probe = ListenAddress(address: IPAddress("127.0.0.1")!, port: 0)
        let ok = Net.withSockaddr(probe) { bind(holder, $0, $1) }
        try #require(ok == 0)
        let port = try #require(SocketAddress.local(of: holder)).port
        let server = DNSServer(listen: [ListenAddress(address: IPAddress("127.0.0.1")!, port: port)], workers: 1,
                               responderFactory: { EchoResponder() }, limits: TCPLimits(), logger: quietLogger())
        #expect {
            try server.start()
        } throws: { error in
            (error as? SystemError)?.errno == EADDRINUSE
        }
        server.stop()
    }
}
