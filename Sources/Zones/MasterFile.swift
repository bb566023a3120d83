import Diagnostics
import DNSWire
import Foundation

/// Reads an RFC 1035 master file into records, collecting every error it finds.
///
///     let parser = MasterFileParser(origin: try DNSName("example.com."), baseDirectory: "/etc/meridian/zones")
///     let records = try parser.parseFile(path: "/etc/meridian/zones/example.com.zone",
///                                        displayPath: "zones/example.com.zone")
///
/// Supported: `$ORIGIN`, `$TTL`, `$INCLUDE <file> [origin]`, `@`, relative names, a blank
/// owner meaning the previous owner, parentheses across lines, `;` comments, quoted
/// strings with `\"`, `\\` and `\DDD`, TTL and class in either order (RFC 1035 5.1),
/// TTL units (`1h30m`, `1w2d`). Only class IN is accepted.
///
/// TTL of a record without one (the choice made here, documented for operators):
/// 1. `$TTL` if one was set (RFC 2308 4);
/// 2. else the last TTL written explicitly in this file (RFC 1035 5.1);
/// 3. else, for an SOA record, its MINIMUM field (BIND's legacy fallback), which then also
///    counts as the last explicit TTL for the records after it;
/// 4. else an error.
///
/// `$INCLUDE` paths are relative to `baseDirectory` (the zones folder) and must stay inside
/// it, after resolving `..` and symbolic links. The included file starts with the current
/// origin (or the one given on the directive), the current TTL defaults and no previous
/// owner; nothing it sets flows back to the including file (RFC 1035 5.1). Includes nest
/// at most `maxIncludeDepth` deep and a file including itself is an error.
///
/// Every error is `file:line:column: message` with the token read and what was expected;
/// parsing goes on after an error so that one run reports them all.
public struct MasterFileParser: Sendable {
    public var origin: DNSName
    public var baseDirectory: String
    public var maxIncludeDepth: Int

    /// Reporting stops after this many errors.
    public static let maxErrors = 1000

    public init(origin: DNSName, baseDirectory: String, maxIncludeDepth: Int = 8) {
        self.origin = origin
        self.baseDirectory = baseDirectory
        self.maxIncludeDepth = maxIncludeDepth
    }

    /// Parses `contents`; `file` names it in messages. When `file` is a readable path it is
    /// also used to detect a file that includes itself.
    public func parse(contents: String, file: String) throws(ZoneErrors) -> [ResourceRecord] {
        try parseBatch(contents: contents, file: file).records
    }

    /// `parse(contents:file:)` into a `RecordBatch` (what the zone build reads).
    func parseBatch(contents: String, file: String) throws(ZoneErrors) -> RecordBatch {
        var run = ParseRun(parser: self, displayDirectory: MasterFileParser.directoryPart(of: file))
        if let real = InputFile.realPath(file) { run.stack.append(real) }
        run.parse(bytes: Array(contents.utf8), file: file, state: FileState(origin: origin))
        if !run.errors.isEmpty { throw ZoneErrors(run.errors) }
        return run.records
    }

    /// Reads and parses the file at `path`; `displayPath` (default: `path`) names it in messages.
    /// Included files are named by their path relative to `baseDirectory`, prefixed with the
    /// folder part of `displayPath` (so `zones/example.com.zone` including `inc/hosts.inc`
    /// reports `zones/inc/hosts.inc:3:1: ...`).
    public func parseFile(path: String, displayPath: String? = nil) throws(ZoneErrors) -> [ResourceRecord] {
        try parseFileBatch(path: path, displayPath: displayPath).records
    }

    /// `parseFile(path:displayPath:)` into a `RecordBatch` (what the zone build reads).
    func parseFileBatch(path: String, displayPath: String? = nil) throws(ZoneErrors) -> RecordBatch {
        let shown = displayPath ?? path
        let data: [UInt8]
        do {
            data = try InputFile.read(path, limit: InputLimits.zoneFileBytes)
        } catch {
            throw ZoneErrors([ZoneError(SourceLocation(file: shown, line: 0, column: 0), "cannot read zone file \(error)")])
        }
        var run = ParseRun(parser: self, displayDirectory: MasterFileParser.directoryPart(of: shown))
        if let real = InputFile.realPath(path) { run.stack.append(real) }
        run.parse(bytes: data, file: shown, state: FileState(origin: origin))
        if !run.errors.isEmpty { throw ZoneErrors(run.errors) }
        return run.records
    }

    static func directoryPart(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    /// Resolves `.` and `..` without touching the file system, so an escape attempt is
    /// caught even when the target does not exist.
    static func lexicallyNormalized(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// What one file's parse carries from entry to entry.
struct FileState {
    var origin: DNSName
    /// The last owner's entry in the batch's names; -1 before the file's first owner.
    var lastOwnerIndex: Int32 = -1
    /// The bytes the last owner was parsed from: the next owner written the same way (most
    /// zones write each owner on several lines) reuses it, and shares its storage.
    var lastOwnerToken: Range<Int>? = nil
    var defaultTTL: UInt32? = nil   // $TTL
    var lastTTL: UInt32? = nil      // last explicit TTL
    init(origin: DNSName) { self.origin = origin }
}

struct ParseRun {
    let parser: MasterFileParser
    let displayDirectory: String
    var records = RecordBatch()
    var errors: [ZoneError] = []
    /// Real paths of the files being read, outermost first, for loop detection.
    var stack: [String] = []
    /// How many `$INCLUDE`s deep the current file is (0 for the top file).
    var depth = 0
    var stopped = false
    /// The bytes of the file being read; tokens are ranges of it.
    var b: [UInt8] = []

    init(parser: MasterFileParser, displayDirectory: String) {
        self.parser = parser
        self.displayDirectory = displayDirectory
    }

    func location(_ t: ZoneToken, _ file: String) -> SourceLocation {
        SourceLocation(file: file, line: t.line, column: t.column)
    }

    /// The token as written (quotes restored), for messages.
    func text(_ t: ZoneToken) -> String { field(t).description }

    func field(_ t: ZoneToken) -> RDataField { RDataField(Array(b[t.start..<t.end]), quoted: t.quoted) }

    func bytes(_ t: ZoneToken) -> ArraySlice<UInt8> { b[t.start..<t.end] }

    mutating func parse(bytes: [UInt8], file: String, state initial: FileState) {
        let outer = b
        b = bytes
        defer { b = outer }
        if depth == 0 {
            // Every record takes at least one line, and its owner and rdata in wire form
            // rarely take more bytes than its text: reserved once, so the buffers are not
            // copied as they grow (pages never written cost no memory). Included files grow
            // them as usual.
            var lines = 1
            for c in bytes where c == 10 { lines += 1 }
            records.reserve(records: lines, names: lines, bytes: bytes.count)
        }
        var lexer = ZoneLexer(bytes: bytes, file: file)
        var st = initial
        var entry = ZoneEntry()
        while !stopped, lexer.next(into: &entry, errors: &errors) {
            if errors.count >= MasterFileParser.maxErrors {
                // A binary or badly broken file would otherwise produce an error per line.
                errors.append(ZoneError(SourceLocation(file: file, line: entry.line, column: 1),
                                        "too many errors: stopped after \(MasterFileParser.maxErrors)"))
                stopped = true
                break
            }
            if entry.failed { continue }
            let first = entry.tokens[0]
            if !entry.blankOwner, first.start < first.end, b[first.start] == UInt8(ascii: "$"), !first.quoted {
                directive(entry, file: file, state: &st)
            } else {
                record(entry, file: file, state: &st)
            }
        }
    }

    mutating func fail(_ t: ZoneToken, _ file: String, _ message: String) {
        errors.append(ZoneError(location(t, file), message))
    }

    mutating func directive(_ e: ZoneEntry, file: String, state st: inout FileState) {
        let d = e.tokens[0]
        let name = String(decoding: bytes(d), as: UTF8.self).uppercased()
        let args = e.tokens.dropFirst()
        switch name {
        case "$ORIGIN":
            guard let a = args.first else { return fail(d, file, "missing name after $ORIGIN: expected a domain name") }
            guard args.count == 1 else { return fail(args[args.startIndex + 1], file, "unexpected \"\(text(args[args.startIndex + 1]))\" after $ORIGIN name") }
            do {
                st.origin = try DNSName(presentation: bytes(a), origin: st.origin)
                st.lastOwnerToken = nil
            } catch {
                fail(a, file, "bad $ORIGIN name \"\(text(a))\": \(error)")
            }
        case "$TTL":
            guard let a = args.first else { return fail(d, file, "missing TTL after $TTL: expected seconds or a duration like 1h30m") }
            guard args.count == 1 else { return fail(args[args.startIndex + 1], file, "unexpected \"\(text(args[args.startIndex + 1]))\" after $TTL value") }
            guard !a.quoted, let v = RDataText.parseTTL(bytes(a)) else {
                return fail(a, file, "bad TTL \"\(text(a))\": expected seconds or a duration like 1h30m, at most 2147483647")
            }
            st.defaultTTL = v
        case "$INCLUDE":
            include(e, file: file, state: st)
        default:
            fail(d, file, "unknown directive \"\(text(d))\": expected $ORIGIN, $TTL or $INCLUDE")
        }
    }

    mutating func include(_ e: ZoneEntry, file: String, state st: FileState) {
        let d = e.tokens[0]
        guard e.tokens.count >= 2 else { return fail(d, file, "missing file name after $INCLUDE") }
        let pathTok = e.tokens[1]
        guard e.tokens.count <= 3 else { return fail(e.tokens[3], file, "unexpected \"\(text(e.tokens[3]))\" after $INCLUDE file and origin") }
        var childOrigin = st.origin
        if e.tokens.count == 3 {
            do {
                childOrigin = try DNSName(presentation: bytes(e.tokens[2]), origin: st.origin)
            } catch {
                return fail(e.tokens[2], file, "bad $INCLUDE origin \"\(text(e.tokens[2]))\": \(error)")
            }
        }
        guard let arg = TextBytesZ.unescape(Array(bytes(pathTok))).map({ String(decoding: $0, as: UTF8.self) }), !arg.isEmpty else {
            return fail(pathTok, file, "bad $INCLUDE file name \"\(text(pathTok))\"")
        }
        var base = parser.baseDirectory
        if !base.hasPrefix("/") { base = FileManager.default.currentDirectoryPath + "/" + base }
        let normBase = MasterFileParser.lexicallyNormalized(base)
        let candidate = MasterFileParser.lexicallyNormalized(arg.hasPrefix("/") ? arg : normBase + "/" + arg)
        let prefix = normBase == "/" ? "/" : normBase + "/"
        guard candidate.hasPrefix(prefix) else {
            return fail(pathTok, file, "$INCLUDE file \"\(arg)\" is outside the zones folder")
        }
        let relative = String(candidate.dropFirst(prefix.count))
        let shown = displayDirectory.isEmpty ? relative : displayDirectory + "/" + relative
        // Resolve and check containment before opening anything (InputFile's rules): a
        // link to a FIFO outside the folder must not even be opened.
        let real: String
        do {
            real = try InputFile.resolve(candidate, within: base, folderName: "the zones folder")
        } catch {
            return fail(pathTok, file, error.kind == .outsideFolder ? "$INCLUDE file \"\(arg)\" \(error.reason)"
                                                             : "cannot read $INCLUDE file \"\(arg)\": \(error.reason)")
        }
        if stack.contains(real) {
            return fail(pathTok, file, "$INCLUDE loop: \"\(arg)\" is already being read")
        }
        guard depth < parser.maxIncludeDepth else {
            return fail(pathTok, file, "$INCLUDE nested deeper than \(parser.maxIncludeDepth) files")
        }
        let data: [UInt8]
        do {
            data = try InputFile.read(real, limit: InputLimits.zoneFileBytes, within: base)
        } catch {
            return fail(pathTok, file, "cannot read $INCLUDE file \"\(arg)\": \(error.reason)")
        }
        var child = FileState(origin: childOrigin)
        child.defaultTTL = st.defaultTTL
        child.lastTTL = st.lastTTL
        stack.append(real)
        depth += 1
        parse(bytes: data, file: shown, state: child)
        depth -= 1
        stack.removeLast()
    }

    /// Up to 8 bytes, ASCII-uppercased, packed into an integer: a token key that costs
    /// no allocation, for the class and type words that every record has.
    @inline(__always) static func packedUpper(_ b: ArraySlice<UInt8>) -> UInt64? {
        guard !b.isEmpty, b.count <= 8 else { return nil }
        var v: UInt64 = 0
        for c in b { v = v << 8 | UInt64(asciiUpper(c)) }
        return v
    }

    @inline(__always) static func asciiUpper(_ c: UInt8) -> UInt8 { (c >= 97 && c <= 122) ? c - 32 : c }

    static let classIN = packedUpper(ArraySlice("IN".utf8))!
    /// A short list scanned in order: cheaper than hashing for the type word every record has.
    static let otherClasses: [UInt64] = ["CH", "CHAOS", "HS", "HESIOD", "CS", "NONE", "ANY"].compactMap { packedUpper(ArraySlice($0.utf8)) }
    static let classPrefix = Array("CLASS".utf8)

    static let typeTable: [UInt64: RRType] = {
        let known: [RRType] = [.a, .ns, .cname, .soa, .ptr, .hinfo, .mx, .txt, .aaaa, .srv, .naptr, .dname, .opt, .ds,
                               .sshfp, .rrsig, .nsec, .dnskey, .tlsa, .svcb, .https, .spf, .ixfr, .axfr, .any, .caa]
        var t: [UInt64: RRType] = [:]
        for k in known { if let p = packedUpper(ArraySlice(k.description.utf8)) { t[p] = k } }
        return t
    }()

    static let packedA = packedUpper(ArraySlice("A".utf8))!
    static let packedAAAA = packedUpper(ArraySlice("AAAA".utf8))!

    static func rrType(_ b: ArraySlice<UInt8>) -> RRType? {
        if let p = packedUpper(b) {
            // The types of most records, before the table's hash.
            if p == packedA { return .a }
            if p == packedAAAA { return .aaaa }
            if let t = typeTable[p] { return t }
        }
        return RRType(mnemonic: String(decoding: b, as: UTF8.self))
    }

    /// nil: not a class word; true: IN; false: another class.
    static func classWord(_ b: ArraySlice<UInt8>) -> Bool? {
        if let p = packedUpper(b) {
            if p == classIN { return true }
            if otherClasses.contains(p) { return false }
        }
        guard b.count > 5, zip(b, classPrefix).allSatisfy({ asciiUpper($0) == $1 }),
              b.dropFirst(5).allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return TextBytesZ.number(b.dropFirst(5)) == 1
    }

    /// The wire form of a name written without escapes and other than `@` or `.` (labels
    /// of 1 to 63 bytes split by dots, relative to `origin` unless it ends with a dot) in
    /// `out` (256 bytes); returns its length, or nil for any other text or an invalid name,
    /// which `DNSName(presentation:origin:)` then parses (or reports): both give the same
    /// bytes for every name this accepts.
    @inline(__always)
    static func plainName(_ t: UnsafeBufferPointer<UInt8>, origin: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let n = t.count
        guard n > 1 || (n == 1 && t[0] != UInt8(ascii: "@") && t[0] != UInt8(ascii: ".")), n < 255 else { return nil }
        var o = 1, labelStart = 0, labelLength = 0
        for i in 0..<n {
            let c = t[i]
            if c == UInt8(ascii: "\\") { return nil }
            if c == UInt8(ascii: ".") {
                guard labelLength > 0 else { return nil }
                out[labelStart] = UInt8(labelLength)
                if i == n - 1 {
                    guard o < 255 else { return nil }
                    out[o] = 0
                    return o + 1
                }
                labelStart = o
                o += 1
                labelLength = 0
                continue
            }
            labelLength += 1
            guard labelLength <= 63 else { return nil }
            out[o] = c
            o += 1
        }
        out[labelStart] = UInt8(labelLength)
        guard o + origin.count <= 255 else { return nil }
        UnsafeMutableRawBufferPointer(rebasing: out[o..<(o + origin.count)]).copyMemory(from: origin)
        return o + origin.count
    }

    mutating func record(_ e: ZoneEntry, file: String, state st: inout FileState) {
        let toks = e.tokens
        var k = 0
        // The owner is entered in the batch once per run of records written with it.
        let owner: Int32
        if e.blankOwner {
            guard st.lastOwnerIndex >= 0 else {
                return fail(toks[0], file, "no owner name: the first record of a file must start in column 1")
            }
            owner = st.lastOwnerIndex
        } else if st.lastOwnerIndex >= 0, let r = st.lastOwnerToken, !toks[0].quoted,
                  b[r].elementsEqual(b[toks[0].start..<toks[0].end]) {
            owner = st.lastOwnerIndex
            k = 1
        } else {
            // A plain owner (labels without escapes, the usual case) goes into the batch from
            // a buffer on the stack; anything else, errors included, through `DNSName`.
            let t = toks[0]
            let added: Int32? = t.quoted ? nil : withUnsafeTemporaryAllocation(byteCount: 256, alignment: 1) { out in
                let n = st.origin.wire.withUnsafeBytes { origin in
                    b.withUnsafeBufferPointer { ParseRun.plainName(UnsafeBufferPointer(rebasing: $0[t.start..<t.end]), origin: origin, into: out) }
                }
                guard let n, records.fits(rdata: 0) else { return nil }
                return records.addName(UnsafeRawBufferPointer(rebasing: out[0..<n]))
            }
            if let added {
                owner = added
            } else {
                let name: DNSName
                do {
                    name = try DNSName(presentation: bytes(t), origin: st.origin)
                } catch {
                    return fail(t, file, "bad owner name \"\(text(t))\": \(error)")
                }
                guard records.fits(rdata: 0) else { return fail(t, file, "zone too large: more than 4 GiB of owner names") }
                owner = name.wire.withUnsafeBytes { records.addName($0) }
            }
            st.lastOwnerIndex = owner
            st.lastOwnerToken = toks[0].quoted ? nil : toks[0].start..<toks[0].end
            k = 1
        }
        var ttl: UInt32? = nil
        var sawClass = false
        // RFC 1035 5.1: [<TTL>] [<class>] or [<class>] [<TTL>] before the type.
        while k < toks.count {
            let t = toks[k]
            guard t.start < t.end, !t.quoted else { break }
            let c = b[t.start]
            if c >= 48 && c <= 57 {
                guard ttl == nil else { return fail(t, file, "bad type \"\(text(t))\": expected a record type (TTL already given)") }
                guard let v = RDataText.parseTTL(bytes(t)) else {
                    return fail(t, file, "bad TTL \"\(text(t))\": expected seconds or a duration like 1h30m, at most 2147483647")
                }
                ttl = v
            } else if let isIN = ParseRun.classWord(bytes(t)) {
                guard !sawClass else { return fail(t, file, "bad type \"\(text(t))\": expected a record type (class already given)") }
                guard isIN else {
                    return fail(t, file, "unsupported class \"\(text(t))\": only IN is served")
                }
                sawClass = true
            } else {
                break
            }
            k += 1
        }
        guard k < toks.count else {
            return fail(toks[toks.count - 1], file, "missing record type after \"\(text(toks[toks.count - 1]))\"")
        }
        let typeTok = toks[k]
        guard !typeTok.quoted, let type = ParseRun.rrType(bytes(typeTok)) else {
            return fail(typeTok, file, "unknown record type \"\(text(typeTok))\": expected a type like A, MX or TYPE65534")
        }
        guard !type.isMeta, type != RRType(0) else {
            return fail(typeTok, file, "type \(type) cannot appear in a zone")
        }
        k += 1
        // The common case, one plain address, skips building fields and goes into the batch
        // from a buffer on the stack.
        if (type == .a || type == .aaaa) && k == toks.count - 1 && !toks[k].quoted {
            let t = toks[k]
            let stored: Bool? = withUnsafeTemporaryAllocation(byteCount: 16, alignment: 1) { out in
                let n = b.withUnsafeBufferPointer { RDataText.parseAddress(v6: type == .aaaa, UnsafeBufferPointer(rebasing: $0[t.start..<t.end]), into: out) }
                guard let n else { return nil }
                guard let ttl = recordTTL(explicit: ttl, type: type, rdata: [], toks: toks, file: file, state: &st) else { return false }
                guard records.fits(rdata: n) else {
                    fail(toks[0], file, "zone too large: more than 4 GiB of record data")
                    return false
                }
                records.append(name: owner, type: type, ttl: ttl, rdata: UnsafeRawBufferPointer(rebasing: out[0..<n]),
                               line: toks[0].line, column: toks[0].column, file: file)
                return true
            }
            if stored != nil { return }
        }
        let rdata: [UInt8]
        do {
            do {
                rdata = try RDataText.parse(type: type, fields: toks[k...].map { field($0) }, origin: st.origin)
            } catch {
                let at = k + error.field < toks.count ? toks[k + error.field] : toks[toks.count - 1]
                return fail(at, file, error.message)
            }
        }
        guard let ttl = recordTTL(explicit: ttl, type: type, rdata: rdata, toks: toks, file: file, state: &st) else { return }
        guard records.fits(rdata: rdata.count) else { return fail(toks[0], file, "zone too large: more than 4 GiB of record data") }
        rdata.withUnsafeBytes {
            records.append(name: owner, type: type, ttl: ttl, rdata: $0, line: toks[0].line, column: toks[0].column, file: file)
        }
    }

    /// The TTL of a record (the rules in `MasterFileParser`'s comment), or nil after
    /// reporting that it has none.
    @inline(__always)
    mutating func recordTTL(explicit ttl: UInt32?, type: RRType, rdata: [UInt8], toks: [ZoneToken], file: String,
                            state st: inout FileState) -> UInt32? {
        if let ttl {
            st.lastTTL = ttl
            return ttl
        }
        if let d = st.defaultTTL { return d }
        if let l = st.lastTTL { return l }
        if type == .soa, rdata.count >= 4 {
            let n = rdata.count
            let minimum = UInt32(rdata[n - 4]) << 24 | UInt32(rdata[n - 3]) << 16 | UInt32(rdata[n - 2]) << 8 | UInt32(rdata[n - 1])
            st.lastTTL = min(minimum, 0x7FFF_FFFF)
            return st.lastTTL
        }
        fail(toks[0], file, "no TTL for this record: give one, or set $TTL before it")
        return nil
    }
}

/// `\X` and `\DDD` decoding for a `$INCLUDE` file name (the DNSWire helper is internal).
enum TextBytesZ {
    static func number(_ b: some Collection<UInt8>) -> Int? {
        guard !b.isEmpty, b.count <= 9 else { return nil }
        var v = 0
        for c in b { guard c >= 48 && c <= 57 else { return nil }; v = v * 10 + Int(c - 48) }
        return v
    }

    static func unescape(_ b: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var k = 0
        while k < b.count {
            guard b[k] == UInt8(ascii: "\\") else { out.append(b[k]); k += 1; continue }
            guard k + 1 < b.count else { return nil }
            let d = b[k + 1]
            if d >= 48 && d <= 57 {
                guard k + 3 < b.count else { return nil }
                var v = 0
                for j in 1...3 {
                    let x = b[k + j]
                    guard x >= 48 && x <= 57 else { return nil }
                    v = v * 10 + Int(x - 48)
                }
                guard v <= 255 else { return nil }
                out.append(UInt8(v)); k += 4
            } else {
                out.append(d); k += 2
            }
        }
        return out
    }
}

extension ResourceRecord {
    /// `name ttl IN TYPE rdata`, one line, the form the golden files and `dig` use.
    public var presentation: String {
        "\(name) \(ttl) \(rrclass) \(type) \(RDataText.format(type: type, rdata: rdata))"
    }

    /// Canonical order (RFC 4034 6.1 for names, then type, then rdata octets), so that
    /// output does not depend on file order.
    public static func canonicallySorted(_ records: [ResourceRecord]) -> [ResourceRecord] {
        let keyed = records.map { (key: $0.name.lowercased().labels.reversed().map { Array($0) }, rr: $0) }
        return keyed.sorted { a, b in
            if a.key != b.key { return a.key.lexicographicallyPrecedes(b.key) { $0.lexicographicallyPrecedes($1) } }
            if a.rr.type != b.rr.type { return a.rr.type < b.rr.type }
            return a.rr.rdata.lexicographicallyPrecedes(b.rr.rdata)
        }.map(\.rr)
    }
}
