import DNSWire
import Foundation
import Testing
import TestSupport

/// Black-box tests of the real `meridian` binary (issue 2, "Tests"): each test starts
/// `meridian serve --zones Fixtures/zones --listen 127.0.0.1:<free port>` and queries it
/// with `dig` or the raw client. When the binary is missing or exits at once, every test
/// fails with the reason and the server's log; nothing waits longer than about ten seconds.
@Suite("Meridian end to end", .serialized)
struct MeridianTests {
    @Test("Answer table (same rows NSD passes in Harness)", arguments: answerTable)
    func answers(_ row: AnswerCase) async throws {
        try await withMeridian { server in
            row.check(try await Dig.query(row.name, row.type, port: server.port), server: "meridian")
            // The same over TCP: the transport does not change the answer.
            row.check(try await Dig.query(row.name, row.type, port: server.port, options: ["+tcp"]), server: "meridian/tcp")
        }
    }

    @Test func shortAnswerForm() async throws {
        try await withMeridian { server in
            let lines = try await Dig.short("www.example.com", "A", port: server.port)
            #expect(lines == ["www.example.com. 3600 IN A 192.0.2.10", "www.example.com. 3600 IN A 192.0.2.11"])
        }
    }

    @Test func neverSetsRAAndNeverRecurses() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("www.example.com", "A", port: server.port, options: ["+rec"])
            #expect(r.status == "NOERROR" && r.aa)
            #expect(!r.flags.contains("ra"))
            #expect(r.flags.contains("rd"), "RD is copied from the query (RFC 1035 4.1.1)")
        }
    }

    @Test func questionCaseIsPreserved() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("wWw.ExAmple.com", "A", port: server.port)
            #expect(r.question == "wWw.ExAmple.com. IN A", "\(r.raw)")
            #expect(r.status == "NOERROR" && r.aa)
            #expect(r.answer.count == 2)
        }
    }

    @Test func truncatesWithoutEDNSThenAnswersOverTCP() async throws {
        try await withMeridian { server in
            // 40 A records: about 700 bytes, over the 512 allowed without EDNS (RFC 1035 4.2.1).
            let udp = try await Dig.query("big.example.com", "A", port: server.port, options: ["+noedns", "+ignore"])
            #expect(udp.status == "NOERROR")
            #expect(udp.tc, "\(udp.raw)")
            // RFC 2181 9: never a partial RRset.
            #expect(udp.answer.isEmpty || udp.answer.count == 40, "\(udp.raw)")
            let tcp = try await Dig.query("big.example.com", "A", port: server.port, options: ["+noedns", "+tcp"])
            #expect(!tcp.tc)
            #expect(tcp.answer.count == 40)
            #expect(Set(tcp.answer.map(\.rdata)).count == 40)
            // With EDNS and a 1232-byte buffer the same answer fits in UDP.
            let edns = try await Dig.query("big.example.com", "A", port: server.port, options: ["+bufsize=1232", "+ignore"])
            #expect(!edns.tc && edns.answer.count == 40, "\(edns.raw)")
            // A client buffer smaller than the answer truncates again.
            let small = try await Dig.query("big.example.com", "A", port: server.port, options: ["+bufsize=512", "+ignore"])
            #expect(small.tc, "\(small.raw)")
        }
    }

    @Test func ednsVersionAboveZeroGetsBADVERS() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("www.example.com", "A", port: server.port, options: ["+edns=1", "+noednsnegotiation"])
            #expect(r.status == "BADVERS", "\(r.raw)")
            #expect(r.ednsVersion == 0, "RFC 6891 6.1.3: the reply's OPT carries the highest version the server supports")
            #expect(r.answer.isEmpty)
        }
    }

    /// RFC 1035 4.1.1 and ISC's EDNS compliance test "opcode": an unknown opcode is NOTIMP
    /// before anything else is looked at, with the opcode, RD and CD echoed and AA, TC and Z clear.
    @Test func unknownOpcodeIsNotImplemented() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("www.example.com", "A", port: server.port, options: ["+opcode=15", "+header-only"])
            #expect(r.status == "NOTIMP", "\(r.raw)")
            var bare = RawQuery(name: "www.example.com.")
            bare.flags = 15 << 11 | HeaderFlags.rd | HeaderFlags.cd | HeaderFlags.aa | HeaderFlags.tc | 0x0040
            bare.qdcountOverride = 0
            var asked = RawQuery(name: "www.example.com.")
            asked.flags = 15 << 11 | HeaderFlags.rd | HeaderFlags.cd
            for (label, packet) in [("no question", bare.bytes()), ("one question", asked.bytes())] {
                let reply = try #require(try RawDNSClient(port: server.port).udpExchange(packet).map(DNSReply.init), "\(label): no reply")
                #expect(reply.qr && reply.rcode == RCode.notImp.rawValue, "\(label): rcode \(reply.rcode)")
                #expect((reply.flags >> 11) & 0xF == 15, "\(label): opcode echoed")
                #expect(reply.flags & HeaderFlags.rd != 0 && reply.flags & HeaderFlags.cd != 0, "\(label): RD and CD echoed")
                #expect(!reply.aa && !reply.tc && reply.flags & 0x0040 == 0, "\(label): AA, TC and Z clear")
                #expect(reply.ancount == 0 && reply.nscount == 0)
            }
        }
    }

    @Test func ednsIsEchoed() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("www.example.com", "A", port: server.port, options: ["+edns=0"])
            #expect(r.status == "NOERROR")
            #expect(r.ednsVersion == 0)
            #expect((r.udpSize ?? 0) >= 512)
            let plain = try await Dig.query("www.example.com", "A", port: server.port, options: ["+noedns"])
            #expect(plain.ednsVersion == nil, "no OPT in the reply to a query without one (RFC 6891 7)")
        }
    }

    @Test func clientSubnetIsEchoedWithScopeZero() async throws {
        try await withMeridian { server in
            let r = try await Dig.query("www.example.com", "A", port: server.port, options: ["+subnet=192.0.2.0/24"])
            #expect(r.status == "NOERROR")
            #expect(r.clientSubnet == "192.0.2.0/24/0", "\(r.raw)")
            let v6 = try await Dig.query("www.example.com", "AAAA", port: server.port, options: ["+subnet=2001:db8::/56"])
            #expect(v6.clientSubnet == "2001:db8::/56/0", "\(v6.raw)")
        }
    }

    @Test func anyGetsAMinimalAnswer() async throws {
        try await withMeridian { server in
            for name in ["www.example.com", "example.com"] {
                let r = try await Dig.query(name, "ANY", port: server.port)
                #expect(r.status == "NOERROR" && r.aa, "\(r.raw)")
                // RFC 8482 4.1/4.2: one RRset, or a synthesized HINFO "RFC8482".
                let types = Set(r.answer.map(\.type))
                #expect(types.count == 1, "\(r.raw)")
                if types == ["HINFO"] { #expect(r.answer.first?.rdata.contains("RFC8482") == true) }
            }
        }
    }

    @Test func zoneTransfersAreRefused() async throws {
        try await withMeridian { server in
            // Without a transfer ACL (issue 18: --allow-transfer, transfers:) AXFR and IXFR are REFUSED.
            for type in [RRType.axfr, RRType.ixfr] {
                let reply = try RawDNSClient(port: server.port).tcpExchange(RawQuery(name: "example.com.", type: type).bytes())
                let r = try #require(reply.map(DNSReply.init), "no reply to \(type)")
                #expect(r.rcode == RCode.refused.rawValue, "\(type): rcode \(r.rcode)")
            }
            // And the server is still there.
            #expect(try await Dig.query("www.example.com", "A", port: server.port).status == "NOERROR")
        }
    }

    @Test func pipelinedTCPQueriesOnOneConnection() async throws {
        try await withMeridian { server in
            let conn = try RawDNSClient(port: server.port).tcpConnect(timeout: .seconds(3))
            defer { conn.close() }
            let questions: [(UInt16, String, RRType)] = [(0x0101, "www.example.com.", .a), (0x0202, "nope.example.com.", .a),
                                                         (0x0303, "example.com.", .mx)]
            // RFC 7766 6.2.1.1: all three written at once, before reading anything.
            try conn.sendRaw(questions.flatMap { TCPConnection.frame(RawQuery(id: $0.0, name: $0.1, type: $0.2).bytes()) })
            var replies: [UInt16: DNSReply] = [:]
            for _ in questions {
                let m = try #require(try conn.receiveFramed(), "fewer than 3 answers on the connection")
                let r = DNSReply(m)
                replies[r.id] = r
            }
            #expect(Set(replies.keys) == [0x0101, 0x0202, 0x0303])
            #expect(replies[0x0101]?.rcode == RCode.noError.rawValue && replies[0x0101]?.ancount == 2)
            #expect(replies[0x0202]?.rcode == RCode.nxDomain.rawValue)
            #expect(replies[0x0303]?.ancount == 2)
            // The connection stays open for more (RFC 7766 6.2.1).
            try conn.sendFramed(RawQuery(id: 0x0404, name: "www.example.com.").bytes())
            #expect(try conn.receiveFramed().map { DNSReply($0).id } == 0x0404)
        }
    }

    @Test func stalledTCPDoesNotDelayUDPOrOtherTCP() async throws {
        try await withMeridian { server in
            let client = RawDNSClient(port: server.port)
            // Several clients that connect and stall: one sends nothing, one half a length
            // prefix, one a length prefix promising bytes that never come.
            var stalled: [TCPConnection] = []
            for partial in [[], [0x00], [0x00, 0x40, 0x12, 0x34]] as [[UInt8]] {
                let c = try client.tcpConnect()
                if !partial.isEmpty { try c.sendRaw(partial) }
                stalled.append(c)
            }
            defer { for c in stalled { c.close() } }
            // Bounded waits, not speed: each must answer within dig's 2-second timeout.
            for _ in 0..<3 {
                let r = try await Dig.query("www.example.com", "A", port: server.port)
                #expect(r.status == "NOERROR" && r.answer.count == 2, "UDP blocked behind stalled TCP: \(r.raw)")
            }
            let tcp = try await Dig.query("www.example.com", "A", port: server.port, options: ["+tcp"])
            #expect(tcp.status == "NOERROR" && tcp.answer.count == 2, "TCP blocked behind stalled TCP: \(tcp.raw)")
        }
    }

    /// One malformed packet each; the expected reply is FORMERR (or, for packets that are
    /// not answerable queries, no reply), and the server must answer normally afterwards.
    struct Malformed: CustomStringConvertible, Sendable {
        enum Expect: Sendable { case rcode(RCode), noReply, formErrOrNoReply }
        var name: String
        var packet: [UInt8]
        var expect: Expect
        var description: String { name }
    }

    static let malformed: [Malformed] = {
        var out: [Malformed] = []
        var q = RawQuery(name: "www.example.com.")
        q.qdcountOverride = 2
        out.append(.init(name: "QDCOUNT=2 (RFC 9619)", packet: q.bytes(), expect: .formErrOrNoReply))
        q = RawQuery(name: "www.example.com.")
        q.qdcountOverride = 0
        out.append(.init(name: "QDCOUNT=0", packet: q.bytes(), expect: .formErrOrNoReply))
        q = RawQuery(name: "www.example.com.")
        q.edns = .init()
        q.extraAdditional = [RawQuery.EDNS().record]
        out.append(.init(name: "two OPT records (RFC 6891 6.1.1)", packet: q.bytes(), expect: .rcode(.formErr)))
        q = RawQuery(name: "www.example.com.")
        q.edns = .init(options: [RawQuery.clientSubnet(family: 1, source: 33, address: [192, 0, 2, 0, 0])])
        out.append(.init(name: "ECS source prefix 33 for IPv4 (RFC 7871 6)", packet: q.bytes(), expect: .rcode(.formErr)))
        q = RawQuery(name: "www.example.com.")
        q.edns = .init(options: [RawQuery.clientSubnet(family: 1, source: 24, address: [192, 0, 2, 1])])
        out.append(.init(name: "ECS address bits past the prefix", packet: q.bytes(), expect: .rcode(.formErr)))
        q = RawQuery(name: "www.example.com.")
        q.edns = .init(options: [RawQuery.clientSubnet(family: 3, source: 8, address: [10])])
        out.append(.init(name: "ECS unknown family", packet: q.bytes(), expect: .rcode(.formErr)))
        q = RawQuery(name: "www.example.com.")
        q.edns = .init(options: [(EDNSOption.clientSubnet, [0, 1, 24])])
        out.append(.init(name: "ECS option too short", packet: q.bytes(), expect: .rcode(.formErr)))
        q = RawQuery(name: "www.example.com.")
        q.rawQuestionName = [3, 0x77, 0x77, 0x77, 0xC0, 12]
        out.append(.init(name: "compression pointer loop in the question", packet: q.bytes(), expect: .formErrOrNoReply))
        q = RawQuery(name: "www.example.com.")
        q.rawQuestionName = [0xC0, 40]
        out.append(.init(name: "forward compression pointer", packet: q.bytes(), expect: .formErrOrNoReply))
        q = RawQuery(name: "www.example.com.")
        q.rawQuestionName = [64] + [UInt8](repeating: 0x61, count: 64) + [0]
        out.append(.init(name: "label of 64 octets", packet: q.bytes(), expect: .formErrOrNoReply))
        q = RawQuery(name: "www.example.com.")
        q.rawQuestionName = Array(repeating: [1, 0x61] as [UInt8], count: 130).flatMap { $0 } + [0]
        out.append(.init(name: "name over 255 octets", packet: q.bytes(), expect: .formErrOrNoReply))
        q = RawQuery(name: "www.example.com.")
        q.trailing = [1, 2, 3]
        out.append(.init(name: "trailing garbage", packet: q.bytes(), expect: .formErrOrNoReply))
        let full = RawQuery(name: "www.example.com.").bytes()
        out.append(.init(name: "question cut short", packet: Array(full.prefix(full.count - 3)), expect: .formErrOrNoReply))
        out.append(.init(name: "5-byte packet (no header)", packet: [1, 2, 3, 4, 5], expect: .noReply))
        q = RawQuery(name: "www.example.com.")
        q.flags = HeaderFlags.qr
        out.append(.init(name: "QR=1: a response sent as a query", packet: q.bytes(), expect: .noReply))
        q = RawQuery(name: "www.example.com.")
        q.flags = 3 << 11
        out.append(.init(name: "unassigned opcode 3", packet: q.bytes(), expect: .rcode(.notImp)))
        q = RawQuery(name: "www.example.com.")
        q.flags = 15 << 11
        q.qdcountOverride = 0
        out.append(.init(name: "opcode 15 and no question: NOTIMP, not FORMERR", packet: q.bytes(), expect: .rcode(.notImp)))
        q = RawQuery(name: "www.example.com.")
        q.flags = 5 << 11
        q.qdcountOverride = 2
        out.append(.init(name: "UPDATE with QDCOUNT=2: NOTIMP before the count check", packet: q.bytes(), expect: .rcode(.notImp)))
        q = RawQuery(name: "www.example.com.")
        q.edns = .init(options: [(0xFDE9, [1, 2, 3])])
        out.append(.init(name: "unknown EDNS option is ignored (RFC 6891 6.1.2)", packet: q.bytes(), expect: .rcode(.noError)))
        return out
    }()

    @Test(arguments: malformed)
    func malformedPacketsNeverCrash(_ m: Malformed) async throws {
        try await withMeridian { server in
            let client = RawDNSClient(port: server.port)
            let reply = try client.udpExchange(m.packet, timeout: .milliseconds(800)).map(DNSReply.init)
            switch m.expect {
            case .noReply:
                #expect(reply == nil, "\(m.name): expected no reply, got rcode \(reply?.rcode ?? 0)")
            case .rcode(let rc):
                let r = try #require(reply, "\(m.name): no reply")
                #expect(r.qr && r.rcode == rc.rawValue & 0xF, "\(m.name): rcode \(r.rcode)")
            case .formErrOrNoReply:
                if let r = reply { #expect(r.qr && r.rcode == RCode.formErr.rawValue, "\(m.name): rcode \(r.rcode)") }
            }
            // The same bytes over TCP must not hurt either.
            if m.packet.count >= 2 {
                _ = try? client.tcpExchange(m.packet, timeout: .milliseconds(800))
            }
            let after = try await Dig.query("www.example.com", "A", port: server.port)
            #expect(after.status == "NOERROR" && after.answer.count == 2, "\(m.name): server unwell afterwards\n\(server.logText)")
        }
    }

    @Test(.enabled(if: hasIPv6Loopback(), "this host has no ::1"))
    func listensOnIPv6Too() async throws {
        let port = try freePort()
        try await withMeridian(extraArguments: ["--listen", "[::1]:\(port)"]) { server in
            let r = try await Dig.query("www.example.com", "AAAA", server: "::1", port: port)
            #expect(r.status == "NOERROR" && r.answer.map(\.rdata) == ["2001:db8::10"], "\(r.raw)\n\(server.logText)")
            let t = try await Dig.query("www.example.com", "AAAA", server: "::1", port: port, options: ["+tcp"])
            #expect(t.status == "NOERROR")
        }
    }

    @Test func stopsCleanlyOnSIGTERMAndLogs() async throws {
        let server = try await MeridianProcess.serve(zones: Fixtures.zones)
        _ = try await Dig.query("www.example.com", "A", port: server.port)
        let status = await server.stop()
        #expect(status == 0, "exit status after SIGTERM; log:\n\(server.logText)")
        let log = server.logText
        #expect(!log.isEmpty, "one log line per start, stop and zone load")
        #expect(log.contains("example.com") && log.contains("example.net"), "each zone load is logged:\n\(log)")
    }

    @Test(arguments: [["--help"], ["--version"], ["serve", "--help"], ["check", "--help"]])
    func helpAndVersion(_ arguments: [String]) async throws {
        let out = try await MeridianProcess.run(arguments, timeout: .seconds(10))
        #expect(out.status == 0, "\(arguments): \(out.combined)")
        #expect(!out.combined.isEmpty)
        if arguments.last == "--help" && arguments.count == 2 {
            #expect(out.combined.contains("--zones"), "\(arguments): \(out.combined)")
        }
    }

    @Test func checkAcceptsTheFixtureZones() async throws {
        let out = try await MeridianProcess.run(["check", "--zones", Fixtures.zones])
        #expect(out.status == 0, "\(out.combined)")
        #expect(out.combined.contains("example.com"), "a summary line per zone: \(out.combined)")
        #expect(out.combined.contains("example.net"), "\(out.combined)")
    }

    @Test func checkReportsFileLineColumn() async throws {
        let out = try await MeridianProcess.run(["check", "--zones", Fixtures.broken])
        #expect(out.status != 0, "\(out.combined)")
        // The bad address is on line 6 of broken.example.zone.
        let hasPosition = out.combined.split(separator: "\n").contains { line in
            line.contains(#/broken\.example\.zone:6:\d+/#)
        }
        #expect(hasPosition, "expected broken.example.zone:6:<column> in:\n\(out.combined)")
        #expect(!out.timedOut)
    }
}
