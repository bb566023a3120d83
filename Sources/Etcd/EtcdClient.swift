import Config
import Foundation
import Glibc
import Health
import Platform
import Synchronization

/// Why an etcd request failed: unreachable, an HTTP error, or an answer that is not etcd's.
public struct EtcdError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// etcd user authentication (`fleet.username`, `fleet.password_file`).
public struct EtcdCredentials: Sendable {
    public var user: String
    public var password: String
    public init(user: String, password: String) { self.user = user; self.password = password }
}

/// One key-value pair from a range or a watch event.
public struct EtcdKV: Sendable {
    public var key: String
    public var value: [UInt8]
    public var modRevision: Int64
    public var lease: Int64
}

/// A blocking client for etcd's v3 JSON gateway (`/v3/...`, served by etcd 3.4 and later
/// next to gRPC on the client port), over HTTP/1.1 (plain, or TLS to `https://` endpoints
/// with the server's certificate verified) with one connection per request.
/// Keys and values travel base64-encoded and 64-bit numbers as JSON strings, as the gateway's
/// protobuf-to-JSON mapping has it. Requests go to the endpoint that last answered and fail
/// over to the others in order.
///
///     let c = EtcdClient(endpoints: settings.endpoints, timeout: 2)
///     let rev = try c.put("/meridian/overrides/dc:ams", value: Array(json.utf8))
///     let (rev2, kvs) = try c.range(prefix: "/meridian/overrides/")
///
/// Never called on the query path: the fleet agent's threads and the control API use it.
public final class EtcdClient: Sendable {
    public let endpoints: [FleetSettings.Endpoint]
    let timeout: Double
    private let preferred = Atomic<Int>(0)
    private let credentials: EtcdCredentials?
    /// The token from `/v3/auth/authenticate`, sent as `Authorization` (etcd's simple and
    /// JWT tokens both lapse; an auth error gets a new one and one retry).
    private let token = Mutex<String?>(nil)
    /// For `https://` endpoints: verification against `ca_file` and the client certificate.
    private let tls: TLSClientContext?

    public init(endpoints: [FleetSettings.Endpoint], timeout: Double = 2, credentials: EtcdCredentials? = nil, tls: TLSClientContext? = nil) {
        self.endpoints = endpoints; self.timeout = timeout; self.credentials = credentials; self.tls = tls
    }

    /// A token for `credentials` (nil without them), fetched when there is none or `renew`.
    private func authToken(renew: Bool = false) throws(EtcdError) -> String? {
        guard let c = credentials else { return nil }
        if !renew, let t = token.withLock({ $0 }) { return t }
        let obj = try exchange("/v3/auth/authenticate", ["name": c.user, "password": c.password], token: nil)
        guard let t = obj["token"] as? String, !t.isEmpty else { throw EtcdError("etcd authentication as \(c.user): no token in the answer") }
        token.withLock { $0 = t }
        return t
    }

    // MARK: KV and leases

    /// Every key under `prefix`, and the store's revision when it was read.
    public func range(prefix: String) throws(EtcdError) -> (revision: Int64, kvs: [EtcdKV]) {
        let obj = try call("/v3/kv/range", ["key": b64(prefix), "range_end": b64(EtcdClient.prefixEnd(prefix))])
        let kvs = (obj["kvs"] as? [[String: Any]] ?? []).compactMap(EtcdClient.kv)
        return (EtcdClient.revision(obj), kvs)
    }

    /// Writes `key`; with `lease`, the key goes when the lease ends. Returns the new revision.
    @discardableResult
    public func put(_ key: String, value: [UInt8], lease: Int64? = nil) throws(EtcdError) -> Int64 {
        var body: [String: Any] = ["key": b64(key), "value": Data(value).base64EncodedString()]
        if let l = lease { body["lease"] = String(l) }
        return EtcdClient.revision(try call("/v3/kv/put", body))
    }

    /// Deletes `key`; returns the revision and whether it existed.
    @discardableResult
    public func delete(_ key: String) throws(EtcdError) -> (revision: Int64, deleted: Bool) {
        let obj = try call("/v3/kv/deleterange", ["key": b64(key)])
        return (EtcdClient.revision(obj), EtcdClient.int64(obj["deleted"]) > 0)
    }

    /// A new lease of `ttl` seconds; its ID.
    public func grant(ttl: Int) throws(EtcdError) -> Int64 {
        let obj = try call("/v3/lease/grant", ["TTL": String(ttl)])
        let id = EtcdClient.int64(obj["ID"])
        guard id != 0 else { throw EtcdError("lease grant: no lease ID in \(obj)") }
        return id
    }

    /// Renews `lease`; false when etcd no longer knows it (it ended).
    public func keepAlive(_ lease: Int64) throws(EtcdError) -> Bool {
        let obj = try call("/v3/lease/keepalive", ["ID": String(lease)])
        let result = obj["result"] as? [String: Any] ?? obj
        return EtcdClient.int64(result["TTL"]) > 0
    }

    // MARK: Watch

    /// Watches every key under `prefix` from `startRevision`, calling `onEvent` with each
    /// batch's revision, until `shouldStop` says so, the stream ends, or nothing (not even
    /// etcd's progress) arrives for `idle` seconds. Throws when the stream cannot start or
    /// breaks; returns when asked to stop.
    public func watch(prefix: String, startRevision: Int64, idle: Double, shouldStop: () -> Bool,
                      onEvent: (Int64) throws(EtcdError) -> Void) throws(EtcdError) {
        let body: [String: Any] = ["create_request": ["key": b64(prefix), "range_end": b64(EtcdClient.prefixEnd(prefix)),
                                                      "start_revision": String(startRevision), "progress_notify": true]]
        let (conn, endpoint) = try open("/v3/watch", body, receiveTimeout: min(idle, 1), token: try authToken())
        defer { conn.close() }
        var reader = HTTPStreamReader()
        var lastData = monotonicSeconds()
        var buf = [UInt8](repeating: 0, count: 16384)
        while !shouldStop() {
            guard let n = try conn.receive(&buf, timeout: min(idle, 1), endpoint: endpoint) else {
                if monotonicSeconds() - lastData > idle { throw EtcdError("watch on \(endpoint): nothing for \(Int(idle)) s") }
                continue
            }
            if n == 0 { throw EtcdError("watch on \(endpoint): the stream ended\(conn.endReason.map { " (\($0))" } ?? "")") }
            lastData = monotonicSeconds()
            for line in try reader.feed(buf[0..<n], endpoint: endpoint) {
                guard let obj = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else { continue }
                if let err = obj["error"] { throw EtcdError("watch on \(endpoint): \(err)") }
                guard let result = obj["result"] as? [String: Any] else { continue }
                if (result["canceled"] as? Bool) == true {
                    throw EtcdError("watch on \(endpoint) canceled: \(result["cancel_reason"] ?? "compacted")")
                }
                if let events = result["events"] as? [Any], !events.isEmpty { try onEvent(EtcdClient.revision(result)) }
            }
        }
    }

    // MARK: HTTP

    private func call(_ path: String, _ body: [String: Any]) throws(EtcdError) -> [String: Any] {
        do {
            return try exchange(path, body, token: try authToken())
        } catch where credentials != nil && EtcdClient.isAuthFailure(error) {
            return try exchange(path, body, token: try authToken(renew: true))
        }
    }

    /// An expired or unknown token (etcd's "invalid auth token", gRPC Unauthenticated).
    static func isAuthFailure(_ e: EtcdError) -> Bool {
        e.message.contains("invalid auth token") || e.message.contains("\"code\":16") || e.message.contains("user name is empty")
    }

    private func exchange(_ path: String, _ body: [String: Any], token: String?) throws(EtcdError) -> [String: Any] {
        let (conn, endpoint) = try open(path, body, receiveTimeout: timeout, token: token)
        defer { conn.close() }
        var reader = HTTPStreamReader()
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        let deadline = monotonicSeconds() + timeout
        // Bounded: 16 MiB and the deadline; the gateway closes after one answer (Connection: close).
        while out.count < 16 << 20 && !reader.finished {
            guard monotonicSeconds() < deadline else { throw EtcdError("\(endpoint)\(path): no complete answer in \(timeout) s") }
            guard let n = try conn.receive(&buf, timeout: timeout, endpoint: endpoint + path) else { continue }
            if n == 0 { break }
            out += try reader.feed(buf[0..<n], endpoint: endpoint).joined(separator: [10])
        }
        out += reader.rest
        guard reader.status != 0 else { throw EtcdError("\(endpoint)\(path): no HTTP answer\(conn.endReason.map { " (\($0))" } ?? "")") }
        let obj = (try? JSONSerialization.jsonObject(with: Data(out))) as? [String: Any]
        guard reader.status == 200, let o = obj else {
            let text = String(decoding: out.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw EtcdError("\(endpoint)\(path): HTTP \(reader.status): \(text)")
        }
        if let err = o["error"] { throw EtcdError("\(endpoint)\(path): \(err)") }
        return o
    }

    /// Connects to the preferred endpoint (then the others) and sends the request.
    private func open(_ path: String, _ body: [String: Any], receiveTimeout: Double, token: String?) throws(EtcdError) -> (Connection, String) {
        guard let json = try? JSONSerialization.data(withJSONObject: body) else { throw EtcdError("cannot encode \(path)") }
        var errors: [String] = []
        let first = preferred.load(ordering: .relaxed)
        for k in 0..<endpoints.count {
            let i = (first + k) % endpoints.count
            let ep = endpoints[i]
            let addr: SocketAddress
            switch resolveTCPAddress(host: ep.host, port: ep.port) {
            case .success(let a): addr = a
            case .failure(let e): errors.append("\(ep): \(e)"); continue
            }
            let fd = socket(addr.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw EtcdError("socket: \(String(cString: strerror(errno)))") }
            var snd = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
            var rcv = timeval(tv_sec: Int(receiveTimeout), tv_usec: Int((receiveTimeout - receiveTimeout.rounded(.down)) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, socklen_t(MemoryLayout<timeval>.size))
            // On Linux SO_SNDTIMEO also bounds connect().
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, socklen_t(MemoryLayout<timeval>.size))
            guard addr.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
                errors.append("\(ep): connect: \(String(cString: strerror(errno)))")
                close(fd)
                continue
            }
            var conn = Connection.plain(fd)
            if ep.tls {
                guard let tls else { close(fd); throw EtcdError("\(ep): https without a TLS context") }
                do { conn = .tls(try TLSClientConnection(context: tls, fd: fd, serverName: ep.host, timeout: timeout)) } catch {
                    errors.append("\(ep): \(error.message)")
                    close(fd)
                    continue
                }
            }
            let auth = token.map { "Authorization: \($0)\r\n" } ?? ""
            let head = "POST \(path) HTTP/1.1\r\nHost: \(ep.host):\(ep.port)\r\nConnection: close\r\nContent-Type: application/json\r\n\(auth)Content-Length: \(json.count)\r\n\r\n"
            let out = Array(head.utf8) + Array(json)
            if let problem = conn.send(out, timeout: timeout) {
                errors.append("\(ep): \(problem)")
                conn.close()
                continue
            }
            preferred.store(i, ordering: .relaxed)
            return (conn, ep.description)
        }
        throw EtcdError("etcd unreachable: \(errors.joined(separator: "; "))")
    }

    /// One request's connection: a plain socket, or TLS over it.
    enum Connection {
        case plain(Int32)
        case tls(TLSClientConnection)

        /// Why sending failed, or nil when every byte went.
        func send(_ bytes: [UInt8], timeout: Double) -> String? {
            switch self {
            case .tls(let c):
                do { try c.send(bytes, timeout: timeout) } catch { return error.message }
                return nil
            case .plain(let fd):
                var sent = 0
                // Bounded by SO_SNDTIMEO: a stalled send fails with EAGAIN.
                while sent < bytes.count {
                    let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return "send: \(String(cString: strerror(errno)))" }
                    sent += n
                }
                return nil
            }
        }

        /// Bytes read (0 at the end of the stream), or nil when nothing arrived within the
        /// socket's receive timeout (plain) or `timeout` (TLS).
        func receive(_ buf: inout [UInt8], timeout: Double, endpoint: String) throws(EtcdError) -> Int? {
            switch self {
            case .tls(let c):
                let r = buf.withUnsafeMutableBytes { b in Result { () throws(HealthError) in try c.receive(into: b, timeout: timeout) } }
                switch r {
                case .success(let n): return n
                case .failure(let e): throw EtcdError("\(endpoint): \(e.message)")
                }
            case .plain(let fd):
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n >= 0 { return n }
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { return nil }
                throw EtcdError("\(endpoint): recv: \(String(cString: strerror(errno)))")
            }
        }

        /// Why a TLS stream ended, when an alert ended it.
        var endReason: String? {
            if case .tls(let c) = self, let r = c.endReason {
                // Go's TLS 1.3 server sends its alert after the handshake, on the first read.
                return "TLS: \(r); etcd ended the session: with --client-cert-auth it wants a client certificate (fleet.cert_file, fleet.key_file) signed by its --trusted-ca-file"
            }
            return nil
        }

        func close() {
            switch self {
            case .tls(let c): c.close()
            case .plain(let fd): _ = Glibc.close(fd)
            }
        }
    }

    // MARK: JSON helpers

    private func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    /// The end of the range of every key starting with `prefix` (the prefix with its last
    /// byte plus one), as etcd's clientv3.GetPrefixRangeEnd defines it.
    static func prefixEnd(_ prefix: String) -> String {
        var b = Array(prefix.utf8)
        while let last = b.last {
            if last < 0xff { b[b.count - 1] = last + 1; return String(decoding: b, as: UTF8.self) }
            b.removeLast()
        }
        return "\0"
    }

    static func int64(_ v: Any?) -> Int64 {
        if let s = v as? String { return Int64(s) ?? 0 }
        if let n = v as? NSNumber { return n.int64Value }
        return 0
    }

    static func revision(_ obj: [String: Any]) -> Int64 {
        int64((obj["header"] as? [String: Any])?["revision"])
    }

    static func kv(_ o: [String: Any]) -> EtcdKV? {
        guard let k = (o["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
        let v = (o["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
        return EtcdKV(key: String(decoding: k, as: UTF8.self), value: Array(v), modRevision: int64(o["mod_revision"]),
                      lease: int64(o["lease"]))
    }
}

/// Reads an HTTP/1.1 response incrementally: the status line and headers, then the body,
/// chunked or not, handed back line by line (the gateway's stream sends one JSON object per
/// line). Bounded: headers at most 64 KiB, one line at most 16 MiB.
struct HTTPStreamReader {
    private(set) var status = 0
    private var headerDone = false
    private var chunked = false
    private var pending: [UInt8] = []
    /// Decoded body bytes not yet ending in a newline.
    private(set) var rest: [UInt8] = []
    private(set) var finished = false
    private var chunkLeft = 0

    mutating func feed(_ bytes: ArraySlice<UInt8>, endpoint: String) throws(EtcdError) -> [[UInt8]] {
        pending += bytes
        if !headerDone {
            guard let end = find(pending, [13, 10, 13, 10]) else {
                if pending.count > 65536 { throw EtcdError("\(endpoint): HTTP headers over 64 KiB") }
                return []
            }
            let head = String(decoding: pending[..<end], as: UTF8.self).lowercased()
            let first = head.split(separator: "\r\n").first ?? ""
            let parts = first.split(separator: " ")
            guard parts.count >= 2, parts[0].hasPrefix("http/1."), let s = Int(parts[1]) else {
                throw EtcdError("\(endpoint): not an HTTP answer")
            }
            status = s
            chunked = head.contains("\r\ntransfer-encoding: chunked")
            headerDone = true
            pending.removeFirst(end + 4)
        }
        if chunked {
            while !finished {
                if chunkLeft == 0 {
                    guard let eol = find(pending, [13, 10]) else { break }
                    let sizeText = String(decoding: pending[..<eol], as: UTF8.self).split(separator: ";").first ?? ""
                    guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                        throw EtcdError("\(endpoint): bad chunk size")
                    }
                    if size == 0 { finished = true; break }
                    guard pending.count >= eol + 2 + size + 2 else { break }
                    rest += pending[(eol + 2)..<(eol + 2 + size)]
                    pending.removeFirst(eol + 2 + size + 2)
                } else { break }
            }
        } else {
            rest += pending
            pending.removeAll()
        }
        if rest.count > 16 << 20 { throw EtcdError("\(endpoint): a line over 16 MiB") }
        var lines: [[UInt8]] = []
        while let nl = rest.firstIndex(of: 10) {
            lines.append(Array(rest[..<nl]))
            rest.removeFirst(nl + 1)
        }
        return lines
    }

    private func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}
