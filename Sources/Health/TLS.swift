import COpenSSL
import Glibc
import Platform

/// An OpenSSL client context made once per HTTPS check at load time (CA file read then, so
/// a bad path is a load error, not a flapping check).
///
/// Safe to share across threads: after `init` the `SSL_CTX` is never modified, and OpenSSL
/// allows concurrent `SSL_new` on a configured context.
final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer

    init(verify: Bool, caFile: String?) throws(HealthError) {
        guard let c = SSL_CTX_new(TLS_client_method()) else { throw HealthError("SSL_CTX_new: \(openSSLError())") }
        ctx = c
        // SSL_CTX_set_min_proto_version is a macro; this is its expansion.
        _ = SSL_CTX_ctrl(c, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if verify {
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
            if let caFile {
                guard SSL_CTX_load_verify_locations(c, caFile, nil) == 1 else {
                    // Throwing after `ctx` is set runs deinit, which frees the context.
                    throw HealthError("https check: cannot load CA file \(caFile): \(openSSLError())")
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
            if err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL { return .success(0) }
            if let f = wait(err, phase: "read", deadline: deadline, start: start) { return .failure(f) }
        }
    }

    func close() {
        SSL_free(ssl)
        _ = Glibc.close(fd)
    }
}

/// The oldest queued OpenSSL error as text (the error queue is per thread).
func openSSLError() -> String {
    let code = ERR_get_error()
    guard code != 0 else { return "unknown OpenSSL error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
