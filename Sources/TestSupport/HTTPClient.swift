#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Platform

/// One HTTP/1.1 exchange over a fresh TCP connection, for black-box tests of the control
/// API (the server closes after each reply). Bounded by `timeout` for connect, send and read.
///
///     let r = try HTTP.request("GET", host: "127.0.0.1", port: controlPort, path: "/metrics")
///     #expect(r.status == 200)
///     print(r.text)
public enum HTTP {
    public struct Reply: Sendable {
        public var status: Int
        /// Header names lower-cased.
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public static func request(_ method: String, host: String = "127.0.0.1", port: UInt16, path: String,
                               headers: [String: String] = [:], body: [UInt8]? = nil,
                               timeout: Duration = .seconds(5)) throws -> Reply {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if let b = body { head += "Content-Length: \(b.count)\r\n" }
        return try exchange(Array((head + "\r\n").utf8) + (body ?? []), host: host, port: port, timeout: timeout)
    }

    /// Sends `bytes` as they are (for malformed-request tests) and reads the reply until the
    /// server closes.
    public static func exchange(_ out: [UInt8], host: String = "127.0.0.1", port: UInt16,
                                timeout: Duration = .seconds(5)) throws -> Reply {
        guard let addr = SocketAddress(host: host, port: port) else { throw SocketError.badAddress(host) }
        let fd = socket(addr.family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket", errno) }
        defer { sysClose(fd) }
        setTimeout(fd, SO_RCVTIMEO, milliseconds: milliseconds(timeout))
        setTimeout(fd, SO_SNDTIMEO, milliseconds: milliseconds(timeout))
        guard addr.withSockaddr({ connect(fd, $0, $1) }) == 0 else { throw SocketError.system("connect", errno) }
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError.system("send", errno) }
            sent += n
        }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while data.count < 32 << 20 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw SocketError.system("recv", errno) }
            if n == 0 { break }
            data += buf[0..<n]
        }
        var split: Int? = nil
        if data.count >= 4 {
            for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 { split = i; break }
        }
        guard let s = split else { throw SocketError.system("http reply without header end", 0) }
        let lines = String(decoding: data[0..<s], as: UTF8.self).split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw SocketError.system("http status line", 0) }
        var hs: [String: String] = [:]
        for l in lines.dropFirst() {
            guard let c = l.firstIndex(of: ":") else { continue }
            hs[l[..<c].lowercased()] = String(l[l.index(after: c)...]).trimmingCharacters(in: " ")
        }
        return Reply(status: status, headers: hs, body: Array(data[(s + 4)...]))
    }
}

private extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
