import CShim
import DNSWire
import Foundation
import Glibc
import Logging
import Synchronization

/// One HTTP request as the control API sees it: method, path, decoded query parameters,
/// headers (names lower-cased), body, and the peer's address (for the audit log).
public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [String: String]
    public var body: [UInt8]
    public var remote: String
}

/// A complete response; the server adds Content-Length and `Connection: close`.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
        self.status = status; self.contentType = contentType; self.body = body
    }

    public static func text(_ status: Int, _ s: String) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(s.utf8))
    }
}

/// A small HTTP/1.1 server on POSIX sockets for the control API: one accept thread and one
/// short-lived thread per connection, one request per connection (`Connection: close`).
/// It shares no thread with the DNS workers, so it answers while DNS is saturated.
///
/// Slow and hostile clients (every bound is in `ControlLimits`):
/// - the whole request head must arrive within `headDeadline` of accept, the body within
///   `bodyDeadline` after it, and a reply is abandoned after `sendTimeout`;
/// - at most `maxConnections` at once, `maxConnectionsPerAddress` from one address;
/// - at a limit, a new connection evicts the oldest connection that is still reading its
///   request (from the same address when the per-address limit is the one reached), which
///   gets a 503. A request that arrives whole (a probe, the CLI) is read in microseconds and
///   then cannot be evicted, so `/healthz` keeps answering however many slow clients hold
///   slots; only when every slot is busy running a handler is a new connection refused.
/// - `authorize` runs on the head, before the body is read, so a client without the token
///   cannot make the server wait for a body;
/// - malformed requests get a 4xx (never a trap) and the connection is closed.
/// Refused, evicted and timed-out connections are counted in `stats` and logged, at most one
/// line per kind every `ControlLimits.connectionLogInterval`.
///
///     let http = ControlHTTPServer(address: try ListenAddress("127.0.0.1:8053"), logger: log) { req in
///         .text(200, "ok\n")
///     }
///     try http.start()
///     print(http.boundAddress)      // the real port when 0 was asked
///     http.stop()
public final class ControlHTTPServer: Sendable {
    public let address: ListenAddress
    public let headDeadline: Double
    public let maxConnections: Int
    public let maxConnectionsPerAddress: Int
    public let stats = ControlHTTPStats()
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let authorize: @Sendable (HTTPRequest) -> HTTPResponse?
    private let logger: Logger
    private let throttle = LogThrottle(interval: ControlLimits.connectionLogInterval)
    private let stopping = Atomic<Bool>(false)
    private let connections = Mutex(ConnectionTable())
    private let state = Mutex<(fd: Int32, port: UInt16, thread: Thread?)>((-1, 0, nil))
    private let acceptDone = Mutex<Bool>(false)

    /// `authorize` sees each request with its head only (empty body) and returns a reply to
    /// refuse it with, or nil; `handler` sees the whole request.
    public init(address: ListenAddress, headDeadline: Double = ControlLimits.headDeadline,
                maxConnections: Int = ControlLimits.maxConnections,
                maxConnectionsPerAddress: Int = ControlLimits.maxConnectionsPerAddress, logger: Logger,
                authorize: @escaping @Sendable (HTTPRequest) -> HTTPResponse? = { _ in nil },
                handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        self.address = address; self.headDeadline = headDeadline
        self.maxConnections = maxConnections; self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.logger = logger; self.authorize = authorize; self.handler = handler
    }

    /// The address actually bound (the kernel's port when `address.port` was 0).
    public var boundAddress: ListenAddress {
        ListenAddress(address: address.address, port: state.withLock { $0.port })
    }

    /// Binds and listens, then accepts on its own thread.
    public func start() throws(SystemError) {
        let v6 = address.address.isV6
        let context = "\(address), control"
        let fd = try retryingEINTR("socket", context: context) {
            socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemError) {
            try setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", context: context)
            if v6 { try setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY", context: context) }
            let r = address.address.bytes.withUnsafeBufferPointer { cshim_bind(fd, v6 ? 6 : 4, $0.baseAddress, address.port) }
            if r != 0 { throw SystemError("bind", errno: errno, context: context) }
            if Glibc.listen(fd, 64) != 0 { throw SystemError("listen", errno: errno, context: context) }
        } catch {
            closeSocket(fd)
            throw error
        }
        let port = UInt16(truncatingIfNeeded: max(0, cshim_local_port(fd)))
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "control-accept"
        state.withLock { $0 = (fd, port, thread) }
        thread.start()
    }

    /// Stops accepting and closes the listener; requests in progress finish on their own
    /// threads (bounded by the deadlines).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        let fd = state.withLock { $0.fd }
        // The accept loop polls with a short timeout and sees the flag; wait for it so the
        // listener is closed by exactly one owner.
        for _ in 0..<50 where !acceptDone.withLock({ $0 }) { usleep(10_000) }
        if acceptDone.withLock({ $0 }) { closeSocket(fd) }
    }

    private func acceptLoop(_ fd: Int32) {
        defer { acceptDone.withLock { $0 = true } }
        while !stopping.load(ordering: .acquiring) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 100)
            if n <= 0 { continue }
            var family: Int32 = 0, port: UInt16 = 0
            var addr = [UInt8](repeating: 0, count: 16)
            // A non-blocking socket: every wait below is a poll with a deadline.
            let c = cshim_accept(fd, &family, &addr, &port)
            if c < 0 { continue }
            let peer = addr.withUnsafeBufferPointer { ipAddress(family: family, bytes: $0.baseAddress!) }
            let remote = ListenAddress(address: peer, port: port).description
            let acceptedAt = monotonicMilliseconds()
            let admission = connections.withLock {
                $0.admit(fd: c, peer: peer.description, at: acceptedAt, total: maxConnections, perAddress: maxConnectionsPerAddress)
            }
            switch admission {
            case .refused(let limit):
                stats.refused(limit)
                throttle.warning(logger, kind: "refused", "control: refused a connection from \(remote): \(limit.text) reached and every connection is busy")
                _ = HTTPResponse.text(503, "too many control connections\n").wire.withUnsafeBytes {
                    Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
                closeSocket(c)
                continue
            case .admitted(let id, let evicted):
                stats.accepted()
                if let e = evicted {
                    stats.evicted(e.limit)
                    throttle.warning(logger, kind: "evicted", "control: \(e.limit.text) reached: closed the oldest connection still sending its request (from \(e.peer), open \(e.ageMilliseconds) ms) for a new one from \(remote)")
                }
                let t = Thread { [self] in
                    serve(c, id: id, remote: remote, acceptedAt: acceptedAt)
                    // Out of the table first, so the accept thread never shuts down a closed
                    // (and possibly reused) descriptor.
                    connections.withLock { $0.remove(id) }
                    closeSocket(c)
                }
                t.name = "control-conn"
                t.start()
            }
        }
    }

    private func serve(_ fd: Int32, id: UInt64, remote: String, acceptedAt: Int64) {
        let outcome = readRequest(fd, id: id, remote: remote, acceptedAt: acceptedAt)
        if case .request(let req) = outcome, connections.withLock({ $0.startHandling(id) }) {
            send(fd, handler(req), remote: remote)
            return
        }
        let reply: HTTPResponse
        switch outcome {
        case .request, .evicted:
            // Evicted while reading (possibly just as the request completed).
            reply = .text(503, "closed to make room for another connection: send the whole request at once\n")
        case .fail(let r):
            stats.badRequest()
            reply = r
        case .timeout(let phase):
            stats.timedOut(phase)
            throttle.warning(logger, kind: "timeout", "control: \(remote) did not send its request \(phase.rawValue) in time; closed with 408")
            reply = .text(408, "request \(phase.rawValue) not received within \(Int(phase == .head ? headDeadline : ControlLimits.bodyDeadline)) s\n")
        case .gone:
            return
        }
        send(fd, reply, remote: remote)
        lingeringClose(fd)
    }

    /// Half-closes, then drains what the client still sends (bounded in bytes and time), so
    /// the kernel does not answer unread input with RST and destroy the reply in flight.
    private func lingeringClose(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        let deadline = monotonicMilliseconds() + Int64(ControlLimits.lingerTimeout * 1000)
        var sink = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<64 {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return }
            let n = sink.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return }
        }
    }

    /// Polls `fd` for `events` until `deadline` (monotonic ms); false when the time ran out.
    private func wait(_ fd: Int32, for events: Int16, until deadline: Int64) -> Bool {
        while true {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&p, 1, Int32(min(left, 60_000)))
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return true } // let the next recv/send report it
        }
    }

    private func readRequest(_ fd: Int32, id: UInt64, remote: String, acceptedAt: Int64) -> ReadOutcome {
        let headEnd = acceptedAt + Int64(headDeadline * 1000)
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var head: RequestHead?
        var needed = Int.max
        var deadline = headEnd
        while data.count < needed {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return .timeout(head == nil ? .head : .body) }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, needed - data.count), 0) }
            if n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) { continue }
            if n < 0 { return .gone }
            if n == 0 {
                // shutdown(SHUT_RD) by an eviction reads as end of input.
                if connections.withLock({ $0.isEvicted(id) }) { return .evicted }
                return .fail(.text(400, "incomplete request\n"))
            }
            data.append(contentsOf: buf[0..<n])
            guard head == nil else { continue }
            switch scanHead(data) {
            case .incomplete:
                if data.count > ControlLimits.maxHeaderBytes { return .fail(headerTooLarge) }
            case .bareLF:
                return .fail(.text(400, "header lines must end with CRLF\n"))
            case .end(let e):
                guard e + 4 <= ControlLimits.maxHeaderBytes else { return .fail(headerTooLarge) }
                switch parseHead(data[0..<e]) {
                case .failure(let r): return .fail(r)
                case .success(let h):
                    head = h
                    let probe = HTTPRequest(method: h.method, path: h.path, query: h.query, headers: h.headers, body: [], remote: remote)
                    if let refusal = authorize(probe) { return .fail(refusal) }
                    needed = e + 4 + h.contentLength
                    deadline = monotonicMilliseconds() + Int64(ControlLimits.bodyDeadline * 1000)
                }
            }
        }
        guard let h = head else { return .fail(.text(400, "bad request\n")) }
        let bodyStart = needed - h.contentLength
        return .request(HTTPRequest(method: h.method, path: h.path, query: h.query, headers: h.headers,
                                    body: Array(data[bodyStart..<needed]), remote: remote))
    }

    private var headerTooLarge: HTTPResponse {
        .text(431, "request line and headers larger than \(ControlLimits.maxHeaderBytes) bytes\n")
    }

    /// Sends the whole reply or gives up after `ControlLimits.sendTimeout` (counted).
    private func send(_ fd: Int32, _ r: HTTPResponse, remote: String) {
        let out = r.wire
        let deadline = monotonicMilliseconds() + Int64(ControlLimits.sendTimeout * 1000)
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            guard n < 0, errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK else { return }
            if errno == EINTR { continue }
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else {
                stats.timedOut(.send)
                throttle.warning(logger, kind: "send-timeout", "control: \(remote) did not read its reply within \(Int(ControlLimits.sendTimeout)) s; closed")
                return
            }
        }
    }
}
enum ReadOutcome {
    case request(HTTPRequest)
    case fail(HTTPResponse)
    case timeout(ReadPhase)
    /// Closed by the accept thread to make room (it answers 503).
    case evicted
    /// The peer reset the connection: nothing to answer.
    case gone
}

enum ReadPhase: String, Sendable, CaseIterable {
    case head, body, send
}

extension HTTPResponse {
    /// Status line, headers and body as sent.
    var wire: [UInt8] {
        Array("HTTP/1.1 \(status) \(reasonPhrase(status))\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
    }
}

// MARK: request head

enum HeadScan: Equatable {
    case incomplete
    /// Offset of the CRLFCRLF that ends the head.
    case end(Int)
    /// A LF without CR before it: RFC 9112 2.2 lets a server accept it, but a proxy in front
    /// may split lines differently (request smuggling), so it is refused.
    case bareLF
}

/// Finds the end of the head; linear in `d`.
func scanHead(_ d: [UInt8]) -> HeadScan {
    for i in d.indices where d[i] == 10 {
        guard i > 0, d[i - 1] == 13 else { return .bareLF }
        if i >= 3, d[i - 2] == 10, d[i - 3] == 13 { return .end(i - 3) }
    }
    return .incomplete
}

/// A parsed head, or the 4xx reply that refuses it.
enum HeadParse {
    case success(RequestHead)
    case failure(HTTPResponse)
}

/// The parsed request line and headers (names lower-cased).
struct RequestHead {
    var method: String
    var path: String
    var query: [String: String]
    var headers: [String: String]
    var contentLength: Int
}

/// Parses a request head (without the final CRLFCRLF) strictly (RFC 9112 3 and 5): a
/// request line `METHOD /target HTTP/1.x`, header lines `name: value` with a token name
/// and no control characters in the value, at most `maxHeaderCount` of them, no obsolete
/// line folding, one Content-Length of digits only, no Transfer-Encoding. Any other input is
/// a 4xx reply, never a trap.
func parseHead(_ bytes: ArraySlice<UInt8>) -> HeadParse {
    func bad(_ why: String) -> HeadParse { .failure(.text(400, why + "\n")) }
    guard let text = String(validating: bytes, as: UTF8.self) else { return bad("request head is not UTF-8") }
    var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
    guard !lines.isEmpty else { return bad("empty request") }
    let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
    guard requestLine.count == 3, !requestLine[0].isEmpty, requestLine[0].utf8.allSatisfy(isTokenByte) else {
        return bad("bad request line: expected METHOD /path HTTP/1.1")
    }
    guard requestLine[2] == "HTTP/1.1" || requestLine[2] == "HTTP/1.0" else { return bad("only HTTP/1.0 and HTTP/1.1 are spoken here") }
    let target = requestLine[1]
    guard target.first == "/", !target.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
        return bad("bad request target: expected /path")
    }
    guard lines.count <= ControlLimits.maxHeaderCount else {
        return .failure(.text(431, "more than \(ControlLimits.maxHeaderCount) header lines\n"))
    }
    var headers: [String: String] = [:]
    var lengths: Set<String> = []
    for l in lines {
        guard let colon = l.firstIndex(of: ":") else { return bad("header line without a colon") }
        let name = l[..<colon]
        // A leading space or tab is obsolete line folding (RFC 9112 5.2); a space before the
        // colon is forbidden (5.1): both are request-smuggling vectors.
        guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else { return bad("bad header name") }
        let value = l[l.index(after: colon)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
        guard !value.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F }) else {
            return bad("control character in a header value")
        }
        let key = name.lowercased()
        if key == "content-length" { lengths.insert(value) }
        if key == "transfer-encoding" {
            return .failure(.text(411, "Transfer-Encoding is not supported: send the body with Content-Length\n"))
        }
        headers[key] = value
    }
    var length = 0
    if let l = lengths.first {
        // Digits only (no sign, no spaces), one value; more than 18 digits is far above
        // maxBodyBytes and might not fit an Int, so it is "too large" without converting.
        guard lengths.count == 1, !l.isEmpty, l.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return bad("bad Content-Length") }
        length = l.utf8.count <= 18 ? Int(l) ?? Int.max : Int.max
    }
    guard length <= ControlLimits.maxBodyBytes else {
        return .failure(.text(413, "body larger than \(ControlLimits.maxBodyBytes) bytes\n"))
    }
    let (path, query) = splitTarget(String(target))
    return .success(RequestHead(method: String(requestLine[0]), path: path, query: query, headers: headers, contentLength: length))
}

/// RFC 9110 5.6.2 `tchar`.
func isTokenByte(_ b: UInt8) -> Bool {
    switch b {
    case 48...57, 65...90, 97...122: return true
    case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: return true // !#$%&'*+-.^_`|~
    default: return false
    }
}

// MARK: connections

/// Which connection limit a refusal or an eviction is about.
public enum ConnectionLimit: String, Sendable, CaseIterable {
    case total = "total_limit"
    case perAddress = "per_address_limit"

    var text: String {
        switch self {
        case .total: return "the limit of \(ControlLimits.maxConnections) control connections"
        case .perAddress: return "the limit of \(ControlLimits.maxConnectionsPerAddress) control connections per client address"
        }
    }
}

/// The open connections, guarded by the server's mutex. The accept thread admits and evicts;
/// each connection thread marks itself handling, and removes itself before closing its
/// descriptor, so an eviction (`shutdown`) never reaches a closed or reused descriptor.
struct ConnectionTable {
    struct Entry {
        var fd: Int32
        var peer: String
        var acceptedAt: Int64
        var handling = false
        var evicted = false
    }
    struct Eviction { var limit: ConnectionLimit; var peer: String; var ageMilliseconds: Int64 }
    enum Admission { case admitted(UInt64, evicted: Eviction?), refused(ConnectionLimit) }

    private var entries: [UInt64: Entry] = [:]
    private var nextID: UInt64 = 0

    var openCount: Int { entries.count }

    /// Admits `fd`, evicting the oldest connection still reading its request when a limit is
    /// reached: one of `peer`'s own at the per-address limit, anyone's at the total limit.
    /// Evicted connections leave the count at once (their threads only send a 503 and
    /// close); at most `total` more may be on their way out, then new ones are refused.
    mutating func admit(fd: Int32, peer: String, at now: Int64, total: Int, perAddress: Int) -> Admission {
        let live = entries.filter { !$0.value.evicted }
        let mine = live.filter { $0.value.peer == peer }
        var eviction: Eviction?
        if mine.count >= perAddress {
            guard let e = evictOldest(in: mine, limit: .perAddress, now: now) else { return .refused(.perAddress) }
            eviction = e
        } else if live.count >= total {
            guard let e = evictOldest(in: live, limit: .total, now: now) else { return .refused(.total) }
            eviction = e
        }
        guard entries.count < 2 * total else { return .refused(.total) }
        nextID += 1
        entries[nextID] = Entry(fd: fd, peer: peer, acceptedAt: now)
        return .admitted(nextID, evicted: eviction)
    }

    private mutating func evictOldest(in candidates: [UInt64: Entry], limit: ConnectionLimit, now: Int64) -> Eviction? {
        let reading = candidates.filter { !$0.value.handling }
        guard let (id, e) = reading.min(by: { ($0.value.acceptedAt, $0.key) < ($1.value.acceptedAt, $1.key) }) else { return nil }
        entries[id]?.evicted = true
        // Wakes the connection's poll: its recv reads end of input, and it can still send.
        shutdown(e.fd, Int32(SHUT_RD))
        return Eviction(limit: limit, peer: e.peer, ageMilliseconds: now - e.acceptedAt)
    }

    /// The request is read: from now on the connection cannot be evicted. False when it was
    /// evicted first.
    mutating func startHandling(_ id: UInt64) -> Bool {
        guard let e = entries[id], !e.evicted else { return false }
        entries[id]?.handling = true
        return true
    }

    func isEvicted(_ id: UInt64) -> Bool { entries[id]?.evicted ?? false }

    mutating func remove(_ id: UInt64) { entries[id] = nil }
}

/// Counters of the control HTTP server, for /metrics. Rare events (a few per connection at
/// most), so one mutex is cheap enough and keeps them consistent with each other.
public final class ControlHTTPStats: Sendable {
    struct Counts {
        var accepted: UInt64 = 0
        var badRequests: UInt64 = 0
        var refused: [ConnectionLimit: UInt64] = [:]
        var evicted: [ConnectionLimit: UInt64] = [:]
        var timeouts: [ReadPhase: UInt64] = [:]
    }
    private let counts = Mutex(Counts())

    func accepted() { counts.withLock { $0.accepted += 1 } }
    func badRequest() { counts.withLock { $0.badRequests += 1 } }
    func refused(_ l: ConnectionLimit) { counts.withLock { $0.refused[l, default: 0] += 1 } }
    func evicted(_ l: ConnectionLimit) { counts.withLock { $0.evicted[l, default: 0] += 1 } }
    func timedOut(_ p: ReadPhase) { counts.withLock { $0.timeouts[p, default: 0] += 1 } }

    var snapshot: Counts { counts.withLock { $0 } }
}

/// Splits `/path?a=1&b=x%20y` into the path and its decoded parameters.
func splitTarget(_ target: String) -> (String, [String: String]) {
    guard let q = target.firstIndex(of: "?") else { return (target.removingPercentEncoding ?? target, [:]) }
    var params: [String: String] = [:]
    for pair in target[target.index(after: q)...].split(separator: "&") {
        let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let decode = { (s: Substring) in s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
        params[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
    }
    let path = String(target[..<q])
    return (path.removingPercentEncoding ?? path, params)
}

func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 200: return "OK"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 404: return "Not Found"
    case 411: return "Length Required"
    case 405: return "Method Not Allowed"
    case 408: return "Request Timeout"
    case 413: return "Payload Too Large"
    case 431: return "Request Header Fields Too Large"
    case 500: return "Internal Server Error"
    case 503: return "Service Unavailable"
    default: return "Status"
    }
}
