import Config
import DNSWire
import Glibc
import Diagnostics
import Platform

/// An error in the health setup (a bad check reference, an unreadable CA file, a thread
/// that could not start). Input problems are values, never traps.
public struct HealthError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The outcome of one check attempt, before the anti-flap rules of the loop.
///
///     let r = CheckResult(ok: false, reason: "connect 127.0.0.1:80: Connection refused", latency: 0.001)
public struct CheckResult: Sendable, Equatable {
    /// The attempt succeeded by the check's own rule.
    public var ok: Bool
    /// What happened: the error on failure ("HTTP 503, expected 200"), the status on success.
    public var reason: String
    /// Seconds from start to result.
    public var latency: Double
    /// Bounded output for the status view (exec checks).
    public var output: String?
    /// A weight factor in 0...1 reported by the check itself (file checks); 1 means fully up.
    public var weight: Double

    public init(ok: Bool, reason: String, latency: Double, output: String? = nil, weight: Double = 1) {
        self.ok = ok; self.reason = reason; self.latency = latency; self.output = output; self.weight = weight
    }
}

/// One kind of check. Each `run` is one attempt, bounded by `deadline` (monotonic seconds);
/// it runs on a health pool thread and may block until then. Checkers keep no state between
/// runs except caches (the file check's last mtime), so one instance per check is enough;
/// the loop never runs the same check twice at once.
protocol Checker: AnyObject, Sendable {
    func run(start: Double, deadline: Double) -> CheckResult
}

extension CheckFailure {
    func result(start: Double) -> CheckResult {
        CheckResult(ok: false, reason: message, latency: monotonicSeconds() - start)
    }
}

// MARK: - TCP

/// Up when a TCP connection to host:port completes within the timeout.
final class TCPChecker: Checker {
    let host: String
    let port: UInt16
    let source: SocketAddress?
    init(host: String, port: UInt16, source: String? = nil) { self.host = host; self.port = port; self.source = sourceAddress(source) }

    func run(start: Double, deadline: Double) -> CheckResult {
        let addr: SocketAddress
        switch resolveAddress(host: host, port: port, datagram: false) {
        case .failure(let f): return f.result(start: start)
        case .success(let a): addr = a
        }
        switch connectTCP(addr, source: source, deadline: deadline, start: start, label: hostPort(host, port)) {
        case .failure(let f): return f.result(start: start)
        case .success(let fd):
            close(fd)
            return CheckResult(ok: true, reason: "connected to \(hostPort(host, port))", latency: monotonicSeconds() - start)
        }
    }
}

// MARK: - HTTP and HTTPS

/// A byte stream with deadlines: a plain socket or a TLS session over one.
protocol ByteStream {
    func writeAll(_ bytes: [UInt8], deadline: Double, start: Double) -> CheckFailure?
    /// Reads into `buf`; returns 0 at end of stream.
    func read(into buf: UnsafeMutableRawBufferPointer, deadline: Double, start: Double) -> Result<Int, CheckFailure>
    func close()
}

final class PlainStream: ByteStream {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }

    func writeAll(_ bytes: [UInt8], deadline: Double, start: Double) -> CheckFailure? {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { p in send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                switch waitFor(fd, events: Int16(POLLOUT), deadline: deadline) {
                case .ready: continue
                case .timeout: return .timeout("send", after: monotonicSeconds() - start)
                case .failed(let e): return CheckFailure(phase: "send", "poll: \(errnoText(e))")
                }
            }
            return CheckFailure(phase: "send", "send: \(errnoText(errno))")
        }
        return nil
    }

    func read(into buf: UnsafeMutableRawBufferPointer, deadline: Double, start: Double) -> Result<Int, CheckFailure> {
        while true {
            let n = recv(fd, buf.baseAddress, buf.count, 0)
            if n >= 0 { return .success(n) }
            if errno == EAGAIN || errno == EINTR {
                switch waitFor(fd, events: Int16(POLLIN), deadline: deadline) {
                case .ready: continue
                case .timeout: return .failure(.timeout("response", after: monotonicSeconds() - start))
                case .failed(let e): return .failure(CheckFailure(phase: "response", "poll: \(errnoText(e))"))
                }
            }
            return .failure(CheckFailure(phase: "response", "recv: \(errnoText(errno))"))
        }
    }

    func close() { _ = Glibc.close(fd) }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and judges the status code and,
/// optionally, a body substring. With `tls`, the same exchange runs inside OpenSSL.
final class HTTPChecker: Checker {
    let spec: CheckSpec.HTTPCheck
    let request: [UInt8]
    let tls: TLSClientContext?
    let expectBody: [UInt8]?
    let source: SocketAddress?
    /// The response is read up to this many bytes: enough for a status page, bounded so a
    /// huge or endless body cannot hold memory or a worker.
    static let maxResponse = 64 * 1024

    init(_ spec: CheckSpec.HTTPCheck, source: String? = nil) throws(HealthError) {
        self.spec = spec
        self.source = sourceAddress(source)
        let defaultPort: UInt16 = spec.tls ? 443 : 80
        let hostValue = spec.hostHeader ?? (spec.port == defaultPort ? spec.host : hostPort(spec.host, spec.port))
        let bad: (String) -> Bool = { $0.contains("\r") || $0.contains("\n") }
        guard !bad(spec.method), !bad(spec.path), !bad(hostValue),
              spec.headers.allSatisfy({ !bad($0.key) && !bad($0.value) }) else {
            throw HealthError("http check: line breaks are not allowed in method, path, host or headers")
        }
        var req = "\(spec.method) \(spec.path.isEmpty ? "/" : spec.path) HTTP/1.1\r\nHost: \(hostValue)\r\n"
        req += "User-Agent: meridian-health\r\nConnection: close\r\n"
        for (k, v) in spec.headers.sorted(by: { $0.key < $1.key }) { req += "\(k): \(v)\r\n" }
        req += "\r\n"
        request = Array(req.utf8)
        expectBody = spec.expectBody.map { Array($0.utf8) }
        tls = spec.tls ? try TLSClientContext(verify: spec.verifyCertificate, caFile: spec.caFile) : nil
    }

    func run(start: Double, deadline: Double) -> CheckResult {
        let label = hostPort(spec.host, spec.port)
        let addr: SocketAddress
        switch resolveAddress(host: spec.host, port: spec.port, datagram: false) {
        case .failure(let f): return f.result(start: start)
        case .success(let a): addr = a
        }
        let fd: Int32
        switch connectTCP(addr, source: source, deadline: deadline, start: start, label: label) {
        case .failure(let f): return f.result(start: start)
        case .success(let s): fd = s
        }
        let stream: ByteStream
        if let tls {
            let name = spec.serverName ?? spec.hostHeader.map { String($0.split(separator: ":").first ?? "") } ?? spec.host
            switch tls.connect(fd: fd, serverName: name, verify: spec.verifyCertificate, deadline: deadline, start: start) {
            case .failure(let f):
                Glibc.close(fd)
                return f.result(start: start)
            case .success(let s): stream = s
            }
        } else {
            stream = PlainStream(fd: fd)
        }
        defer { stream.close() }
        if let f = stream.writeAll(request, deadline: deadline, start: start) { return f.result(start: start) }
        switch readResponse(stream, deadline: deadline, start: start) {
        case .failure(let f): return f.result(start: start)
        case .success(let (status, body)):
            let latency = monotonicSeconds() - start
            guard spec.expectStatus.contains(status) else {
                let want = spec.expectStatus.map(String.init).joined(separator: ",")
                return CheckResult(ok: false, reason: "HTTP \(status), expected \(want)", latency: latency)
            }
            if let expectBody, !contains(body, expectBody) {
                return CheckResult(ok: false, reason: "HTTP \(status) but body lacks \"\(spec.expectBody ?? "")\"", latency: latency)
            }
            return CheckResult(ok: true, reason: "HTTP \(status)", latency: latency)
        }
    }

    /// Reads until the response is complete (Content-Length, end of chunks, or close) or the
    /// size bound, and returns the status code and the decoded body.
    func readResponse(_ s: ByteStream, deadline: Double, start: Double) -> Result<(Int, [UInt8]), CheckFailure> {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var headerEnd = -1
        var status = 0
        var contentLength: Int? = nil
        var chunked = false
        let noBody = spec.method.uppercased() == "HEAD"
        while data.count < HTTPChecker.maxResponse {
            let r = chunk.withUnsafeMutableBytes { s.read(into: $0, deadline: deadline, start: start) }
            let n: Int
            switch r {
            case .failure(let f): return .failure(f)
            case .success(let k): n = k
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
            if headerEnd < 0, let end = find(data, Array("\r\n\r\n".utf8)) {
                headerEnd = end + 4
                guard let head = String(validating: data[0..<end], as: UTF8.self) else {
                    return .failure(CheckFailure(phase: "response", "response headers are not text"))
                }
                let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
                let parts = lines[0].split(separator: " ", maxSplits: 2)
                guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else {
                    return .failure(CheckFailure(phase: "response", "bad status line \"\(lines[0].prefix(80))\""))
                }
                status = code
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    let key = line[..<colon].lowercased()
                    let value = line[line.index(after: colon)...].trimmingCharacters()
                    if key == "content-length" { contentLength = Int(value) }
                    if key == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
                }
                if noBody || status == 204 || status == 304 || (100..<200).contains(status) { break }
            }
            if headerEnd >= 0 {
                if let cl = contentLength, !chunked, data.count - headerEnd >= cl { break }
                if chunked, data.count >= headerEnd + 5, data.suffix(5) == ArraySlice("0\r\n\r\n".utf8) { break }
            }
        }
        guard headerEnd >= 0 else {
            if data.isEmpty { return .failure(CheckFailure(phase: "response", "connection closed before a response")) }
            return .failure(CheckFailure(phase: "response", "incomplete response headers"))
        }
        var body = Array(data[headerEnd...])
        if let cl = contentLength, !chunked, body.count > cl { body.removeLast(body.count - cl) }
        if chunked { body = dechunk(body) }
        return .success((status, body))
    }
}

/// Decodes a chunked body (RFC 9112 7.1), stopping at the first malformed size line;
/// whatever decoded so far is kept, which is all a substring check needs.
func dechunk(_ b: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < b.count {
        guard let lineEnd = find(b[i...], Array("\r\n".utf8)) else { break }
        let sizeText = String(decoding: b[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
        guard let size = Int(sizeText.trimmingCharacters(), radix: 16), size >= 0 else { break }
        if size == 0 { break }
        let dataStart = lineEnd + 2
        let dataEnd = min(b.count, dataStart + size)
        out.append(contentsOf: b[dataStart..<dataEnd])
        i = dataEnd + 2
    }
    return out
}

/// The start index of `needle` in `hay`, or nil.
func find<C: Collection<UInt8>>(_ hay: C, _ needle: [UInt8]) -> C.Index? where C.Index == Int {
    guard !needle.isEmpty, hay.count >= needle.count else { return needle.isEmpty ? hay.startIndex : nil }
    var i = hay.startIndex
    let last = hay.endIndex - needle.count
    while i <= last {
        if hay[i] == needle[0] {
            var k = 1
            while k < needle.count && hay[i + k] == needle[k] { k += 1 }
            if k == needle.count { return i }
        }
        i += 1
    }
    return nil
}

func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool { find(hay, needle) != nil }

extension StringProtocol {
    func trimmingCharacters() -> String {
        let scalars = unicodeScalars
        guard let a = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let b = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[a...b])
        return String(out)
    }
}

// MARK: - DNS

/// Sends one query over UDP and judges the rcode and, optionally, one answer: an address
/// (compared with A/AAAA rdata), else a string found in the rdata or a name target.
final class DNSChecker: Checker {
    let server: String
    let port: UInt16
    let name: DNSName
    let type: RRType
    let expectRcode: UInt16
    let expectAddress: IPAddress?
    let expectText: String?
    let source: SocketAddress?

    init(server: String, port: UInt16, name: String, type: String, expectRcode: String, expectAnswer: String?,
         source: String? = nil) throws(HealthError) {
        self.server = server; self.port = port; self.source = sourceAddress(source)
        do { self.name = try DNSName(name, origin: .root).lowercased() } catch { throw HealthError("dns check: bad name \"\(name)\": \(error)") }
        guard let t = RRType(mnemonic: type) else { throw HealthError("dns check: unknown type \"\(type)\"") }
        self.type = t
        guard let rc = DNSChecker.rcode(named: expectRcode) else { throw HealthError("dns check: unknown rcode \"\(expectRcode)\"") }
        self.expectRcode = rc
        self.expectAddress = expectAnswer.flatMap { IPAddress($0) }
        self.expectText = expectAnswer
    }

    static func rcode(named s: String) -> UInt16? { dnsCheckRcode(named: s) }

    func run(start: Double, deadline: Double) -> CheckResult {
        let addr: SocketAddress
        switch resolveAddress(host: server, port: port, datagram: true) {
        case .failure(let f): return f.result(start: start)
        case .success(let a): addr = a
        }
        let fd = socket(addr.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return CheckFailure(phase: "query", "socket: \(errnoText(errno))").result(start: start) }
        defer { close(fd) }
        // connect() makes the kernel drop datagrams from other sources and report ICMP
        // port-unreachable as ECONNREFUSED.
        if let f = bindSource(fd, source, to: addr) { return f.result(start: start) }
        guard addr.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            return CheckFailure(phase: "query", "connect \(hostPort(server, port)): \(errnoText(errno))").result(start: start)
        }
        let id = UInt16.random(in: 0...UInt16.max)
        // A plain query: no RD, since an authoritative server is the target.
        let q = QueryBuilder.query(id: id, name: name, type: type)
        guard q.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == q.count else {
            return CheckFailure(phase: "query", "send: \(errnoText(errno))").result(start: start)
        }
        var buf = [UInt8](repeating: 0, count: 65535)
        // Bounded: each pass consumes one datagram or returns; the deadline ends the wait.
        while true {
            switch waitFor(fd, events: Int16(POLLIN), deadline: deadline) {
            case .timeout: return CheckFailure.timeout("dns response", after: monotonicSeconds() - start).result(start: start)
            case .failed(let e): return CheckFailure(phase: "query", "poll: \(errnoText(e))").result(start: start)
            case .ready: break
            }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return CheckFailure(phase: "query", "recv from \(hostPort(server, port)): \(errnoText(errno))").result(start: start)
            }
            let verdict: CheckResult? = buf.withUnsafeBytes { judge(UnsafeRawBufferPointer(rebasing: $0[0..<n]), id: id, start: start) }
            if let verdict { return verdict }
        }
    }

    /// Judges a response; nil means "not ours, keep waiting" (wrong ID or question).
    func judge(_ msg: UnsafeRawBufferPointer, id: UInt16, start: Double) -> CheckResult? {
        do throws(DNSWireError) {
            guard try Wire.getU16(msg, 0) == id else { return nil }
            let flags = try Wire.getU16(msg, 2)
            guard flags & HeaderFlags.qr != 0, try Wire.getU16(msg, 4) == 1 else { return nil }
            let qEnd = try Wire.readName(msg, at: 12)
            let matches = name.wire.withUnsafeBytes { Wire.nameEquals(msg, at: 12, lowercaseWire: $0) }
            guard matches, try Wire.getU16(msg, qEnd) == type.rawValue else { return nil }
            let latency = monotonicSeconds() - start
            let rcode = flags & 0xF
            let rcName = RCode(rawValue: rcode).description
            guard rcode == expectRcode else {
                return CheckResult(ok: false, reason: "rcode \(rcName), expected \(RCode(rawValue: expectRcode))", latency: latency)
            }
            guard let expectText else { return CheckResult(ok: true, reason: "rcode \(rcName)", latency: latency) }
            let ancount = Int(try Wire.getU16(msg, 6))
            var off = qEnd + 4
            var seen: [String] = []
            // Bounded by ancount (at most 65535) and by the message length.
            for _ in 0..<ancount {
                off = try Wire.readName(msg, at: off)
                let rtype = try Wire.getU16(msg, off)
                let rdlen = Int(try Wire.getU16(msg, off + 8))
                let rd = off + 10
                guard rd + rdlen <= msg.count else { throw .truncated(rd) }
                let rdata = UnsafeRawBufferPointer(rebasing: msg[rd..<(rd + rdlen)])
                var text = ""
                if (rtype == RRType.a.rawValue && rdlen == 4) || (rtype == RRType.aaaa.rawValue && rdlen == 16) {
                    let a = IPAddress(bytes: Array(rdata))!
                    text = a.description
                    if a == expectAddress { return CheckResult(ok: true, reason: "rcode \(rcName), answer \(text)", latency: latency) }
                } else if rtype == RRType.cname.rawValue || rtype == RRType.ns.rawValue || rtype == RRType.ptr.rawValue {
                    var wire: [UInt8] = []
                    _ = try withUnsafeMutablePointer(to: &wire) { (p) throws(DNSWireError) in try Wire.readName(msg, at: rd, into: p) }
                    text = DNSName(uncheckedWire: wire).description
                    if expectAddress == nil, text.lowercased().hasPrefix(expectText.lowercased()) {
                        return CheckResult(ok: true, reason: "rcode \(rcName), answer \(text)", latency: latency)
                    }
                } else if expectAddress == nil, contains(Array(rdata), Array(expectText.utf8)) {
                    return CheckResult(ok: true, reason: "rcode \(rcName), answer contains \"\(expectText)\"", latency: latency)
                }
                if !text.isEmpty && seen.count < 4 { seen.append(text) }
                off = rd + rdlen
            }
            let got = seen.isEmpty ? "\(ancount) answers" : seen.joined(separator: ",")
            return CheckResult(ok: false, reason: "rcode \(rcName) but no answer \(expectText) (got \(got))", latency: latency)
        } catch {
            return CheckResult(ok: false, reason: "malformed response: \(error)", latency: monotonicSeconds() - start)
        }
    }
}

// MARK: - File

/// Reads an operator's state file: `up`, `down`, or a weight in 0...1 (0 is down), with an
/// optional reason after the first word. The file is re-read only when its mtime or size
/// changes, as gdnsd's extfile does.
final class FileChecker: Checker, @unchecked Sendable {
    // Mutable cache: touched only by the one pool thread running this check at a time
    // (the loop never runs a check twice at once), hence @unchecked.
    let path: String
    private var lastStamp: (Int, Int, Int)? = nil
    private var cached: (ok: Bool, reason: String, weight: Double) = (false, "", 0)

    init(path: String) { self.path = path }

    func run(start: Double, deadline: Double) -> CheckResult {
        var st = stat()
        guard stat(path, &st) == 0 else {
            lastStamp = nil
            return CheckResult(ok: false, reason: "state file \(path): \(errnoText(errno))", latency: monotonicSeconds() - start)
        }
        let stamp = (st.st_mtim.tv_sec, st.st_mtim.tv_nsec, Int(st.st_size))
        if let l = lastStamp, l == stamp {
            return CheckResult(ok: cached.ok, reason: cached.reason, latency: monotonicSeconds() - start, weight: cached.weight)
        }
        let parsed = FileChecker.parse(readSmallFile(path, limit: 4096))
        cached = parsed
        lastStamp = stamp
        return CheckResult(ok: parsed.ok, reason: parsed.reason, latency: monotonicSeconds() - start, weight: parsed.weight)
    }

    static func parse(_ content: String?) -> (ok: Bool, reason: String, weight: Double) {
        guard let content else { return (false, "state file unreadable", 0) }
        let text = content.trimmingCharacters()
        let word = text.prefix(while: { !$0.isWhitespace })
        let rest = text.dropFirst(word.count).trimmingCharacters()
        let why = rest.isEmpty ? "" : ": \(rest)"
        switch word.lowercased() {
        case "up": return (true, "state file says up\(why)", 1)
        case "down": return (false, "state file says down\(why)", 0)
        default:
            guard let w = Double(word), w >= 0, w <= 1 else {
                return (false, "state file: expected up, down or a weight 0..1, got \"\(word.prefix(40))\"", 0)
            }
            if w == 0 { return (false, "state file says weight 0\(why)", 0) }
            return (true, "state file says weight \(w)\(why)", w)
        }
    }
}

/// Reads at most `limit` bytes of a file as UTF-8 (lossy), or nil when it cannot be opened
/// under `InputFile`'s rules (a FIFO, device or folder, or over `InputLimits.smallFileBytes`,
/// is refused instead of blocking the health loop).
func readSmallFile(_ path: String, limit: Int) -> String? {
    try? InputFile.withOpened(path, limit: InputLimits.smallFileBytes) { (fd, size) throws(InputFileError) in
        let want = min(size, limit)
        let bytes = [UInt8](unsafeUninitializedCapacity: want) { buffer, count in
            count = InputFile.readFully(fd, buffer.baseAddress, want)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
