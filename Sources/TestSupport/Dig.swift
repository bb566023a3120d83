import DNSWire
import Foundation

/// Runs BIND's `dig` and parses what it prints.
///
///     let r = try await Dig.query("www.example.com", "A", port: port, options: ["+tcp"])
///     r.status        // "NOERROR"
///     r.flags         // ["qr", "aa"]
///     r.answer.map(\.normalized)
///
/// Every query gets `+norec +nocookie +time=2 +tries=1` unless overridden, so a server
/// that drops a packet costs two seconds, not dig's default fifteen.
public enum Dig {
    public static var path: String? { findExecutable("dig") }

    public static let defaultOptions = ["+norec", "+nocookie", "+time=2", "+tries=1"]

    /// Runs dig with raw arguments (no defaults added).
    public static func run(_ arguments: [String], timeout: Duration = .seconds(20)) async throws -> CommandOutput {
        guard let path else { throw ProcessError.notFound("dig (apt-get install bind9-dnsutils)") }
        return try await runCommand(path, arguments, timeout: timeout)
    }

    /// `dig @server -p port name type options...` and the parsed full output.
    public static func query(_ name: String, _ type: String = "A", server: String = "127.0.0.1", port: UInt16,
                             options: [String] = []) async throws -> DigResult {
        let out = try await run(["@\(server)", "-p", "\(port)", name, type] + defaultOptions + options)
        var r = DigResult(parsing: out.stdout)
        r.exitStatus = out.status
        r.stderr = out.stderr
        return r
    }

    /// `+noall +answer` output: the answer lines only, normalized and sorted.
    public static func short(_ name: String, _ type: String = "A", server: String = "127.0.0.1", port: UInt16,
                             options: [String] = []) async throws -> [String] {
        let out = try await run(["@\(server)", "-p", "\(port)", name, type, "+noall", "+answer"] + defaultOptions + options)
        return DigResult(parsing: out.stdout).answer.map(\.normalized).sorted()
    }

    /// The bound on a whole batch: generous for a server that answers (a few ms per query
    /// on loopback), yet a server that drops everything fails the batch in minutes rather
    /// than dig's two seconds per query.
    public static func batchTimeout(_ count: Int) -> Duration { .seconds(Int64(30 + count / 5)) }

    /// Several queries in one dig process (`dig -f`), in order. Each entry is
    /// `[name, type, options...]`. Faster than one process per query for a large corpus.
    public static func batch(_ queries: [[String]], server: String = "127.0.0.1", port: UInt16,
                             options: [String] = []) async throws -> [DigResult] {
        let dir = try makeTemporaryDirectory(prefix: "meridian-dig")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("queries")
        try queries.map { $0.joined(separator: " ") }.joined(separator: "\n").appending("\n")
            .write(to: file, atomically: true, encoding: .utf8)
        let out = try await run(["@\(server)", "-p", "\(port)", "-f", file.path] + defaultOptions + options,
                                timeout: batchTimeout(queries.count))
        return DigResult.splitBatch(out.stdout)
    }
}

/// One record line of dig's output, e.g. `www.example.com.	3600	IN	A	192.0.2.10`.
public struct DigRecord: Hashable, Sendable, CustomStringConvertible {
    /// The owner as printed (case kept, for case-preservation checks).
    public var owner: String
    public var ttl: UInt32
    public var rrclass: String
    public var type: String
    /// The rdata with runs of blanks outside quotes collapsed to one space.
    public var rdata: String

    /// A line for comparing two servers: owner and names lowercased (compression may copy
    /// the question's case into later names), blanks collapsed, TTL kept.
    public var normalized: String {
        let data = (type == "TXT" || type == "CAA" || type == "HINFO") ? rdata : rdata.lowercased()
        return "\(owner.lowercased()) \(ttl) \(rrclass) \(type) \(data)"
    }

    public var description: String { "\(owner) \(ttl) \(rrclass) \(type) \(rdata)" }

    /// Parses a record line; nil for anything else.
    public init?(line: Substring) {
        let fields = line.split(maxSplits: 4, omittingEmptySubsequences: true, whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count >= 4, let ttl = UInt32(fields[1]) else { return nil }
        owner = String(fields[0])
        self.ttl = ttl
        rrclass = String(fields[2])
        type = String(fields[3])
        rdata = fields.count == 5 ? DigRecord.collapseBlanks(fields[4]) : ""
    }

    static func collapseBlanks(_ s: Substring) -> String {
        var out = ""
        var inQuotes = false
        var escaped = false
        var pendingSpace = false
        for c in s {
            if inQuotes {
                out.append(c)
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inQuotes = false }
                continue
            }
            if c == " " || c == "\t" { pendingSpace = true; continue }
            if pendingSpace && !out.isEmpty { out.append(" ") }
            pendingSpace = false
            out.append(c)
            if c == "\"" { inQuotes = true }
        }
        return out
    }
}

/// dig's full output, parsed. Robust to column alignment (tabs or spaces), and to the
/// `+noall +answer` form, where record lines appear without a section header and are
/// taken as the answer.
///
///     ;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 7946
///     ;; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 2, ADDITIONAL: 4
///     ; EDNS: version: 0, flags:; udp: 1232
///     ; CLIENT-SUBNET: 192.0.2.0/24/0
public struct DigResult: Sendable, CustomStringConvertible {
    public var opcode: String? = nil
    /// The RCODE name dig prints (`NOERROR`, `NXDOMAIN`, `BADVERS`, ...), nil when no reply was parsed.
    public var status: String? = nil
    public var id: UInt16? = nil
    public var flags: Set<String> = []
    /// Counts from the flags line (ADDITIONAL includes the OPT record).
    public var counts: [String: Int] = [:]
    /// The question line without its leading `;`, e.g. `wWw.ExAmple.com. IN A` (blanks collapsed).
    public var question: String? = nil
    public var answer: [DigRecord] = []
    public var authority: [DigRecord] = []
    public var additional: [DigRecord] = []
    /// EDNS from the OPT pseudo-section; nil when the reply had no OPT record.
    public var ednsVersion: Int? = nil
    public var ednsFlags: Set<String> = []
    public var udpSize: Int? = nil
    /// The text after `; CLIENT-SUBNET: `, e.g. `192.0.2.0/24/0` (address/source/scope).
    public var clientSubnet: String? = nil
    /// The text after `; NSID: `.
    public var nsid: String? = nil
    /// dig's own complaints (`;; connection timed out`, `;; Truncated, retrying...`, warnings).
    public var notes: [String] = []
    public var exitStatus: Int32 = 0
    public var stderr: String = ""
    /// The text parsed, for failure messages.
    public var raw: String = ""

    public init() {}

    /// True when a reply was printed (dig got an answer).
    public var gotReply: Bool { status != nil }
    public var aa: Bool { flags.contains("aa") }
    public var tc: Bool { flags.contains("tc") }

    public init(parsing text: String) {
        raw = text
        enum Section { case none, question, answer, authority, additional, opt }
        var section = Section.none
        var sawHeader = false
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = rawLine.drop(while: { $0 == " " })
            if line.hasPrefix(";; ->>HEADER<<-") {
                sawHeader = true
                for part in line.dropFirst(";; ->>HEADER<<-".count).split(separator: ",") {
                    let kv = part.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    guard kv.count == 2 else { continue }
                    switch kv[0] {
                    case "opcode": opcode = kv[1]
                    case "status": status = kv[1]
                    case "id": id = UInt16(kv[1])
                    default: break
                    }
                }
            } else if line.hasPrefix(";; flags:") {
                let rest = line.dropFirst(";; flags:".count)
                let parts = rest.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)
                flags = Set(parts[0].split(separator: " ").map(String.init))
                if parts.count > 1 {
                    for c in parts[1].split(separator: ",") {
                        let kv = c.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
                        if kv.count == 2, let n = Int(kv[1]) { counts[kv[0]] = n }
                    }
                }
            } else if line.hasPrefix(";; OPT PSEUDOSECTION") {
                section = .opt
            } else if line.hasPrefix(";; QUESTION SECTION") {
                section = .question
            } else if line.hasPrefix(";; ANSWER SECTION") {
                section = .answer
            } else if line.hasPrefix(";; AUTHORITY SECTION") {
                section = .authority
            } else if line.hasPrefix(";; ADDITIONAL SECTION") {
                section = .additional
            } else if line.hasPrefix("; EDNS:") {
                parseEDNS(line.dropFirst("; EDNS:".count))
            } else if line.hasPrefix("; CLIENT-SUBNET:") {
                clientSubnet = line.dropFirst("; CLIENT-SUBNET:".count).trimmingCharacters(in: .whitespaces)
            } else if line.hasPrefix("; NSID:") {
                nsid = line.dropFirst("; NSID:".count).trimmingCharacters(in: .whitespaces)
            } else if section == .question, line.hasPrefix(";"), !line.hasPrefix(";;") {
                question = DigRecord.collapseBlanks(line.dropFirst())
            } else if line.hasPrefix(";;") {
                if !line.hasPrefix(";; global options") && !line.hasPrefix(";; Got answer") && !line.hasPrefix(";; Query time")
                    && !line.hasPrefix(";; SERVER") && !line.hasPrefix(";; WHEN") && !line.hasPrefix(";; MSG SIZE") {
                    notes.append(String(line))
                }
            } else if line.hasPrefix(";") {
                continue
            } else if let rec = DigRecord(line: line) {
                switch section {
                case .authority: authority.append(rec)
                case .additional: additional.append(rec)
                case .answer: answer.append(rec)
                case .none, .question, .opt: if !sawHeader { answer.append(rec) }
                }
            }
        }
    }

    private mutating func parseEDNS(_ rest: Substring) {
        // "version: 0, flags: do; udp: 1232" (flags may be empty: "flags:;")
        for part in rest.split(separator: ";") {
            for item in part.split(separator: ",") {
                let kv = item.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2 else { continue }
                switch kv[0] {
                case "version": ednsVersion = Int(kv[1])
                case "flags": ednsFlags = Set(kv[1].split(separator: " ").map(String.init))
                case "udp": udpSize = Int(kv[1])
                default: break
                }
            }
        }
    }

    /// Splits the output of `dig -f` into one result per query, at each `; <<>> DiG` banner.
    public static func splitBatch(_ text: String) -> [DigResult] {
        var blocks: [String] = []
        var current: [Substring] = []
        var started = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("; <<>> DiG") {
                if started { blocks.append(current.joined(separator: "\n")) }
                current = []
                started = true
            }
            current.append(line)
        }
        if started { blocks.append(current.joined(separator: "\n")) }
        return blocks.map { DigResult(parsing: $0) }
    }

    public var description: String {
        var s = "status=\(status ?? "none") flags=\(flags.sorted().joined(separator: " "))"
        if let ednsVersion { s += " edns=\(ednsVersion) udp=\(udpSize ?? 0)" }
        if let clientSubnet { s += " ecs=\(clientSubnet)" }
        for (n, sec) in [("AN", answer), ("NS", authority), ("AR", additional)] where !sec.isEmpty {
            s += "\n  \(n): " + sec.map(\.normalized).sorted().joined(separator: "\n      ")
        }
        return s
    }
}
