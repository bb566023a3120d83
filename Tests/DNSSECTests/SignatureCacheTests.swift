import DNSWire
import Testing
@testable import DNSSEC

@Suite("Signature cache")
struct SignatureCacheTests {
    func entry(_ refreshAt: UInt32, _ fill: UInt64) -> SignatureCache.Entry {
        var e = SignatureCache.Entry()
        e.inception = 100; e.expiration = refreshAt + 1000; e.refreshAt = refreshAt
        e.signature.0 = fill
        return e
    }

    @Test("A stored signature is found for the same RRset hash and key, and only for them")
    func hitAndMisses() {
        let c = SignatureCache(capacity: 256)
        c.store(1, 2, key: 7, entry(5000, 42))
        var out = SignatureCache.Entry()
        #expect(c.lookup(1, 2, key: 7, now: 200, into: &out) && out.signature.0 == 42)
        #expect(!c.lookup(1, 3, key: 7, now: 200, into: &out), "another RRset")
        #expect(!c.lookup(1, 2, key: 8, now: 200, into: &out), "another key (a removed or replaced one)")
        #expect(!c.lookup(1, 2, key: 7, now: 5000, into: &out), "due for refresh")
        #expect(!c.lookup(1, 2, key: 7, now: 50, into: &out), "before inception")
        c.store(1, 2, key: 7, entry(9000, 43))
        #expect(c.lookup(1, 2, key: 7, now: 6000, into: &out) && out.signature.0 == 43, "a refresh replaces the entry")
    }

    @Test("The cache is bounded: many more RRsets than slots keep it at its capacity, the newest found")
    func bounded() {
        let c = SignatureCache(capacity: 256)
        #expect(c.capacity == 256)
        for i in 0..<UInt64(10_000) { c.store(i &* 0x9E37_79B9_7F4A_7C15, i, key: 1, entry(UInt32(1000 + i), i)) }
        var found = 0
        var out = SignatureCache.Entry()
        for i in 0..<UInt64(10_000) where c.lookup(i &* 0x9E37_79B9_7F4A_7C15, i, key: 1, now: 200, into: &out) { found += 1 }
        #expect(found <= 256)
        #expect(c.lookup(9999 &* 0x9E37_79B9_7F4A_7C15, 9999, key: 1, now: 200, into: &out))
    }

    @Test("The RRset hash depends on every byte and on the key's seed")
    func hashing() {
        let a: [UInt8] = Array(0..<37)
        var b = a
        b[36] ^= 1
        let ha = a.withUnsafeBytes { hash128($0, seed: 1) }
        #expect(ha == a.withUnsafeBytes { hash128($0, seed: 1) })
        #expect(ha != b.withUnsafeBytes { hash128($0, seed: 1) })
        #expect(ha != a.withUnsafeBytes { hash128($0, seed: 2) })
    }

    @Test("Key tags follow RFC 4034 Appendix B: the root zone's KSK-2017 has tag 20326")
    func keyTag() throws {
        let key = "AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU="
        let rdata: [UInt8] = [1, 1, 3, 8] + (try #require(Base64.decode(Array(key.utf8))))
        #expect(DNSSECKey.keyTag(rdata) == 20326)
    }
}
