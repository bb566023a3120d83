// FuzzZoneFile: master-file text through everything a zone load does: MasterFileParser,
// ZoneCheck, the Zone build, then a few queries against the zone built. Any thrown error
// is a correct outcome; a crash, hang or sanitizer report is not.
//
// Input: the whole input is the text of a zone file with origin fuzz.test. `$INCLUDE`
// resolves inside Tests/Fuzz/fixtures/include (one small file, inc.zone).
import DNSWire
import Foundation
import Zones

private final class Harness: @unchecked Sendable {
    let origin = try! DNSName("fuzz.test.")
    let includeDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/include").path
    let engine = QueryEngine()
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 65535, alignment: 8)

    func run(_ input: UnsafeRawBufferPointer) {
        let text = String(decoding: input, as: UTF8.self)
        let parser = MasterFileParser(origin: origin, baseDirectory: includeDirectory, maxIncludeDepth: 2)
        let records: [ResourceRecord]
        do { records = try parser.parse(contents: text, file: "fuzz.zone") } catch {
            for e in error.errors { _ = e.description }
            return
        }
        for r in records.prefix(64) { _ = r.presentation }
        let problems = ZoneCheck.check(records: records, origin: origin)
        guard problems.isEmpty else { return }
        let zone: Zone
        do { zone = try Zone(origin: origin, records: ZoneCheck.normalized(records)) } catch { return }
        let set = ZoneSet(zones: [zone])
        // Ask for the first few owners and types: the engine must answer any zone that
        // passed the checks with a response that decodes.
        for r in records.prefix(8) {
            for type in [r.type, RRType.a, RRType.any] {
                let q = QueryBuilder.query(id: 0x4242, name: r.name, type: type, edns: true, udpSize: 1232)
                let n = q.withUnsafeBytes { qb in
                    engine.respond(query: qb, client: IPAddress("192.0.2.1")!, tcp: false, zones: set, options: EngineOptions(), out: out)
                }
                guard n >= 12, n <= 1232 else { fatalError("response of \(n) bytes to \(r.name) \(type)") }
                let bytes = Array(UnsafeRawBufferPointer(rebasing: out[0..<n]))
                guard let m = try? Message(decoding: bytes), m.id == 0x4242, m.has(HeaderFlags.qr) else {
                    fatalError("bad response to \(r.name) \(type): \(bytes)")
                }
            }
        }
    }
}

private let harness = Harness()

/// libFuzzer's callback: one input, always 0 (a broken invariant traps instead).
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    harness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
