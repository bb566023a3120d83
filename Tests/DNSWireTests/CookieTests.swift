import COpenSSL
import Testing
@testable import DNSWire

/// SipHash-2-4 through OpenSSL's SIPHASH MAC with an 8-byte output, as RFC 9018 uses it.
private func opensslSipHash(key: [UInt8], data: [UInt8]) -> UInt64? {
    guard let mac = EVP_MAC_fetch(nil, "SIPHASH", nil) else { return nil }
    defer { EVP_MAC_free(mac) }
    guard let ctx = EVP_MAC_CTX_new(mac) else { return nil }
    defer { EVP_MAC_CTX_free(ctx) }
    var size = 8
    var out = [UInt8](repeating: 0, count: 8)
    var outLen = 0
    let ok: Bool = "size".withCString { sizeKey in
        var params = [OSSL_PARAM_construct_size_t(sizeKey, &size), OSSL_PARAM_construct_end()]
        guard EVP_MAC_init(ctx, key, key.count, &params) == 1 else { return false }
        guard EVP_MAC_update(ctx, data, data.count) == 1 else { return false }
        return EVP_MAC_final(ctx, &out, &outLen, 8) == 1
    }
    guard ok, outLen == 8 else { return nil }
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(out[i]) << (8 * UInt64(i)) }
    return v
}

@Test func sipHashPaperVector() throws {
    // Appendix A of the SipHash paper: key 00..0f, message 00..0e.
    let h = try #require(SipHash24(key: Array(0..<16)))
    let msg: [UInt8] = Array(0..<15)
    #expect(msg.withUnsafeBytes { h.hash($0) } == 0xa129ca6149be45e5)
}

@Test func sipHashAgreesWithOpenSSL() throws {
    var rng = SystemRandomNumberGenerator()
    for length in 0..<64 {
        let key = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let ours = try #require(SipHash24(key: key)).hash
        let expected = try #require(opensslSipHash(key: key, data: data))
        #expect(data.withUnsafeBytes { ours($0) } == expected, "length \(length)")
    }
}

@Test func serverCookiesValidateAndExpire() throws {
    let key: [UInt8] = Array(100..<116)
    let jar = try #require(ServerCookies(secret: key, previous: nil))
    let client = IPAddress("192.0.2.7")!
    let cc: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
    var full = cc + [UInt8](repeating: 0, count: 16)
    full.withUnsafeMutableBytes { b in
        cc.withUnsafeBytes { jar.make(clientCookie: $0, client: client, now: 1_000_000, into: UnsafeMutableRawBufferPointer(rebasing: b[8..<24])) }
    }
    func valid(_ bytes: [UInt8], _ addr: IPAddress, _ now: UInt32, _ j: ServerCookies = jar) -> Bool {
        bytes.withUnsafeBytes { j.isValid(cookie: $0, client: addr, now: now) }
    }
    #expect(valid(full, client, 1_000_010))
    #expect(!valid(full, IPAddress("192.0.2.8")!, 1_000_010), "bound to the client address")
    #expect(!valid(full, client, 1_000_000 + 3601), "older than an hour")
    #expect(!valid(full, client, 1_000_000 - 301), "more than 5 minutes ahead")
    var tampered = full; tampered[20] ^= 1
    #expect(!valid(tampered, client, 1_000_010))
    // After a rotation the previous secret is still accepted; an unrelated one is not.
    let rotated = try #require(ServerCookies(secret: Array(200..<216), previous: key))
    #expect(valid(full, client, 1_000_010, rotated))
    let other = try #require(ServerCookies(secret: Array(200..<216), previous: nil))
    #expect(!valid(full, client, 1_000_010, other))
}
