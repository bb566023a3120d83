import Foundation
import Glibc
import Platform
import Logging
import Synchronization
import TestSupport

// Real loopback servers for the health tests. Every port is picked by the kernel (bind to
// port 0, read it back), so parallel tests and other helpers never collide.

func boundSocket(_ type: Int32) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
    precondition(fd >= 0, "socket: \(errno)")
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    let rc = SocketAddress.loopbackV4(port: 0).withSockaddr { bind(fd, $0, $1) }
    precondition(rc == 0, "bind: \(errno)")
    return (fd, SocketAddress.local(of: fd)?.port ?? 0)
}

/// A TCP listener that never accepts: the kernel completes handshakes from its backlog.
final class TCPListener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    init() {
        (fd, port) = boundSocket(Int32(SOCK_STREAM.rawValue))
        listen(fd, 128)
    }
    func close() { _ = Glibc.close(fd) }
}

/// A port bound but not listening: a connect gets a RST, ECONNREFUSED. Keeping it bound
/// means nobody else can take the port while the test runs.
final class RefusedPort: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    init() { (fd, port) = boundSocket(Int32(SOCK_STREAM.rawValue)) }
    func close() { _ = Glibc.close(fd) }
}

/// What the tiny HTTP server answers to its n-th request (0-based).
struct HTTPReply: Sendable {
    var status: Int = 200
    var body: String = "ok"
    var delay: Double = 0
    var chunked = false
}

/// A minimal HTTP/1.1 server on its own thread, one connection at a time; it records the
/// requests it saw.
final class TinyHTTPServer: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    let requests = Mutex<[String]>([])
    let reply: @Sendable (Int) -> HTTPReply
    private var thread: Thread? = nil

    init(reply: @escaping @Sendable (Int) -> HTTPReply) {
        (fd, port) = boundSocket(Int32(SOCK_STREAM.rawValue))
        listen(fd, 64)
        self.reply = reply
        let t = Thread { [self] in serve() }
        thread = t
        t.start()
    }

    private func serve() {
        // Ends when stop() shuts the listening socket down (accept then fails).
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { if errno == EINTR { continue } else { return } }
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            // A request head is at most a few hundred bytes here; 64 KiB bounds a bad client.
            while data.count < 65536 {
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                data.append(contentsOf: buf[0..<n])
                if String(decoding: data, as: UTF8.self).contains("\r\n\r\n") { break }
            }
            let index = requests.withLock { r in r.append(String(decoding: data, as: UTF8.self)); return r.count - 1 }
            let r = reply(index)
            if r.delay > 0 { usleep(UInt32(r.delay * 1_000_000)) }
            var text: String
            if r.chunked {
                let half = r.body.count / 2
                let a = String(r.body.prefix(half)), b = String(r.body.dropFirst(half))
                text = "HTTP/1.1 \(r.status) X\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                text += String(a.utf8.count, radix: 16) + "\r\n" + a + "\r\n" + String(b.utf8.count, radix: 16) + "\r\n" + b + "\r\n0\r\n\r\n"
            } else {
                text = "HTTP/1.1 \(r.status) X\r\nContent-Length: \(r.body.utf8.count)\r\nConnection: close\r\n\r\n\(r.body)"
            }
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Glibc.close(c)
        }
    }

    var requestCount: Int { requests.withLock { $0.count } }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

/// A UDP DNS responder: answers every query with `rcode` and, when `answer` is set, one A
/// record for the question name.
final class UDPResponder: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    let rcode: UInt8
    let answer: [UInt8]?

    init(rcode: UInt8, answer: [UInt8]?) {
        (fd, port) = boundSocket(Int32(SOCK_DGRAM.rawValue))
        self.rcode = rcode
        self.answer = answer
        Thread { [self] in serve() }.start()
    }

    private func serve() {
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            var from = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buf.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) } }
            }
            if n <= 0 { return }
            guard n > 12 else { continue }
            // Find the end of the question name (uncompressed in a query), then 4 bytes of type/class.
            var off = 12
            while off < n && buf[off] != 0 { off += Int(buf[off]) + 1 }
            let qEnd = off + 5
            guard qEnd <= n else { continue }
            var out = Array(buf[0..<qEnd])
            out[2] = 0x84 // QR, AA
            out[3] = rcode
            out[6] = 0; out[7] = answer == nil ? 0 : 1
            out[8] = 0; out[9] = 0; out[10] = 0; out[11] = 0
            if let answer {
                out += [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, UInt8(answer.count)] + answer
            }
            _ = out.withUnsafeBytes { o in
                withUnsafePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, o.baseAddress, o.count, 0, $0, len) } }
            }
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

/// Starts a program with posix_spawn (no shell), output discarded. Foundation's Process
/// is avoided: its waitUntilExit hung here after terminate().
func spawn(_ args: [String]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0) }
    let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = argv.withUnsafeBufferPointer { posix_spawn(&pid, $0[0]!, &actions, nil, $0.baseAddress!, environ) }
    guard rc == 0 else { throw TestFailure("spawn \(args[0]): \(rc)") }
    return pid
}

/// Waits for a child, killing it after `timeout` seconds; returns its exit code (or -1).
@discardableResult
func reap(_ pid: pid_t, timeout: Double) -> Int32 {
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if waitpid(pid, &status, WNOHANG) == pid { return status & 0x7F == 0 ? (status >> 8) & 0xFF : -1 }
        usleep(10_000)
    }
    kill(pid, SIGKILL)
    waitpid(pid, &status, 0)
    return -1
}

/// A self-signed P-256 certificate for localhost and 127.0.0.1 made with the openssl CLI,
/// served by `openssl s_server -www`.
final class OpenSSLServer: @unchecked Sendable {
    let dir: String
    let port: UInt16
    let pid: pid_t
    var certFile: String { dir + "/cert.pem" }

    init() throws {
        dir = NSTemporaryDirectory() + "health-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let gen = try spawn(["/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                             "-days", "1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"])
        guard reap(gen, timeout: 20) == 0 else { throw TestFailure("openssl req failed") }
        // Pick a free port, release it, and hand it to s_server (it cannot report one back).
        let probe = boundSocket(Int32(SOCK_STREAM.rawValue))
        Glibc.close(probe.fd)
        port = probe.port
        pid = try spawn(["/usr/bin/openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", dir + "/cert.pem",
                         "-key", dir + "/key.pem", "-www", "-quiet"])
        // Wait (bounded: 5 s) until it accepts connections.
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let rc = SocketAddress.loopbackV4(port: port).withSockaddr { connect(fd, $0, $1) }
            Glibc.close(fd)
            if rc == 0 { return }
            usleep(20_000)
        }
        stop()
        throw TestFailure("openssl s_server did not start on port \(port)")
    }

    func stop() {
        kill(pid, SIGKILL)
        reap(pid, timeout: 5)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Collects log lines so tests can check what an operator would read.
final class CaptureLog: @unchecked Sendable {
    let lines = Mutex<[String]>([])
    var logger: Logger {
        let me = self
        var l = Logger(label: "health-test") { _ in CaptureHandler(sink: me) }
        l.logLevel = .debug
        return l
    }
    var all: [String] { lines.withLock { $0 } }
}

struct CaptureHandler: LogHandler {
    let sink: CaptureLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        sink.lines.withLock { $0.append("\(event.level): \(event.message)") }
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` seconds pass.
func waitUntil(_ timeout: Double, _ cond: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if cond() { return true }
        usleep(10_000)
    }
    return cond()
}

func tempPath(_ name: String) -> String {
    NSTemporaryDirectory() + "health-\(UUID().uuidString)-\(name)"
}
