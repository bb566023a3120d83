import Foundation
import Glibc
import Platform

/// Frame Streams (the transport of dnstap, as libfstrm implements it): data frames are a
/// 32-bit big-endian length and the payload; control frames are an escape (length 0), the
/// control frame's length, its type and its fields (content type). A file holds START,
/// data frames, STOP. On a socket the writer first sends READY and waits for ACCEPT
/// naming the content type, then sends START; at the end it sends STOP and waits for
/// FINISH.
enum FrameStream {
    static let contentType = "protobuf:dnstap.Dnstap"

    enum Control: UInt32 {
        case accept = 1, start = 2, stop = 3, ready = 4, finish = 5
    }
    static let fieldContentType: UInt32 = 1

    static func appendUInt32(_ v: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: v >> 24)); out.append(UInt8(truncatingIfNeeded: v >> 16))
        out.append(UInt8(truncatingIfNeeded: v >> 8)); out.append(UInt8(truncatingIfNeeded: v))
    }

    /// A control frame of `type`, with the content type field when `withContentType`.
    static func control(_ type: Control, withContentType: Bool) -> [UInt8] {
        var body: [UInt8] = []
        appendUInt32(type.rawValue, to: &body)
        if withContentType {
            appendUInt32(fieldContentType, to: &body)
            appendUInt32(UInt32(contentType.utf8.count), to: &body)
            body += Array(contentType.utf8)
        }
        var out: [UInt8] = []
        appendUInt32(0, to: &out)
        appendUInt32(UInt32(body.count), to: &out)
        return out + body
    }

    static func appendData(_ payload: Data, to out: inout [UInt8]) {
        appendUInt32(UInt32(payload.count), to: &out)
        out += payload
    }

    /// Parses a control frame's body (after the escape and length): its type and content types.
    static func parseControl(_ body: [UInt8]) -> (type: UInt32, contentTypes: [String])? {
        func u32(_ i: Int) -> UInt32? {
            guard i + 4 <= body.count else { return nil }
            return UInt32(body[i]) << 24 | UInt32(body[i + 1]) << 16 | UInt32(body[i + 2]) << 8 | UInt32(body[i + 3])
        }
        guard let type = u32(0) else { return nil }
        var types: [String] = []
        var i = 4
        while i < body.count {
            guard let field = u32(i), let length = u32(i + 4), i + 8 + Int(length) <= body.count else { return nil }
            if field == fieldContentType {
                types.append(String(decoding: body[(i + 8)..<(i + 8 + Int(length))], as: UTF8.self))
            }
            i += 8 + Int(length)
        }
        return (type, types)
    }
}

/// Where frames go: a file (unidirectional) or a connected Unix socket (bidirectional).
/// Every call may fail; the caller closes and reconnects.
final class FrameStreamOutput {
    let fd: Int32
    let bidirectional: Bool

    private init(fd: Int32, bidirectional: Bool) { self.fd = fd; self.bidirectional = bidirectional }

    /// Opens `path` (truncated) and writes START.
    static func file(_ path: String) throws(SystemError) -> FrameStreamOutput {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw SystemError("open", errno: errno, context: path) }
        let out = FrameStreamOutput(fd: fd, bidirectional: false)
        do throws(SystemError) { try out.write(FrameStream.control(.start, withContentType: true)) } catch { out.close(); throw error }
        return out
    }

    /// Connects to the collector at `path`, sends READY, expects ACCEPT with our content
    /// type, sends START. Send and receive time out after `timeoutMs`.
    static func socket(_ path: String, timeoutMs: Int32 = 2000) throws(SystemError) -> FrameStreamOutput {
        let fd = try connectUnix(path, timeoutMs: timeoutMs)
        let out = FrameStreamOutput(fd: fd, bidirectional: true)
        do throws(SystemError) {
            try out.write(FrameStream.control(.ready, withContentType: true))
            guard let accept = try out.readControl(), accept.type == FrameStream.Control.accept.rawValue else {
                throw SystemError("Frame Streams handshake", errno: EPROTO, context: "\(path): no ACCEPT")
            }
            guard accept.contentTypes.isEmpty || accept.contentTypes.contains(FrameStream.contentType) else {
                throw SystemError("Frame Streams handshake", errno: EPROTO,
                                  context: "\(path): collector accepts \(accept.contentTypes), not \(FrameStream.contentType)")
            }
            try out.write(FrameStream.control(.start, withContentType: true))
        } catch {
            out.close()
            throw error
        }
        return out
    }

    /// A blocking Unix stream socket connected to `path`, with send and receive timeouts of
    /// `timeoutMs` so a stalled collector cannot hold the caller.
    private static func connectUnix(_ path: String, timeoutMs: Int32) throws(SystemError) -> Int32 {
        guard let address = SocketAddress(unixPath: path) else { throw SystemError("connect", errno: ENAMETOOLONG, context: path) }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemError("socket", errno: errno, context: path) }
        var tv = timeval(tv_sec: Int(timeoutMs / 1000), tv_usec: Int(timeoutMs % 1000) * 1000)
        if setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) != 0
            || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) != 0 {
            let e = errno
            Glibc.close(fd)
            throw SystemError("setsockopt", errno: e, context: path)
        }
        while address.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            let e = errno
            if e == EINTR { continue }
            Glibc.close(fd)
            throw SystemError("connect", errno: e, context: path)
        }
        return fd
    }

    func write(_ bytes: [UInt8]) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == ENOTSOCK {
                    // A file: send() does not apply.
                    let w = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
                    if w < 0 { if errno == EINTR { continue }; throw SystemError("write", errno: errno, context: "dnstap") }
                    done += w
                    continue
                }
                throw SystemError("send", errno: e, context: "dnstap")
            }
            done += n
        }
    }

    private func readExactly(_ count: Int) throws(SystemError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n < 0 { if errno == EINTR { continue }; throw SystemError("recv", errno: errno, context: "dnstap") }
            if n == 0 { throw SystemError("recv", errno: ECONNRESET, context: "dnstap: collector closed the connection") }
            got += n
        }
        return buf
    }

    /// Reads one control frame (escape, length, body); nil when a data frame came instead.
    func readControl() throws(SystemError) -> (type: UInt32, contentTypes: [String])? {
        let escape = try readExactly(4)
        guard escape == [0, 0, 0, 0] else { return nil }
        let l = try readExactly(4)
        let length = Int(UInt32(l[0]) << 24 | UInt32(l[1]) << 16 | UInt32(l[2]) << 8 | UInt32(l[3]))
        guard length >= 4, length <= 512 else { return nil }
        return FrameStream.parseControl(try readExactly(length))
    }

    /// Sends STOP and, on a socket, waits (bounded by the receive timeout) for FINISH.
    func finish() {
        do {
            try write(FrameStream.control(.stop, withContentType: false))
            if bidirectional { _ = try readControl() }
        } catch {}
        close()
    }

    func close() { _ = Glibc.close(fd) }
}
