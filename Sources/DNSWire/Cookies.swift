/// SipHash-2-4 with a 128-bit key (Aumasson and Bernstein, "SipHash: a fast short-input
/// PRF"), the hash RFC 9018 names for interoperable DNS server cookies. Written over a
/// raw buffer so a cookie can be checked per query without allocating; the test suite
/// checks it against OpenSSL's SIPHASH MAC.
public struct SipHash24: Sendable {
    public let k0: UInt64
    public let k1: UInt64

    /// `key` is 16 bytes, read little-endian as two 64-bit words (as the paper specifies).
    public init?(key: [UInt8]) {
        guard key.count == 16 else { return nil }
        var a: UInt64 = 0, b: UInt64 = 0
        for i in 0..<8 { a |= UInt64(key[i]) << (8 * UInt64(i)); b |= UInt64(key[8 + i]) << (8 * UInt64(i)) }
        k0 = a; k1 = b
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 - b)) }

    @inline(__always) private static func round(_ v0: inout UInt64, _ v1: inout UInt64, _ v2: inout UInt64, _ v3: inout UInt64) {
        v0 = v0 &+ v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
        v2 = v2 &+ v3; v3 = rotl(v3, 16); v3 ^= v2
        v0 = v0 &+ v3; v3 = rotl(v3, 21); v3 ^= v0
        v2 = v2 &+ v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    }

    public func hash(_ data: UnsafeRawBufferPointer) -> UInt64 {
        var v0: UInt64 = 0x736f6d6570736575 ^ k0
        var v1: UInt64 = 0x646f72616e646f6d ^ k1
        var v2: UInt64 = 0x6c7967656e657261 ^ k0
        var v3: UInt64 = 0x7465646279746573 ^ k1
        let n = data.count
        var i = 0
        while i + 8 <= n {
            var m: UInt64 = 0
            for k in 0..<8 { m |= UInt64(data[i + k]) << (8 * UInt64(k)) }
            v3 ^= m
            SipHash24.round(&v0, &v1, &v2, &v3)
            SipHash24.round(&v0, &v1, &v2, &v3)
            v0 ^= m
            i += 8
        }
        var last = UInt64(n & 0xFF) << 56
        var k = 0
        while i + k < n { last |= UInt64(data[i + k]) << (8 * UInt64(k)); k += 1 }
        v3 ^= last
        SipHash24.round(&v0, &v1, &v2, &v3)
        SipHash24.round(&v0, &v1, &v2, &v3)
        v0 ^= last
        v2 ^= 0xFF
        for _ in 0..<4 { SipHash24.round(&v0, &v1, &v2, &v3) }
        return v0 ^ v1 ^ v2 ^ v3
    }
}

/// Interoperable DNS server cookies (RFC 7873 with the RFC 9018 format):
/// Version 1 | Reserved (3) | Timestamp (4) | SipHash-2-4(Client Cookie | Version |
/// Reserved | Timestamp | Client-IP) (8). Every instance sharing the secret (anycast)
/// accepts the others' cookies. During a rotation the previous secret is still accepted.
///
///     let jar = try #require(ServerCookies(secret: key, previous: nil))
///     jar.make(clientCookie: cc, client: addr, now: t, into: out)   // 16 bytes
///     jar.isValid(cookie: full, client: addr, now: t)
public final class ServerCookies: Sendable {
    let current: SipHash24
    let previous: SipHash24?
    /// RFC 9018 4.3: a cookie older than an hour or more than 5 minutes in the future is stale.
    public static let maxAge: UInt32 = 3600
    public static let maxFuture: UInt32 = 300

    public init?(secret: [UInt8], previous: [UInt8]?) {
        guard let c = SipHash24(key: secret) else { return nil }
        current = c
        if let p = previous {
            guard let h = SipHash24(key: p) else { return nil }
            self.previous = h
        } else {
            self.previous = nil
        }
    }

    /// Hash input: client cookie (8) + version/reserved (4) + timestamp (4) + address (4 or 16).
    private func digest(_ h: SipHash24, clientCookie: UnsafeRawBufferPointer, timestamp: UInt32, client: IPAddress) -> UInt64 {
        // 32 bytes on the stack through a tuple: no heap allocation per query.
        var buf: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &buf) { b in
            for i in 0..<8 { b[i] = clientCookie[i] }
            b[8] = 1; b[9] = 0; b[10] = 0; b[11] = 0
            b[12] = UInt8(timestamp >> 24); b[13] = UInt8((timestamp >> 16) & 0xFF)
            b[14] = UInt8((timestamp >> 8) & 0xFF); b[15] = UInt8(timestamp & 0xFF)
            let n = client.isV4 ? 4 : 16
            for i in 0..<n { b[16 + i] = client.byte(i) }
            return h.hash(UnsafeRawBufferPointer(rebasing: b[0..<(16 + n)]))
        }
    }

    /// Writes the 16-byte server cookie for `clientCookie` (8 bytes) into `out`.
    public func make(clientCookie: UnsafeRawBufferPointer, client: IPAddress, now: UInt32, into out: UnsafeMutableRawBufferPointer) {
        out[0] = 1; out[1] = 0; out[2] = 0; out[3] = 0
        out[4] = UInt8(now >> 24); out[5] = UInt8((now >> 16) & 0xFF); out[6] = UInt8((now >> 8) & 0xFF); out[7] = UInt8(now & 0xFF)
        let h = digest(current, clientCookie: clientCookie, timestamp: now, client: client)
        // The hash is emitted in SipHash's natural little-endian byte order.
        for i in 0..<8 { out[8 + i] = UInt8(truncatingIfNeeded: h >> (8 * UInt64(i))) }
    }

    /// Whether `cookie` (client cookie + server cookie, 24 bytes for this format) was made by
    /// this server (current or previous secret) for `client` and is fresh.
    public func isValid(cookie: UnsafeRawBufferPointer, client: IPAddress, now: UInt32) -> Bool {
        guard cookie.count == 24, cookie[8] == 1, cookie[9] == 0, cookie[10] == 0, cookie[11] == 0 else { return false }
        let ts = UInt32(cookie[12]) << 24 | UInt32(cookie[13]) << 16 | UInt32(cookie[14]) << 8 | UInt32(cookie[15])
        // Serial-number arithmetic (RFC 1982) so the check survives the 2106 wrap.
        let age = now &- ts
        let ahead = ts &- now
        guard age <= ServerCookies.maxAge || ahead <= ServerCookies.maxFuture else { return false }
        var got: UInt64 = 0
        for i in 0..<8 { got |= UInt64(cookie[16 + i]) << (8 * UInt64(i)) }
        let cc = UnsafeRawBufferPointer(rebasing: cookie[0..<8])
        if digest(current, clientCookie: cc, timestamp: ts, client: client) == got { return true }
        if let p = previous, digest(p, clientCookie: cc, timestamp: ts, client: client) == got { return true }
        return false
    }
}
