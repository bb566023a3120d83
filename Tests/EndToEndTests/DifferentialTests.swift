import Foundation
import Testing
import TestSupport

/// One query of the differential corpus.
struct CorpusQuery: Hashable, Sendable, CustomStringConvertible {
    var name: String
    var type: String
    var edns: Bool
    var digArguments: [String] { [name, type] + (edns ? [] : ["+noedns"]) }
    var description: String { "\(name) \(type)\(edns ? "" : " +noedns")" }
}

/// The corpus, generated from the fixture zones so that a record added there is queried
/// here: every owner name times several types, names that do not exist, wildcard hits,
/// names below the delegation, empty non-terminals, names outside every zone, case
/// variants and ANY; each with and without EDNS.
enum Corpus {
    static let types = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "SRV", "CAA", "CNAME", "PTR"]

    /// Owner names of the fixture files, made absolute (`@` and relative names resolved
    /// against the file's origin). Enough of RFC 1035 for these fixtures: an owner starts
    /// in column 1; lines starting with a blank continue the previous owner.
    static func owners(in directory: String) throws -> [String] {
        var out: [String] = []
        for zone in try ZoneFileEntry.scan(directory) {
            let text = try String(contentsOfFile: directory + "/" + zone.fileName, encoding: .utf8)
            for line in text.split(separator: "\n") {
                guard let first = line.first, first != " ", first != "\t", first != ";", first != "$", first != "(" else { continue }
                let token = String(line.split(whereSeparator: { $0 == " " || $0 == "\t" })[0])
                let name = token == "@" ? zone.origin : token.hasSuffix(".") ? token : token + "." + zone.origin
                if !out.contains(name) { out.append(name) }
            }
        }
        return out
    }

    static let extraNames = [
        "nope.example.com.", "nope.nope.example.com.", "nope.example.net.", "www.nope.example.net.",
        "foo.wild.example.com.", "a.b.wild.example.com.", "wild.example.com.", "x.exists.wild.example.com.",
        "b.ent.example.com.", "ent.example.com.", "c.b.ent.example.com.", "x.a.b.ent.example.com.",
        "www.sub.example.com.", "a.b.sub.example.com.", "ns3.sub.example.com.",
        "www.example.org.", "example.org.", "com.", "net.", "ample.com.", "xexample.com.",
        "WWW.EXAMPLE.COM.", "Big.Example.COM.", "wWw.ExAmPlE.NeT.", "ALIAS.example.com.", "Foo.WILD.example.com.",
        "SUB.example.com.", "www.SUB.example.com.",
    ]

    static func build(from directory: String) throws -> [CorpusQuery] {
        var names = try owners(in: directory)
        for n in extraNames where !names.contains(n) { names.append(n) }
        var out: [CorpusQuery] = []
        for (i, name) in names.enumerated() {
            for type in types {
                out.append(CorpusQuery(name: name, type: type, edns: true))
            }
            // Without EDNS: a few types per name (the 512-byte limit matters for `big`).
            for type in ["A", "MX", "NS", "TXT"] { out.append(CorpusQuery(name: name, type: type, edns: false)) }
            if i % 2 == 0 { out.append(CorpusQuery(name: name, type: "ANY", edns: i % 4 == 0)) }
        }
        return out
    }
}

/// How a Meridian reply is compared with NSD's. The intended differences, each allowed
/// only where named:
/// - ANY (RFC 8482): NSD answers with one RRset of its choice; Meridian may choose another
///   RRset of the node or a synthesized HINFO "RFC8482". Checked: one RRset, and equal to
///   NSD's answer for that (name, type) when the corpus has it. Meridian answers ANY without
///   additional-section processing (minimal, as RFC 8482 intends), so addresses for targets
///   are not required there.
/// - Authority of positive answers: NSD (without `minimal-responses`) adds the zone's apex
///   NS RRset; Meridian may leave the authority empty (RFC 2181 leaves it optional) or
///   give the same RRset.
/// - Additional of positive answers: NSD adds addresses of those apex NS names; Meridian's
///   additional must be a subset of NSD's, and must contain NSD's addresses for in-zone
///   MX, SRV and NS targets in the answer (issue 2: additional-section addresses).
/// - EDNS: both carry an OPT record or both do not; UDP size, NSID and extended errors
///   (NSD adds EDE 20 to REFUSED) are not compared.
/// Everything else must match exactly: RCODE, every header flag (qr aa tc rd ra ad cd),
/// the answer as a set of records with TTLs, the authority of negative answers and
/// referrals, the additional section of referrals (glue).
enum Differ {
    static func compare(_ q: CorpusQuery, reference ref: DigResult, candidate got: DigResult,
                        referenceAnswers: [CorpusQuery: DigResult]) -> [String] {
        var problems: [String] = []
        func norm(_ s: [DigRecord]) -> [String] { s.map(\.normalized).sorted() }
        guard got.gotReply else { return ["no reply: \(got.notes.joined(separator: "; "))"] }
        guard ref.gotReply else { return ["reference gave no reply: \(ref.notes.joined(separator: "; "))"] }
        if ref.status != got.status { problems.append("rcode \(got.status ?? "-") != \(ref.status ?? "-")") }
        if ref.flags != got.flags { problems.append("flags [\(got.flags.sorted().joined(separator: " "))] != [\(ref.flags.sorted().joined(separator: " "))]") }
        if (ref.ednsVersion == nil) != (got.ednsVersion == nil) { problems.append("OPT present: \(got.ednsVersion != nil) != \(ref.ednsVersion != nil)") }

        let positive = ref.status == "NOERROR" && ref.aa && !ref.answer.isEmpty
        if q.type == "ANY" && positive {
            let types = Set(got.answer.map(\.type))
            if types.count != 1 {
                problems.append("ANY: \(types.count) RRsets in the answer (RFC 8482 wants one)")
            } else if let t = types.first, t != "HINFO" {
                let same = CorpusQuery(name: q.name, type: t, edns: true)
                if let r = referenceAnswers[same], norm(r.answer) != norm(got.answer) {
                    problems.append("ANY: \(t) RRset differs from the answer to a \(t) query")
                }
            } else if !(got.answer.first?.rdata.contains("RFC8482") ?? false) {
                problems.append("ANY: HINFO without \"RFC8482\"")
            }
        } else if norm(ref.answer) != norm(got.answer) {
            problems.append("answer\n      got: \(norm(got.answer))\n      nsd: \(norm(ref.answer))")
        }

        if positive {
            if !got.authority.isEmpty && norm(got.authority) != norm(ref.authority) {
                problems.append("authority\n      got: \(norm(got.authority))\n      nsd: \(norm(ref.authority))")
            }
            let extra = Set(norm(got.additional)).subtracting(norm(ref.additional))
            if !extra.isEmpty { problems.append("additional records NSD does not give: \(extra.sorted())") }
            let targets = Set(got.answer.filter { ["MX", "SRV", "NS"].contains($0.type) }
                .compactMap { $0.rdata.split(separator: " ").last.map { $0.lowercased() } })
            let wanted = Set(ref.additional.filter { targets.contains($0.owner.lowercased()) }.map(\.normalized))
            let missing = wanted.subtracting(norm(got.additional))
            if !missing.isEmpty && !got.tc && q.type != "ANY" { problems.append("additional addresses missing for targets: \(missing.sorted())") }
        } else {
            if norm(ref.authority) != norm(got.authority) {
                problems.append("authority\n      got: \(norm(got.authority))\n      nsd: \(norm(ref.authority))")
            }
            if norm(ref.additional) != norm(got.additional) {
                problems.append("additional\n      got: \(norm(got.additional))\n      nsd: \(norm(ref.additional))")
            }
        }
        return problems
    }

    /// Runs the corpus against both servers over UDP and returns (corpus size, mismatch report lines).
    static func run(corpus: [CorpusQuery], referencePort: UInt16, candidatePort: UInt16) async throws -> (Int, [String]) {
        let args = corpus.map(\.digArguments)
        // A server that does not answer at all fails here, before a corpus of timeouts.
        let probe = try await Dig.query("www.example.com", "A", port: candidatePort)
        guard probe.gotReply else { return (corpus.count, ["no reply to a probe query: \(probe.notes)"]) }
        let ref = try await Dig.batch(args, port: referencePort, options: ["+ignore"])
        let got = try await Dig.batch(args, port: candidatePort, options: ["+ignore"])
        guard ref.count == corpus.count, got.count == corpus.count else {
            return (corpus.count, ["dig printed \(ref.count) and \(got.count) replies for \(corpus.count) queries"])
        }
        var byQuery: [CorpusQuery: DigResult] = [:]
        for (q, r) in zip(corpus, ref) { byQuery[q] = r }
        var report: [String] = []
        for (i, q) in corpus.enumerated() {
            let problems = compare(q, reference: ref[i], candidate: got[i], referenceAnswers: byQuery)
            if !problems.isEmpty { report.append("\(q): " + problems.joined(separator: "; ")) }
        }
        return (corpus.count, report)
    }
}

@Suite("Differential against NSD", .serialized)
struct DifferentialTests {
    @Test func corpusIsLargeAndCoversTheCases() throws {
        let corpus = try Corpus.build(from: Fixtures.zones)
        #expect(corpus.count >= 100)
        let names = Set(corpus.map { $0.name.lowercased() })
        for needed in ["*.wild.example.com.", "foo.wild.example.com.", "b.ent.example.com.", "www.sub.example.com.",
                       "www.example.org.", "big.example.com.", "example.net."] {
            #expect(names.contains(needed), "corpus lacks \(needed)")
        }
        #expect(corpus.contains { $0.type == "ANY" } && corpus.contains { !$0.edns })
    }

    /// The comparison run NSD against a second NSD: it must find no difference, which
    /// shows the corpus, the batch runner and the comparer work before Meridian is there.
    @Test func nsdAgreesWithItself() async throws {
        let corpus = try Corpus.build(from: Fixtures.zones)
        try await withNSD { a in
            try await withNSD { b in
                let (size, report) = try await Differ.run(corpus: corpus, referencePort: a.port, candidatePort: b.port)
                print("differential nsd/nsd: corpus \(size) queries, \(report.count) mismatches")
                #expect(report.isEmpty, "\(report.prefix(20).joined(separator: "\n"))")
            }
        }
    }

    @Test func meridianAgreesWithNSD() async throws {
        let corpus = try Corpus.build(from: Fixtures.zones)
        try await withNSD { nsd in
            try await withMeridian { meridian in
                let (size, report) = try await Differ.run(corpus: corpus, referencePort: nsd.port, candidatePort: meridian.port)
                print("differential meridian/nsd: corpus \(size) queries, \(report.count) mismatches")
                for line in report.prefix(40) { print("  mismatch: \(line)") }
                #expect(report.isEmpty, "\(report.count) of \(size) queries differ from NSD:\n\(report.prefix(20).joined(separator: "\n"))")
            }
        }
    }
}

/// Zones inside served zones (Fixtures/nested), for the zone set's index of names (one hash
/// of the question finds its zone and node): a parent that holds the cut to a served child with glue and a
/// name only it has, a child with a cut of its own, a wildcard, CNAMEs back to the parent,
/// into the child's wildcard and out of every zone, an escaped dot; a third zone whose
/// CNAMEs lead through both. Meridian must answer every name of them, their neighbours that
/// do not exist and case variants as NSD serving the same folder does, with two intended
/// difference (the same before the index), checked on its own:
/// - A name only the parent holds below the served child (its glue `onlyparent.child`):
///   NSD keeps one tree of names for all its zones, so the child answers NODATA for it;
///   Meridian answers from the child zone's own names: NXDOMAIN with the child's SOA.
/// DS at the served child's apex is answered from the parent side of the cut by both
/// (RFC 4035 3.1.4.1): in the corpus, and checked on its own too.
@Suite("Differential against NSD, nested zones", .serialized)
struct NestedZonesDifferentialTests {
    static let extraNames = [
        "nope.example.test.", "x.child.example.test.", "a.b.child.example.test.",
        "ns.gc.child.example.test.", "x.gc.child.example.test.", "z.wild.child.example.test.", "a.b.wild.child.example.test.",
        "b.c.deep.example.test.", "deep.example.test.", "WWW.CHILD.EXAMPLE.TEST.", "Www.Example.Test.", "mixed.case.example.test.",
        "escaped.dot.child.example.test.", "nope.other.test.", "CHAIN.other.test.", "www.elsewhere.invalid.", "test.",
    ]

    @Test func meridianAgreesWithNSD() async throws {
        let dir = Fixtures.root.appendingPathComponent("nested")
        let onlyParent = "onlyparent.child.example.test."
        var names = try Corpus.owners(in: dir.path).filter { $0 != onlyParent }
        for n in Self.extraNames where !names.contains(n) { names.append(n) }
        var corpus: [CorpusQuery] = []
        for name in names {
            for type in Corpus.types + ["DS"] {
                corpus.append(CorpusQuery(name: name, type: type, edns: true))
            }
        }
        #expect(names.count > 35)
        try await withNSD(zones: dir.path) { nsd in
            try await withMeridian(zones: dir.path) { meridian in
                let (size, report) = try await Differ.run(corpus: corpus, referencePort: nsd.port, candidatePort: meridian.port)
                print("differential meridian/nsd, nested zones: corpus \(size) queries, \(report.count) mismatches")
                #expect(report.isEmpty, "\(report.count) of \(size) queries differ from NSD:\n\(report.prefix(20).joined(separator: "\n"))")
                for (name, type) in [(onlyParent, "A"), ("OnlyParent.Child.Example.Test.", "AAAA")] {
                    let r = try await Dig.query(name, type, port: meridian.port)
                    #expect(r.status == "NXDOMAIN" && r.flags.contains("aa") && r.answer.isEmpty
                            && r.authority.map(\.type) == ["SOA"] && r.authority.first?.owner.lowercased() == "child.example.test.",
                            "\(name) \(type): \(r)")
                }
                // DS at the child's apex: the parent's NODATA (it holds no DS for the cut), with
                // the parent's SOA, whatever the case of the question.
                for (name, parent) in [("child.example.test.", "example.test."), ("Child.Example.Test.", "example.test.")] {
                    let r = try await Dig.query(name, "DS", port: meridian.port)
                    #expect(r.status == "NOERROR" && r.flags.contains("aa") && r.answer.isEmpty
                            && r.authority.map(\.type) == ["SOA"] && r.authority.first?.owner.lowercased() == parent,
                            "\(name) DS: \(r)")
                }
            }
        }
    }
}

/// The comparer on hand-written replies: it allows exactly the documented differences.
@Suite("Differential comparer")
struct DifferComparerTests {
    static func reply(_ header: String, answer: [String] = [], authority: [String] = [], additional: [String] = [],
                      edns: Bool = true) -> DigResult {
        var text = ";; ->>HEADER<<- opcode: QUERY, status: \(header.split(separator: " ")[0]), id: 1\n"
        text += ";; flags: \(header.split(separator: " ").dropFirst().joined(separator: " ")); QUERY: 1\n"
        if edns { text += ";; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags:; udp: 1232\n" }
        text += ";; ANSWER SECTION:\n" + answer.map { $0 + "\n" }.joined()
        text += ";; AUTHORITY SECTION:\n" + authority.map { $0 + "\n" }.joined()
        text += ";; ADDITIONAL SECTION:\n" + additional.map { $0 + "\n" }.joined()
        return DigResult(parsing: text)
    }

    static let www = ["www.example.com. 3600 IN A 192.0.2.10", "www.example.com. 3600 IN A 192.0.2.11"]
    static let apexNS = ["example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.com."]
    static let nsAddr = ["ns1.example.com. 3600 IN A 192.0.2.1", "ns2.example.com. 3600 IN A 192.0.2.2"]
    static let nsd = reply("NOERROR qr aa", answer: www, authority: apexNS, additional: nsAddr)
    static let q = CorpusQuery(name: "www.example.com.", type: "A", edns: true)

    struct Row: Sendable, CustomStringConvertible {
        var why: String
        var query: CorpusQuery
        var reference: DigResult
        var candidate: DigResult
        var ok: Bool
        var description: String { why }
    }

    static let rows: [Row] = [
        Row(why: "identical", query: q, reference: nsd, candidate: nsd, ok: true),
        Row(why: "minimal positive answer allowed", query: q, reference: nsd,
            candidate: reply("NOERROR qr aa", answer: www), ok: true),
        Row(why: "missing answer record", query: q, reference: nsd,
            candidate: reply("NOERROR qr aa", answer: [www[0]]), ok: false),
        Row(why: "different TTL", query: q, reference: nsd,
            candidate: reply("NOERROR qr aa", answer: www.map { $0.replacingOccurrences(of: "3600", with: "300") }), ok: false),
        Row(why: "AA missing", query: q, reference: nsd, candidate: reply("NOERROR qr", answer: www), ok: false),
        Row(why: "RA set", query: q, reference: nsd, candidate: reply("NOERROR qr aa ra", answer: www), ok: false),
        Row(why: "no OPT in reply to an EDNS query", query: q, reference: nsd,
            candidate: reply("NOERROR qr aa", answer: www, edns: false), ok: false),
        Row(why: "additional record NSD does not give", query: q, reference: nsd,
            candidate: reply("NOERROR qr aa", answer: www, additional: ["x.example.com. 3600 IN A 192.0.2.99"]), ok: false),
        Row(why: "wrong negative TTL", query: q,
            reference: reply("NXDOMAIN qr aa", authority: [SOA.exampleCom]),
            candidate: reply("NXDOMAIN qr aa", authority: [SOA.exampleCom.replacingOccurrences(of: "com. 300", with: "com. 3600")]), ok: false),
        Row(why: "NODATA where NSD says NXDOMAIN", query: q,
            reference: reply("NXDOMAIN qr aa", authority: [SOA.exampleCom]),
            candidate: reply("NOERROR qr aa", authority: [SOA.exampleCom]), ok: false),
        Row(why: "referral without glue", query: q,
            reference: reply("NOERROR qr", authority: ["sub.example.com. 3600 IN NS ns1.sub.example.com."],
                             additional: ["ns1.sub.example.com. 3600 IN A 192.0.2.53"]),
            candidate: reply("NOERROR qr", authority: ["sub.example.com. 3600 IN NS ns1.sub.example.com."]), ok: false),
        Row(why: "MX target address missing", query: CorpusQuery(name: "example.com.", type: "MX", edns: true),
            reference: reply("NOERROR qr aa", answer: ["example.com. 3600 IN MX 10 mail.example.com."],
                             additional: ["mail.example.com. 3600 IN A 192.0.2.25"]),
            candidate: reply("NOERROR qr aa", answer: ["example.com. 3600 IN MX 10 mail.example.com."]), ok: false),
        Row(why: "ANY answered with HINFO RFC8482", query: CorpusQuery(name: "www.example.com.", type: "ANY", edns: true),
            reference: nsd, candidate: reply("NOERROR qr aa", answer: ["www.example.com. 3600 IN HINFO \"RFC8482\" \"\""]), ok: true),
        Row(why: "ANY answered with two RRsets", query: CorpusQuery(name: "www.example.com.", type: "ANY", edns: true),
            reference: nsd, candidate: reply("NOERROR qr aa", answer: www + ["www.example.com. 3600 IN AAAA 2001:db8::10"]), ok: false),
    ]

    @Test(arguments: rows)
    func compares(_ row: Row) {
        let problems = Differ.compare(row.query, reference: row.reference, candidate: row.candidate, referenceAnswers: [:])
        #expect(problems.isEmpty == row.ok, "\(row.why): \(problems)")
    }
}
