// FuzzRData: the presentation codec both ways (RDataText).
//
// Input: byte 0 picks the mode and the type, the rest is the rdata.
//   bit 7 clear, wire mode: bytes 1... are wire rdata of the type; format it, and when the
//     wire is valid for the type (the text is not the RFC 3597 fallback) parse the text back:
//     it must give the same bytes. The RFC 3597 form must round-trip for unknown types too.
//   bit 7 set, text mode: bytes 1... are rdata text; when it parses, formatting and parsing
//     again must give the same bytes.
//   bits 0-6: index into `types` (the typed formats plus two unknown types).
import DNSWire

private let types: [RRType] = [
    .a, .aaaa, .ns, .cname, .ptr, .dname, .soa, .mx, .txt, .spf, .srv, .caa, .hinfo, .naptr,
    .ds, .sshfp, .tlsa, .svcb, .https, RRType(65534), RRType(99 + 1000),
]
private let origin = try! DNSName("fuzz.test.")

func runRData(_ input: UnsafeRawBufferPointer) {
    guard let control = input.first else { return }
    let type = types[Int(control & 0x7F) % types.count]
    let body = Array(input[1...])
    if control & 0x80 == 0 {
        let text = RDataText.format(type: type, rdata: body)
        let typed = RDataText.hasTypedFormat(type) && !text.hasPrefix("\\#")
        if typed {
            let back: [UInt8]
            do { back = try RDataText.parse(type: type, text: text, origin: origin) } catch {
                fatalError("\(type) rdata \(body) formats as \"\(text)\", which does not parse: \(error)")
            }
            guard back == body else { fatalError("\(type) rdata \(body) formats as \"\(text)\", which parses to \(back)") }
        }
        let generic = RDataText.formatGeneric(body)
        let back = try? RDataText.parse(type: type, text: generic, origin: origin)
        if !RDataText.hasTypedFormat(type) || typed {
            guard back == body else { fatalError("\(type) RFC 3597 form \"\(generic)\" gives \(String(describing: back))") }
        } else {
            // RFC 3597 text for a known type must still be valid rdata of that type.
            guard back == nil else { fatalError("\(type) RFC 3597 form \"\(generic)\" accepted for invalid rdata") }
        }
    } else {
        let text = String(decoding: body, as: UTF8.self)
        guard let wire = try? RDataText.parse(type: type, text: text, origin: origin) else { return }
        let again = RDataText.format(type: type, rdata: wire)
        let back: [UInt8]
        do { back = try RDataText.parse(type: type, text: again, origin: origin) } catch {
            fatalError("\(type) text \"\(text)\" parses, but its canonical form \"\(again)\" does not: \(error)")
        }
        guard back == wire else { fatalError("\(type) text \"\(text)\" -> \(wire) -> \"\(again)\" -> \(back)") }
    }
}

/// libFuzzer's callback: one input, always 0 (a broken invariant traps instead).
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    runRData(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
