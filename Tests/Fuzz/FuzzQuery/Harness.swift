// FuzzQuery: the whole query path, bytes in to bytes out, as a UDP or TCP worker runs it.
//
// Input: byte 0 selects the environment, the rest is the query message.
//   bit 0: over TCP (limit 65535) rather than UDP (512, or the EDNS size up to maxUDPSize)
//   bit 1: the server has an NSID configured (RFC 5001)
//   bit 2: maxUDPSize 4096 instead of the default 1232
//   bit 3: the client's source address is IPv6
// Every response must decode with Message(decoding:), carry the query's ID and QR, fit the
// limit, and (when it echoes a question) pass the strict ParsedQuery structure checks.
// A broken invariant traps, so libFuzzer reports it as a crash.
import DNSWire
import Foundation
import Zones

/// Zones served: the example zone of the repository and the fuzz fixture, located from this
/// file's path so the binary runs from any directory.
private func loadZones() -> ZoneSet {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    let files: [(String, String, [GSLBBinding])] = [
        ("zones/example.com.zone", "example.com.", []),
        ("Tests/Fuzz/fixtures/fuzz.test.zone", "fuzz.test.", [
            GSLBBinding(owner: try! DNSName("gslb.fuzz.test."), index: 0),
            GSLBBinding(owner: try! DNSName("gslb-cname.fuzz.test."), index: 1),
            GSLBBinding(owner: try! DNSName("gslb-ecs.fuzz.test."), index: 2),
            GSLBBinding(owner: try! DNSName("*.gslb-wild.fuzz.test."), index: 0),
        ]),
    ]
    var zones: [Zone] = []
    for (path, originText, dynamicNames) in files {
        let origin = try! DNSName(originText)
        let full = root.appendingPathComponent(path).path
        do {
            let records = try MasterFileParser(origin: origin, baseDirectory: root.appendingPathComponent("zones").path)
                .parseFile(path: full, displayPath: path)
            let problems = ZoneCheck.check(records: records, origin: origin)
            guard problems.isEmpty else { fatalError("fixture \(path) has errors:\n\(ZoneErrors(problems))") }
            zones.append(try Zone(origin: origin, records: ZoneCheck.normalized(records), dynamicNames: dynamicNames, file: path))
        } catch {
            fatalError("cannot load fixture \(path): \(error)")
        }
    }
    return ZoneSet(zones: zones)
}

/// A stand-in for the routing layer with the three shapes of dynamic answer: addresses,
/// a CNAME the engine follows, and an answer tailored to the client subnet. The harness
/// drives the engine as the answering pipeline does (begin, resume at each GSLB name, finish).
private final class FakeRouting {
    let v4: [[UInt8]] = [[192, 0, 2, 200], [192, 0, 2, 201]]
    let v6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [0xc8]
    let cnameTarget = try! DNSName("target.fuzz.test.").wire

    func answer(dynamicIndex: Int32, qtype: RRType, ownerOffset: Int, subnet: ClientSubnet?,
                writer: MessageWriter) throws(DNSWireError) -> DynamicAnswer {
        switch dynamicIndex {
        case 1:
            try withBytes(cnameTarget) { (r) throws(DNSWireError) in
                try writer.writeRecord(ownerOffset: ownerOffset, type: .cname, ttl: 30, rdata: r)
            }
            return DynamicAnswer(records: 1, scope: 0, cnameTargetOffset: writer.lastRDataStart)
        default:
            let scope: UInt8 = dynamicIndex == 2 ? (subnet.map { min($0.sourcePrefix, 24) } ?? 0) : 0
            switch qtype {
            case .a:
                for a in v4 {
                    try withBytes(a) { (r) throws(DNSWireError) in try writer.writeRecord(ownerOffset: ownerOffset, type: .a, ttl: 30, rdata: r) }
                }
                return DynamicAnswer(records: v4.count, scope: scope)
            case .aaaa:
                try withBytes(v6) { (r) throws(DNSWireError) in try writer.writeRecord(ownerOffset: ownerOffset, type: .aaaa, ttl: 30, rdata: r) }
                return DynamicAnswer(records: 1, scope: scope)
            default:
                return DynamicAnswer(records: 0, scope: scope)
            }
        }
    }
}

/// Everything the callback uses, built once. The fuzzer calls back on one thread only.
private final class Harness: @unchecked Sendable {
    let zones = loadZones()
    let engine = QueryEngine()
    let routing = FakeRouting()
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)

    /// The query path as a worker runs it, with `routing` answering the GSLB names.
    func respond(_ q: UnsafeRawBufferPointer, client: IPAddress, tcp: Bool, options: EngineOptions) -> Int {
        var step = engine.begin(query: q, tcp: tcp, zones: zones, options: options, out: out)
        while case .gslb(let g) = step {
            do {
                let written = try routing.answer(dynamicIndex: g.index, qtype: g.qtype, ownerOffset: g.ownerOffset,
                                                 subnet: engine.clientSubnet, writer: engine.writer)
                step = engine.resume(written, zones: zones, options: options)
            } catch {
                step = engine.resumeTruncated()
            }
        }
        return engine.finish(query: q, client: client, options: options)
    }

    func run(_ input: UnsafeRawBufferPointer) {
        guard let control = input.first else { return }
        let q = UnsafeRawBufferPointer(rebasing: input[1...])
        let tcp = control & 1 != 0
        var options = EngineOptions()
        if control & 2 != 0 { options.nsid = Array("fuzz-ns".utf8) }
        if control & 4 != 0 { options.maxUDPSize = 4096 }
        let client = control & 8 != 0 ? IPAddress("2001:db8::99")! : IPAddress("192.0.2.99")!

        let n = respond(q, client: client, tcp: tcp, options: options)
        let header = ParsedQuery.header(q)
        guard n > 0 else {
            // Silence is allowed only for runts and for messages that are responses already.
            guard header == nil || header!.isResponse else { fatalError("no response to a query with a header") }
            return
        }
        guard let h = header else { fatalError("a response of \(n) bytes to a runt of \(q.count) bytes") }
        let parsed = try? ParsedQuery.parse(q)
        var limit = 512
        if tcp { limit = 65535 } else if let e = parsed?.edns { limit = max(512, min(Int(e.udpSize), options.maxUDPSize)) }
        guard n >= 12, n <= limit else { fatalError("response of \(n) bytes, limit \(limit)") }

        let bytes = Array(UnsafeRawBufferPointer(rebasing: out[0..<n]))
        let m: Message
        do { m = try Message(decoding: bytes) } catch { fatalError("response does not decode: \(error); bytes \(bytes)") }
        guard m.id == h.id else { fatalError("response ID \(m.id) for query ID \(h.id)") }
        guard m.has(HeaderFlags.qr) else { fatalError("response without QR") }
        // RFC 1035 4.1.1: an opcode other than QUERY is NOTIMP whatever else the message holds.
        let expectedFailure: RCode = h.opcode != 0 ? .notImp : .formErr
        guard let p = parsed else {
            guard n == 12, m.rcode == expectedFailure else { fatalError("unparseable query answered with \(m.rcode), \(n) bytes") }
            return
        }
        if p.opcode != 0 {
            guard m.rcode == .notImp else { fatalError("opcode \(p.opcode) answered with \(m.rcode)") }
            return
        }
        if p.qdcount == 0 {
            // RFC 7873 5.4: no question is only answered with a cookie (when cookies are on);
            // otherwise FORMERR (RFC 9619). Either way nothing is echoed.
            guard !m.hasQuestion else { fatalError("a question appeared in the reply to a query without one") }
            let cookieOnly = p.edns.map { $0.cookieOffset >= 0 } ?? false
            guard m.rcode == .formErr || (cookieOnly && m.rcode == .noError) else {
                fatalError("QDCOUNT 0 answered with \(m.rcode)")
            }
            return
        }
        // A question was echoed: the response must be as well-formed as a query we accept.
        let structure: Result<ParsedQuery, DNSWireError> = bytes.withUnsafeBytes { b in
            Result { () throws(DNSWireError) in try ParsedQuery.parse(b) }
        }
        guard case .success(let echoed) = structure else {
            fatalError("response breaks the message structure: \(structure); bytes \(bytes)")
        }
        guard m.hasQuestion, m.questionType == p.qtype, m.questionClass == p.qclass,
              Array(bytes[12..<(12 + p.qnameLength)]) == Array(q[12..<(12 + p.qnameLength)])
        else { fatalError("question not echoed as sent") }
        guard (echoed.edns != nil) == (p.edns != nil) else { fatalError("OPT present in only one of query and response") }
        if m.has(HeaderFlags.tc) && tcp { fatalError("TC set over TCP") }
    }
}

private let harness = Harness()

/// libFuzzer's callback: one input, always 0 (a broken invariant traps instead).
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    harness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
