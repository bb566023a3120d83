import COpenSSL
import Glibc
import Platform

/// An OpenSSL client context made once at load time (CA file, client certificate and key
/// read then, so a bad path is a load error, not a flapping check): one per HTTPS check, and
/// one for the fleet's etcd client. The one place that sets up `SSL_CTX` verification.
///
/// Safe to share across threads: after `init` the `SSL_CTX` is never modified, and OpenSSL
/// allows concurrent `SSL_new` on a configured context.
public final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer

    /// Which file a context could not be made from (`ca_file`, `cert_file` or `key_file`),
    /// and why, for an error at that key's file:line:column.
    public struct FileProblem: Error, Sendable {
        public var key: String
        public var message: String
    }

    /// A verifying context with the CA file (nil: the system store) and, for mutual TLS, a
    /// client certificate chain and its private key (PEM), checked to match.
    public convenience init(caFile: String?, certFile: String?, keyFile: String?) throws(FileProblem) {
        do { try self.init(verify: true, caFile: caFile, what: "") } catch { throw FileProblem(key: "ca_file", message: error.message) }
        ERR_clear_error()
        if let certFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, certFile) == 1 else {
                throw FileProblem(key: "cert_file", message: "cannot load client certificate \(certFile): \(openSSLError())")
            }
        }
        if let keyFile {
            guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
                let with = certFile.map { " with the certificate in \($0)" } ?? ""
                throw FileProblem(key: "key_file", message: "cannot use private key \(keyFile)\(with): \(openSSLError())")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw FileProblem(key: "key_file", message: "private key \(keyFile) does not match the certificate in \(certFile ?? "-"): \(openSSLError())")
            }
        }
    }

    /// `what` prefixes a CA file error ("https check: cannot load CA file ...").
    init(verify: Bool, caFile: String?, what: String = "https check") throws(HealthError) {
        guard let c = SSL_CTX_new(TLS_client_method()) else { throw HealthError("SSL_CTX_new: \(openSSLError())") }
        ctx = c
        // SSL_CTX_set_min_proto_version is a macro; this is its expansion.
        _ = SSL_CTX_ctrl(c, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if verify {
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
            if let caFile {
                guard SSL_CTX_load_verify_locations(c, caFile, nil) == 1 else {
                    // Throwing after `ctx` is set runs deinit, which frees the context.
                    throw HealthError("\(what.isEmpty ? "" : what + ": ")cannot load CA file \(caFile): \(openSSLError())")
                }
            } else {
                SSL_CTX_set_default_verify_paths(c)
            }
        } else {
            SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nil)
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Runs the handshake on a connected non-blocking socket: SNI for a name, then host or IP
    /// verification when `verify` is on. The stream owns `fd` once this succeeds.
    func connect(fd: Int32, serverName: String, verify: Bool, deadline: Double, start: Double) -> Result<TLSStream, CheckFailure> {
        ERR_clear_error()
        guard let ssl = SSL_new(ctx) else { return .failure(CheckFailure(phase: "tls handshake", "SSL_new: \(openSSLError())")) }
        SSL_set_fd(ssl, fd)
        let isIP = serverName.contains(":") || serverName.allSatisfy({ $0 == "." || $0.isNumber })
        if !isIP && !serverName.isEmpty {
            // RFC 6066 3: SNI carries a host name, never an address literal.
            serverName.withCString { p in
                _ = SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: p))
            }
        }
        if verify {
            if isIP {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
            } else {
                SSL_set1_host(ssl, serverName)
            }
        }
        let stream = TLSStream(ssl: ssl, fd: fd)
        while true {
            let r = SSL_connect(ssl)
            if r == 1 { return .success(stream) }
            let err = SSL_get_error(ssl, r)
            let events: Int16
            switch err {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            default:
                let verifyResult = SSL_get_verify_result(ssl)
                let why: String
                if verifyResult != Int(X509_V_OK) {
                    why = "TLS certificate verification failed: \(String(cString: X509_verify_cert_error_string(verifyResult)))"
                } else if err == SSL_ERROR_SYSCALL {
                    why = "TLS handshake failed: \(errno != 0 ? errnoText(errno) : "connection closed")"
                } else {
                    why = "TLS handshake failed: \(openSSLError())"
                }
                stream.freeSSLOnly()
                return .failure(CheckFailure(phase: "tls handshake", why))
            }
            switch waitFor(fd, events: events, deadline: deadline) {
            case .ready: continue
            case .timeout:
                stream.freeSSLOnly()
                return .failure(.timeout("tls handshake", after: monotonicSeconds() - start))
            case .failed(let e):
                stream.freeSSLOnly()
                return .failure(CheckFailure(phase: "tls handshake", "poll: \(errnoText(e))"))
            }
        }
    }
}

/// One TLS session over a non-blocking socket; used by one thread for one check attempt.
final class TLSStream: ByteStream {
    let ssl: OpaquePointer
    let fd: Int32
    /// Why the last `read` returned 0 when the session failed rather than closed (an alert
    /// such as "certificate required"); nil after a clean close.
    private(set) var endReason: String?
    init(ssl: OpaquePointer, fd: Int32) { self.ssl = ssl; self.fd = fd }

    func freeSSLOnly() { SSL_free(ssl) }

    private func wait(_ err: Int32, phase: String, deadline: Double, start: Double) -> CheckFailure? {
        let events: Int16
        switch err {
        case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
        case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
        default: return CheckFailure(phase: "tls \(phase)", "TLS \(phase) failed: \(openSSLError())")
        }
        switch waitFor(fd, events: events, deadline: deadline) {
        case .ready: return nil
        case .timeout: return .timeout(phase == "read" ? "response" : "send", after: monotonicSeconds() - start)
        case .failed(let e): return CheckFailure(phase: "tls \(phase)", "poll: \(errnoText(e))")
        }
    }

    func writeAll(_ bytes: [UInt8], deadline: Double, start: Double) -> CheckFailure? {
        var off = 0
        while off < bytes.count {
            ERR_clear_error()
            let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + off, Int32($0.count - off)) }
            if n > 0 { off += Int(n); continue }
            if let f = wait(SSL_get_error(ssl, n), phase: "write", deadline: deadline, start: start) { return f }
        }
        return nil
    }

    func read(into buf: UnsafeMutableRawBufferPointer, deadline: Double, start: Double) -> Result<Int, CheckFailure> {
        while true {
            ERR_clear_error()
            let n = SSL_read(ssl, buf.baseAddress, Int32(buf.count))
            if n > 0 { return .success(Int(n)) }
            let err = SSL_get_error(ssl, n)
            // A clean close_notify, or a peer that closes without one (common for HTTP/1.0
            // servers after the body): both end the response.
            if err == SSL_ERROR_SSL { endReason = openSSLError() }
            if err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL { return .success(0) }
            if let f = wait(err, phase: "read", deadline: deadline, start: start) { return .failure(f) }
        }
    }

    func close() {
        SSL_free(ssl)
        _ = Glibc.close(fd)
    }
}

/// A blocking TLS client connection for a thread that owns a connected socket (the fleet's
/// etcd client): the handshake with host or IP verification, then whole writes and reads
/// bounded by a timeout each.
public final class TLSClientConnection {
    private let stream: TLSStream

    /// Runs the handshake on connected `fd` within `timeout` seconds, verifying the server's
    /// certificate for `serverName` (a host name or an address literal). On failure `fd` is
    /// left to the caller; on success the connection owns it.
    public init(context: TLSClientContext, fd: Int32, serverName: String, timeout: Double) throws(HealthError) {
        let start = monotonicSeconds()
        switch context.connect(fd: fd, serverName: serverName, verify: true, deadline: start + timeout, start: start) {
        case .success(let s): stream = s
        case .failure(let f): throw HealthError(f.message)
        }
    }

    public func send(_ bytes: [UInt8], timeout: Double) throws(HealthError) {
        let start = monotonicSeconds()
        if let f = stream.writeAll(bytes, deadline: start + timeout, start: start) { throw HealthError(f.message) }
    }

    /// Bytes read into `buf`: a count (0 at the end of the stream), or nil when nothing
    /// arrived within `timeout`.
    public func receive(into buf: UnsafeMutableRawBufferPointer, timeout: Double) throws(HealthError) -> Int? {
        let start = monotonicSeconds()
        switch stream.read(into: buf, deadline: start + timeout, start: start) {
        case .success(let n): return n
        case .failure(let f) where f.phase == "response": return nil
        case .failure(let f): throw HealthError(f.message)
        }
    }

    /// Why the stream ended, when a TLS alert ended it (e.g. the server wanted a client certificate).
    public var endReason: String? { stream.endReason }

    public func close() { stream.close() }
}

/// The oldest queued OpenSSL error as text (the error queue is per thread).
func openSSLError() -> String {
    let code = ERR_get_error()
    guard code != 0 else { return "unknown OpenSSL error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
