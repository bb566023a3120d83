import DNSWire
import Foundation
import Glibc

/// A client of Meridian's control API (plain HTTP/1.1 on an IP literal, as the API binds to
/// loopback by default). One connection per request with `Connection: close`, every step
/// bounded by `timeout`, so a drill never hangs on a stuck server.
///
///     let c = try ControlClient(url: "http://127.0.0.1:8053", token: nil)
///     let r = try c.request("GET", "/overrides")
///     r.status   // 200
public struct ControlClient: Sendable {
    public var address: ListenAddress
    public var token: String?
    public var timeout: Double

    /// Accepts `http://HOST:PORT[/]` or `HOST:PORT`, HOST an IP literal (`[v6]` bracketed)
    /// or `localhost`.
    public init(url: String, token: String?, timeout: Double = 5) throws(DrillError) {
        var t = Substring(url)
        if t.hasPrefix("https://") { throw DrillError(.usage, "control URL \(url): https is not supported; the control API speaks plain HTTP on loopback") }
        if t.hasPrefix("http://") { t = t.dropFirst(7) }
        while t.hasSuffix("/") { t = t.dropLast() }
        var text = String(t)
        if text.hasPrefix("localhost:") { text = "127.0.0.1" + text.dropFirst(9) }
        do { address = try ListenAddress(text) } catch {
            throw DrillError(.usage, "bad control URL \"\(url)\": \(error.reason) (expected http://127.0.0.1:8053)")
        }
        self.token = token; self.timeout = timeout
    }

    public var url: String { "http://\(address)" }

    public struct Response: Sendable {
        public var status: Int
        public var body: String
    }

    /// Sends one request and reads the whole response.
    public func request(_ method: String, _ path: String, json: String? = nil) throws(DrillError) -> Response {
        let fd = socket(address.address.isV4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DrillError(.failed, "control \(url): socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withSockaddr(address) { connect(fd, $0, $1) }
        guard rc == 0 else {
            throw DrillError(.failed, "control API \(url) not reachable: \(String(cString: strerror(errno))) (is server.control set and the server running?)")
        }
        let body = Array((json ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\nUser-Agent: meridian-drill\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        if json != nil { head += "Content-Type: application/json\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let out = Array(head.utf8) + body
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw DrillError(.failed, "control \(url): send: \(String(cString: strerror(errno)))") }
            sent += n
        }
        // Read to EOF; 8 MiB is far above any status document and bounds a runaway peer.
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        let deadline = Date().addingTimeInterval(timeout)
        while data.count < 8 << 20 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw DrillError(.failed, "control \(url): \(method) \(path): no response within \(secondsText(timeout))") }
            if n == 0 { break }
            data += buf[0..<n]
            if Date() > deadline { throw DrillError(.failed, "control \(url): \(method) \(path): response not complete within \(secondsText(timeout))") }
        }
        return try ControlClient.parse(data, what: "\(method) \(path)")
    }

    /// Status line, headers, and a body in Content-Length, chunked or read-to-EOF form.
    static func parse(_ data: [UInt8], what: String) throws(DrillError) -> Response {
        let sep: [UInt8] = [13, 10, 13, 10]
        var split = -1
        if data.count >= 4 { for i in 0...(data.count - 4) where Array(data[i..<(i + 4)]) == sep { split = i; break } }
        guard split >= 0, let head = String(bytes: data[0..<split], encoding: .utf8) else {
            throw DrillError(.failed, "control \(what): not an HTTP response")
        }
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw DrillError(.failed, "control \(what): bad status line \"\(lines[0])\"")
        }
        var raw = Array(data[(split + 4)...])
        let headers = lines.dropFirst().map { $0.lowercased() }
        if headers.contains(where: { $0.hasPrefix("transfer-encoding:") && $0.contains("chunked") }) {
            raw = dechunk(raw)
        } else if let cl = headers.first(where: { $0.hasPrefix("content-length:") }),
                  let n = Int(cl.dropFirst(15).trimmingCharacters(in: .whitespaces)), n <= raw.count {
            raw = Array(raw[0..<n])
        }
        return Response(status: status, body: String(decoding: raw, as: UTF8.self))
    }

    static func dechunk(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [], i = 0
        while i < b.count {
            var j = i
            while j + 1 < b.count && !(b[j] == 13 && b[j + 1] == 10) { j += 1 }
            let sizeText = String(decoding: b[i..<j], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0, j + 2 + size <= b.count else { break }
            out += b[(j + 2)..<(j + 2 + size)]
            i = j + 2 + size + 2
        }
        return out
    }

    // MARK: The calls a drill makes

    /// `POST /override`; throws unless the server answers 2xx.
    public func setOverride(target: String, state: String, reason: String, expiresIn: Double?) throws(DrillError) {
        var o: [String: Any] = ["target": target, "state": state, "reason": reason]
        if let e = expiresIn { o["expires_in"] = Int(e.rounded(.up)) }
        let json = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        let r = try request("POST", "/override", json: json)
        guard (200..<300).contains(r.status) else {
            throw DrillError(.failed, "POST /override \(target) \(state) answered \(r.status): \(r.body.prefix(300))")
        }
    }

    /// `DELETE /override?target=...`; true when one was removed, false on 404 (none).
    @discardableResult
    public func clearOverride(target: String) throws(DrillError) -> Bool {
        let q = target.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? target
        let r = try request("DELETE", "/override?target=\(q)")
        if r.status == 404 { return false }
        guard (200..<300).contains(r.status) else {
            throw DrillError(.failed, "DELETE /override?target=\(target) answered \(r.status): \(r.body.prefix(300))")
        }
        return true
    }

    /// The targets of the active overrides from `GET /overrides`, normalised to `dc:NAME`
    /// or `endpoint:NAME`. Accepts a list, or an object holding one, of objects with a
    /// `target` field written as `dc:ams`, `datacenter:ams` or `datacenter ams`.
    public func overrideTargets() throws(DrillError) -> [String] {
        let r = try request("GET", "/overrides")
        guard (200..<300).contains(r.status) else {
            throw DrillError(.failed, "GET /overrides answered \(r.status): \(r.body.prefix(300))")
        }
        guard let v = try? JSONSerialization.jsonObject(with: Data(r.body.utf8), options: [.fragmentsAllowed]) else {
            throw DrillError(.failed, "GET /overrides: not JSON: \(r.body.prefix(300))")
        }
        return ControlClient.targets(in: v, depth: 0)
    }

    static func targets(in v: Any, depth: Int) -> [String] {
        guard depth < 4 else { return [] }
        if let list = v as? [Any] { return list.flatMap { targets(in: $0, depth: depth + 1) } }
        guard let o = v as? [String: Any] else { return [] }
        if let t = o["target"] as? String { return [normalizeTarget(t)] }
        return o.values.flatMap { targets(in: $0, depth: depth + 1) }
    }

    /// `datacenter ams`, `datacenter:ams`, `dc:ams` -> `dc:ams`; the same for endpoints.
    public static func normalizeTarget(_ t: String) -> String {
        let s = t.replacingOccurrences(of: " ", with: ":")
        guard let colon = s.firstIndex(of: ":") else { return s }
        let kind = s[..<colon].lowercased(), rest = s[s.index(after: colon)...]
        switch kind {
        case "dc", "datacenter": return "dc:\(rest)"
        case "ep", "endpoint": return "endpoint:\(rest)"
        default: return s
        }
    }
}

/// Calls `body` with a sockaddr for `a` (IPv4 or IPv6).
func withSockaddr<T>(_ a: ListenAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    if a.address.isV4 {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = a.port.bigEndian
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(a.address.byte(i)) }
        sin.sin_addr = in_addr(s_addr: v.bigEndian)
        return withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }
    var sin6 = sockaddr_in6()
    sin6.sin6_family = sa_family_t(AF_INET6)
    sin6.sin6_port = a.port.bigEndian
    withUnsafeMutableBytes(of: &sin6.sin6_addr) { p in for i in 0..<16 { p[i] = a.address.byte(i) } }
    return withUnsafePointer(to: &sin6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
}
