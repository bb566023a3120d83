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
/// short-lived thread per connection (at most `maxConnections` at once), one request per
/// connection (`Connection: close`), bounded header and body sizes and a read deadline, so a
/// slow or hostile client can hold a slot for at most `readTimeout` seconds. It shares no
/// thread with the DNS workers, so it answers while DNS is saturated.
///
///     let http = ControlHTTPServer(address: try ListenAddress("127.0.0.1:8053"), logger: log) { req in
///         .text(200, "ok\n")
///     }
///     try http.start()
///     print(http.boundAddress)      // the real port when 0 was asked
///     http.stop()
public final class ControlHTTPServer: Sendable {
    public static let maxHeaderBytes = 16 * 1024
    public static let maxBodyBytes = 64 * 1024
    public let address: ListenAddress
    public let readTimeout: Double
    public let maxConnections: Int
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)
    private let state = Mutex<(fd: Int32, port: UInt16, thread: Thread?)>((-1, 0, nil))
    private let acceptDone = Mutex<Bool>(false)

    public init(address: ListenAddress, readTimeout: Double = 5, maxConnections: Int = 32, logger: Logger,
                handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        self.address = address; self.readTimeout = readTimeout; self.maxConnections = maxConnections
        self.logger = logger; self.handler = handler
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
    /// threads (bounded by `readTimeout`).
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
            let c = cshim_accept(fd, &family, &addr, &port)
            if c < 0 { continue }
            let peer = addr.withUnsafeBufferPointer { ipAddress(family: family, bytes: $0.baseAddress!) }
            let remote = ListenAddress(address: peer, port: port).description
            if active.add(1, ordering: .relaxed).newValue > maxConnections {
                active.subtract(1, ordering: .relaxed)
                send(c, HTTPResponse.text(503, "too many control connections\n"))
                closeSocket(c)
                continue
            }
            let t = Thread { [self] in
                serve(c, remote: remote)
                closeSocket(c)
                active.subtract(1, ordering: .relaxed)
            }
            t.name = "control-conn"
            t.start()
        }
    }

    private func serve(_ fd: Int32, remote: String) {
        // cshim_accept returns a non-blocking socket: go back to blocking reads bounded by
        // SO_RCVTIMEO, plus an overall deadline below.
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        _ = cshim_set_rcvtimeo(fd, Int32(readTimeout * 1000))
        switch readRequest(fd, remote: remote) {
        case .request(let req): send(fd, handler(req))
        case .fail(let r):
            send(fd, r)
            // Lingering close: closing with unread input makes the kernel send RST, which can
            // destroy the error reply before the client reads it. Half-close, then drain
            // briefly (bounded in bytes and time).
            shutdown(fd, Int32(SHUT_WR))
            _ = cshim_set_rcvtimeo(fd, 200)
            var sink = [UInt8](repeating: 0, count: 4096)
            for _ in 0..<64 {
                let n = sink.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
            }
        }
    }

    private func readRequest(_ fd: Int32, remote: String) -> ReadOutcome {
        let deadline = monotonicMilliseconds() + Int64(readTimeout * 1000)
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var headerEnd: Int? = nil
        var needed = Int.max
        while data.count < needed {
            if monotonicMilliseconds() > deadline { return .fail(HTTPResponse.text(408, "request timeout\n")) }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .fail(HTTPResponse.text(408, "request timeout\n")) }
            if n <= 0 { return .fail(HTTPResponse.text(400, "incomplete request\n")) }
            data.append(contentsOf: buf[0..<n])
            if headerEnd == nil {
                if let e = findHeaderEnd(data) {
                    guard e <= ControlHTTPServer.maxHeaderBytes else {
                        return .fail(HTTPResponse.text(431, "header larger than \(ControlHTTPServer.maxHeaderBytes) bytes\n"))
                    }
                    headerEnd = e
                    guard let head = String(validating: data[0..<e], as: UTF8.self) else { return .fail(HTTPResponse.text(400, "header is not UTF-8\n")) }
                    let length = contentLength(head)
                    guard let l = length, l >= 0 else { return .fail(HTTPResponse.text(400, "bad Content-Length\n")) }
                    guard l <= ControlHTTPServer.maxBodyBytes else { return .fail(HTTPResponse.text(413, "body larger than \(ControlHTTPServer.maxBodyBytes) bytes\n")) }
                    needed = e + 4 + l
                } else if data.count > ControlHTTPServer.maxHeaderBytes {
                    return .fail(HTTPResponse.text(431, "header larger than \(ControlHTTPServer.maxHeaderBytes) bytes\n"))
                }
            }
        }
        guard let e = headerEnd, let head = String(validating: data[0..<e], as: UTF8.self) else {
            return .fail(HTTPResponse.text(400, "bad request\n"))
        }
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else { return .fail(HTTPResponse.text(400, "bad request line\n")) }
        var headers: [String: String] = [:]
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let target = String(requestLine[1])
        let (path, query) = splitTarget(target)
        return .request(HTTPRequest(method: String(requestLine[0]), path: path, query: query, headers: headers,
                                    body: Array(data[(e + 4)..<min(data.count, needed)]), remote: remote))
    }

    private func findHeaderEnd(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }

    private func contentLength(_ head: String) -> Int? {
        for l in head.split(separator: "\r\n") {
            let parts = l.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }
        }
        return 0
    }

    private func send(_ fd: Int32, _ r: HTTPResponse) {
        var out = Array("HTTP/1.1 \(r.status) \(reasonPhrase(r.status))\r\nContent-Type: \(r.contentType)\r\nContent-Length: \(r.body.count)\r\nConnection: close\r\n\r\n".utf8)
        out += r.body
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            sent += n
        }
    }
}

enum ReadOutcome {
    case request(HTTPRequest)
    case fail(HTTPResponse)
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
    case 405: return "Method Not Allowed"
    case 408: return "Request Timeout"
    case 413: return "Payload Too Large"
    case 431: return "Request Header Fields Too Large"
    case 500: return "Internal Server Error"
    case 503: return "Service Unavailable"
    default: return "Status"
    }
}
