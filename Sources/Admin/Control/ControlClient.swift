import Config
import DNSWire
import Foundation
import Glibc
import Platform
import Health
import Server

/// A minimal HTTP/1.1 client for the control API (one request per connection, IP literals
/// and `localhost` only: the API binds addresses, not names). Used by `meridian status`,
/// `meridian override` and the drill.
///
///     let c = try ControlClient(url: "http://127.0.0.1:8053", token: nil)
///     let report = try c.status()
///     let ams = OverrideTargetName(kind: .datacenter, name: "ams")
///     let o = try c.setOverride(target: ams, state: "down", reason: "drill", expiresIn: 600)
///     _ = try c.clearOverride(target: ams)
public struct ControlClient: Sendable {
    public let address: ListenAddress
    public let token: String?
    /// Bounds the connect, each send and each wait for reply bytes.
    public let timeout: Double
    /// Bounds the wait for reply bytes when set (a fleet override waits for acknowledgements).
    public let replyTimeout: Double?

    /// Accepts `http://HOST:PORT`, `HOST:PORT` and `[V6]:PORT`; a trailing `/` is ignored.
    public init(url: String, token: String? = nil, timeout: Double = 5, replyTimeout: Double? = nil) throws(ControlConfigError) {
        var t = url
        if t.hasPrefix("https://") { throw ControlConfigError(message: "control URL \(url): the control API speaks plain HTTP (put TLS in front of it if needed)") }
        if t.hasPrefix("http://") { t.removeFirst(7) }
        while t.hasSuffix("/") { t.removeLast() }
        if t.hasPrefix("localhost:") { t = "127.0.0.1:" + t.dropFirst(10) }
        do { address = try ListenAddress(t) } catch {
            throw ControlConfigError(message: "control URL \(url): \(error.reason)")
        }
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.timeout = timeout
        self.replyTimeout = replyTimeout
    }

    /// Sends one request; returns the status and body. Throws when the server cannot be reached
    /// or the reply is not HTTP.
    public func request(_ method: String, _ path: String, body: [UInt8]? = nil) throws(ControlConfigError) -> (status: Int, body: [UInt8]) {
        let where_ = "control API at http://\(address)"
        let v6 = address.address.isV6
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlConfigError(message: "\(where_): socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let wait = replyTimeout ?? timeout
        var rtv = timeval(tv_sec: Int(wait), tv_usec: Int((wait - wait.rounded(.down)) * 1e6))
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, socklen_t(MemoryLayout<timeval>.size))
        // On Linux SO_SNDTIMEO also bounds connect().
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let r = address.socketAddress.withSockaddr { connect(fd, $0, $1) }
        if r != 0 {
            throw ControlConfigError(message: "\(where_): connect: \(String(cString: strerror(errno))) (is `meridian serve` running with server.control or --control set?)")
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\nUser-Agent: meridian/\(MeridianVersion.string)\r\n"
        if let t = token { head += "Authorization: Bearer \(t)\r\n" }
        if let b = body { head += "Content-Type: application/json\r\nContent-Length: \(b.count)\r\n" }
        let out = Array((head + "\r\n").utf8) + (body ?? [])
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ControlConfigError(message: "\(where_): send: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        // Bounded: the server closes after one response; 16 MiB is far above any status page.
        while data.count < 16 << 20 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ControlConfigError(message: "\(where_): no complete reply within \(Int(wait)) s") }
            if n == 0 { break }
            data += buf[0..<n]
        }
        guard let split = findBlankLine(data), let headText = String(validating: data[0..<split], as: UTF8.self) else {
            throw ControlConfigError(message: "\(where_): reply is not HTTP")
        }
        let statusLine = headText.split(separator: "\r\n").first?.split(separator: " ") ?? []
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw ControlConfigError(message: "\(where_): bad status line") }
        return (status, Array(data[(split + 4)...]))
    }

    private func findBlankLine(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }

    /// The body of a 200 reply, else an error carrying the server's message.
    public func expectOK(_ method: String, _ path: String, body: [UInt8]? = nil) throws(ControlConfigError) -> [UInt8] {
        let (status, reply) = try request(method, path, body: body)
        guard status == 200 else {
            let text = String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ControlConfigError(message: "\(method) \(path): HTTP \(status): \(text)")
        }
        return reply
    }

    public func status() throws(ControlConfigError) -> StatusReport {
        let body = try expectOK("GET", "/status")
        do { return try JSONDecoder().decode(StatusReport.self, from: Data(body)) } catch {
            throw ControlConfigError(message: "GET /status: cannot decode the reply: \(error)")
        }
    }

    /// `POST /override`; `state` is up, down or degraded:F.
    public func setOverride(target: OverrideTargetName, state: String, reason: String, expiresIn: Double? = nil,
                            author: String? = nil, force: Bool = false) throws(ControlConfigError) -> OverrideView {
        var obj: [String: Any] = ["target": target.description, "state": state, "reason": reason]
        if let e = expiresIn { obj["expires_in"] = e }
        if let a = author { obj["author"] = a }
        if force { obj["force"] = true }
        let body = (try? JSONSerialization.data(withJSONObject: obj)).map { Array($0) } ?? []
        let reply = try expectOK("POST", "/override", body: body)
        do { return try JSONDecoder().decode(OverrideView.self, from: Data(reply)) } catch {
            throw ControlConfigError(message: "POST /override: cannot decode the reply: \(error)")
        }
    }

    /// `DELETE /override?target=`; false when there was no such override (404), and in fleet
    /// mode who applied the clear.
    public func clearOverride(target: OverrideTargetName) throws(ControlConfigError) -> (Bool, FleetAck?) {
        let text = target.description
        let q = text.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? text
        let (status, reply) = try request("DELETE", "/override?target=\(q)")
        if status == 404 { return (false, nil) }
        guard status == 200 else {
            throw ControlConfigError(message: "DELETE /override: HTTP \(status): \(String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return (true, (try? JSONDecoder().decode(FleetClearReply.self, from: Data(reply)))?.fleet)
    }

    public func overrides() throws(ControlConfigError) -> [OverrideView] {
        let body = try expectOK("GET", "/overrides")
        do { return try JSONDecoder().decode([OverrideView].self, from: Data(body)) } catch {
            throw ControlConfigError(message: "GET /overrides: cannot decode the reply: \(error)")
        }
    }
}

