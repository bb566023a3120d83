import COpenSSL
import Diagnostics
import DNSWire
import Foundation

/// The DNSSEC algorithms Meridian signs with (RFC 8624 3.1: both are recommended to sign).
public enum DNSSECAlgorithm: UInt8, Sendable, CaseIterable {
    /// ECDSA over P-256 with SHA-256 (RFC 6605): 64-byte public keys and signatures.
    case ecdsaP256SHA256 = 13
    /// Ed25519 (RFC 8080): 32-byte public keys, 64-byte signatures.
    case ed25519 = 15

    /// The mnemonic BIND writes after the number in `.private` files.
    public var mnemonic: String { self == .ecdsaP256SHA256 ? "ECDSAP256SHA256" : "ED25519" }
    var publicKeyLength: Int { self == .ecdsaP256SHA256 ? 64 : 32 }
    var privateKeyLength: Int { 32 }
}

/// One key pair of a signed zone, as `dnssec-keygen` writes it: `K<zone>.+<alg>+<tag>.key`
/// (the DNSKEY record) and `.private` (the private key and its timing metadata).
///
/// Safe to share: the OpenSSL key is never modified after load, and OpenSSL allows
/// concurrent signing with one `EVP_PKEY` from separate contexts.
///
///     let pair = try DNSSECKey.load(keyFile: "keys/Kexample.com.+013+12345.key")
///     pair.dsRecord  // "example.com. IN DS 12345 13 2 ..."
public final class DNSSECKey: @unchecked Sendable {
    public let owner: DNSName
    public let flags: UInt16
    public let algorithm: DNSSECAlgorithm
    public let publicKey: [UInt8]
    /// The DNSKEY rdata: flags, protocol 3, algorithm, public key (RFC 4034 2.1).
    public let rdata: [UInt8]
    public let keyTag: UInt16
    /// The TTL written in the `.key` file, if any.
    public let ttl: UInt32?
    /// BIND timing metadata from the `.private` file (seconds since the epoch), if set.
    public let publish: UInt32?, activate: UInt32?, inactive: UInt32?, delete: UInt32?
    public let keyFile: String
    /// Identifies the key in the signature cache: owner, algorithm, flags and public key,
    /// so a removed or replaced key never matches an entry made with it.
    let identity: UInt64
    let pkey: OpaquePointer

    /// A KSK or CSK: the SEP bit (RFC 4034 2.1.1) set, as `dnssec-keygen -f KSK` writes it.
    public var isKeySigningKey: Bool { flags & 1 != 0 }

    init(owner: DNSName, flags: UInt16, algorithm: DNSSECAlgorithm, publicKey: [UInt8], ttl: UInt32?,
         timing: [String: UInt32], keyFile: String, pkey: OpaquePointer) {
        self.owner = owner; self.flags = flags; self.algorithm = algorithm; self.publicKey = publicKey
        self.ttl = ttl; self.keyFile = keyFile; self.pkey = pkey
        publish = timing["Publish"]; activate = timing["Activate"]; inactive = timing["Inactive"]; delete = timing["Delete"]
        rdata = [UInt8(flags >> 8), UInt8(flags & 0xFF), 3, algorithm.rawValue] + publicKey
        keyTag = DNSSECKey.keyTag(rdata)
        var h: UInt64 = 0x6D65_7269_6469_616E
        for b in owner.lowercased().wire + rdata { h = mix64(h ^ UInt64(b)) }
        identity = h
    }

    deinit { EVP_PKEY_free(pkey) }

    /// RFC 4034 Appendix B.
    public static func keyTag(_ rdata: [UInt8]) -> UInt16 {
        var ac: UInt32 = 0
        for (i, b) in rdata.enumerated() { ac &+= i & 1 == 1 ? UInt32(b) : UInt32(b) << 8 }
        ac &+= (ac >> 16) & 0xFFFF
        return UInt16(ac & 0xFFFF)
    }

    /// In the DNSKEY RRset at `now`: past Publish and before Delete.
    public func isPublished(at now: UInt32) -> Bool {
        (publish.map { $0 <= now } ?? true) && (delete.map { $0 > now } ?? true)
    }

    /// Signs at `now`: published, past Activate and before Inactive.
    public func isActive(at now: UInt32) -> Bool {
        isPublished(at: now) && (activate.map { $0 <= now } ?? true) && (inactive.map { $0 > now } ?? true)
    }

    /// The SHA-256 DS rdata (RFC 4509) of this key.
    public var dsRData: [UInt8] {
        let digest = sha256(owner.lowercased().wire + rdata)
        return [UInt8(keyTag >> 8), UInt8(keyTag & 0xFF), algorithm.rawValue, 2] + digest
    }

    /// `owner IN DS tag alg 2 HEX`, for the parent zone.
    public var dsRecord: String {
        "\(owner) IN DS \(keyTag) \(algorithm.rawValue) 2 \(dsRData[4...].map { hexByte($0) }.joined())"
    }

    /// `owner IN DNSKEY flags 3 alg BASE64`, for trust anchors.
    public var dnskeyRecord: String {
        "\(owner) IN DNSKEY \(flags) 3 \(algorithm.rawValue) \(Base64.encode(publicKey))"
    }

    /// A signing context for one thread, reused for every ECDSA signature this key makes
    /// there (creating one per signature costs more than the signature: OpenSSL 3 fetches the
    /// algorithm each time). Nil for Ed25519, which signs through a one-shot digest-sign.
    /// The caller frees it with `EVP_PKEY_CTX_free`; it keeps the key alive.
    func makeContext() -> OpaquePointer? {
        guard algorithm == .ecdsaP256SHA256, let ctx = EVP_PKEY_CTX_new(pkey, nil) else { return nil }
        guard EVP_PKEY_sign_init(ctx) == 1 else { EVP_PKEY_CTX_free(ctx); return nil }
        return ctx
    }

    /// Signs `data` (RFC 4034 3.1.8.1 signing input) into `out`, 64 bytes; false on failure.
    /// `context` (from `makeContext`, this thread's) signs ECDSA without setting up again.
    func sign(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer, context: OpaquePointer? = nil) -> Bool {
        var der = [UInt8](repeating: 0, count: 80)
        var len = der.count
        if let context, algorithm == .ecdsaP256SHA256 {
            var digest = [UInt8](repeating: 0, count: 32)
            var n: UInt32 = 0
            guard EVP_Digest(data.baseAddress, data.count, &digest, &n, sha256Algorithm, nil) == 1,
                  EVP_PKEY_sign(context, &der, &len, digest, 32) == 1 else { return false }
            return DNSSECKey.rawECDSA(der, len, into: out)
        }
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        let md = algorithm == .ecdsaP256SHA256 ? sha256Algorithm : nil
        guard EVP_DigestSignInit(ctx, nil, md, nil, pkey) == 1 else { return false }
        guard EVP_DigestSign(ctx, &der, &len, data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count) == 1 else { return false }
        if algorithm == .ed25519 {
            guard len == 64 else { return false }
            der.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: 64) }
            return true
        }
        return DNSSECKey.rawECDSA(der, len, into: out)
    }

    /// ECDSA's DER SEQUENCE { r, s } to the fixed 32+32 form of RFC 6605 4.
    static func rawECDSA(_ der: [UInt8], _ len: Int, into out: UnsafeMutableRawPointer) -> Bool {
        der.withUnsafeBufferPointer { p -> Bool in
            var q: UnsafePointer<UInt8>? = p.baseAddress
            guard let sig = d2i_ECDSA_SIG(nil, &q, len) else { return false }
            defer { ECDSA_SIG_free(sig) }
            var r: OpaquePointer?, s: OpaquePointer?
            ECDSA_SIG_get0(sig, &r, &s)
            let o = out.assumingMemoryBound(to: UInt8.self)
            return BN_bn2binpad(r, o, 32) == 32 && BN_bn2binpad(s, o + 32, 32) == 32
        }
    }
}

/// SHA-256, fetched from the provider once (an implicit fetch per use is slow in OpenSSL 3).
/// Read-only after its first use; OpenSSL's fetched method objects are thread-safe.
nonisolated(unsafe) let sha256Algorithm: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

@inline(__always) func hexByte(_ b: UInt8) -> String {
    let d = Array("0123456789ABCDEF".utf8)
    return String(decoding: [d[Int(b >> 4)], d[Int(b & 15)]], as: UTF8.self)
}

func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var n: UInt32 = 0
    _ = EVP_Digest(bytes, bytes.count, &out, &n, sha256Algorithm, nil)
    return out
}

func openSSLErrorText() -> String {
    let e = ERR_get_error()
    guard e != 0 else { return "unknown OpenSSL error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(e, &buf, buf.count)
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// MARK: - Key files

/// Reading and writing BIND key files (the format of `dnssec-keygen`, BIND 9
/// `lib/dns/dst_parse.c` v1.3 for the private half).
public enum KeyFiles {
    /// Every `K*.key` in `folder` with its `.private`, for the zones in `zones` (lowercase)
    /// or, when nil, for any zone. Errors name the file (and line where one applies).
    public static func load(folder: String, zones: Set<DNSName>?) -> (keys: [DNSSECKey], errors: [SourceError]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return ([], []) }
        var keys: [DNSSECKey] = []
        var errors: [SourceError] = []
        for f in names.sorted() where f.hasPrefix("K") && f.hasSuffix(".key") {
            // K<zone>.+<alg>+<tag>.key: the zone is everything before ".+".
            guard let plus = f.range(of: ".+") else { continue }
            let zoneText = String(f[f.index(after: f.startIndex)..<plus.lowerBound])
            guard let zone = try? DNSName(zoneText + ".") else { continue }
            if let zones, !zones.contains(zone.lowercased()) { continue }
            let path = (folder as NSString).appendingPathComponent(f)
            do {
                keys.append(try loadPair(keyFile: path))
            } catch {
                errors.append(error)
            }
        }
        return (keys, errors)
    }

    /// Reads `K…key` and the `K….private` beside it.
    public static func loadPair(keyFile: String) throws(SourceError) -> DNSSECKey {
        let at1 = SourceLocation(file: keyFile, line: 1, column: 1)
        let text: String
        do { text = try InputFile.readText(keyFile, limit: 1 << 16) } catch { throw SourceError(at1, "cannot read key file: \(error.reason)") }
        var found: (owner: DNSName, ttl: UInt32?, flags: UInt16, alg: DNSSECAlgorithm, key: [UInt8])?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            var t = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if t.isEmpty { continue }
            let here = SourceLocation(file: keyFile, line: i + 1, column: 1)
            guard found == nil else { throw SourceError(here, "a key file holds one DNSKEY record; found a second line") }
            guard let owner = try? DNSName(t[0].hasSuffix(".") ? t[0] : t[0] + ".") else {
                throw SourceError(here, "bad owner name \"\(t[0])\"")
            }
            t.removeFirst()
            var ttl: UInt32?
            if let first = t.first, let v = UInt32(first) { ttl = v; t.removeFirst() }
            if t.first?.uppercased() == "IN" { t.removeFirst() }
            guard t.first?.uppercased() == "DNSKEY", t.count >= 5 else {
                throw SourceError(here, "expected \"OWNER [TTL] IN DNSKEY FLAGS 3 ALGORITHM BASE64\"")
            }
            guard let flags = UInt16(t[1]), flags & 0x100 != 0, flags & ~0x0181 == 0 else {
                throw SourceError(here, "bad DNSKEY flags \"\(t[1])\" (256 for a ZSK, 257 for a KSK or CSK)")
            }
            guard t[2] == "3" else { throw SourceError(here, "DNSKEY protocol must be 3, found \"\(t[2])\"") }
            guard let n = UInt8(t[3]), let alg = DNSSECAlgorithm(rawValue: n) else {
                throw SourceError(here, "unsupported algorithm \"\(t[3])\": Meridian signs with 13 (ECDSAP256SHA256) or 15 (ED25519)")
            }
            guard let key = Base64.decode(Array(t[4...].joined().utf8)), key.count == alg.publicKeyLength else {
                throw SourceError(here, "bad public key: expected \(alg.publicKeyLength) bytes of base64 for algorithm \(alg.rawValue)")
            }
            found = (owner, ttl, flags, alg, key)
        }
        guard let k = found else { throw SourceError(at1, "no DNSKEY record in key file") }
        let privatePath = String(keyFile.dropLast(".key".count)) + ".private"
        let (secret, timing) = try readPrivate(privatePath, algorithm: k.alg)
        guard let pkey = makePrivateKey(k.alg, secret: secret, publicKey: k.key) else {
            throw SourceError(SourceLocation(file: privatePath, line: 1, column: 1),
                              "the private key does not match the public key in \(keyFile) (\(openSSLErrorText()))")
        }
        return DNSSECKey(owner: k.owner, flags: k.flags, algorithm: k.alg, publicKey: k.key, ttl: k.ttl,
                         timing: timing, keyFile: keyFile, pkey: pkey)
    }

    static func readPrivate(_ path: String, algorithm: DNSSECAlgorithm) throws(SourceError) -> ([UInt8], [String: UInt32]) {
        let at1 = SourceLocation(file: path, line: 1, column: 1)
        let text: String
        do { text = try InputFile.readText(path, limit: 1 << 16) } catch { throw SourceError(at1, "cannot read private key file: \(error.reason)") }
        var secret: [UInt8]?
        var sawFormat = false
        var timing: [String: UInt32] = [:]
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let here = SourceLocation(file: path, line: i + 1, column: 1)
            guard let colon = line.firstIndex(of: ":") else { throw SourceError(here, "expected \"Field: value\"") }
            let field = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch field {
            case "Private-key-format":
                guard value.hasPrefix("v1.") else { throw SourceError(here, "unsupported Private-key-format \"\(value)\" (expected v1.2 or v1.3)") }
                sawFormat = true
            case "Algorithm":
                let n = value.split(separator: " ").first.flatMap { UInt8($0) }
                guard n == algorithm.rawValue else {
                    throw SourceError(here, "Algorithm \(value) does not match the .key file's algorithm \(algorithm.rawValue)")
                }
            case "PrivateKey":
                guard let b = Base64.decode(Array(value.utf8)), b.count == algorithm.privateKeyLength else {
                    throw SourceError(here, "bad PrivateKey: expected \(algorithm.privateKeyLength) bytes of base64")
                }
                secret = b
            case "Created", "Publish", "Activate", "Inactive", "Delete", "Revoke", "SyncPublish", "SyncDelete":
                guard let t = parseTimestamp(value) else { throw SourceError(here, "bad \(field) time \"\(value)\" (expected YYYYMMDDHHMMSS)") }
                timing[field] = t
            default:
                break // Other BIND fields (Successor, Predecessor, Lifetime...) are not used.
            }
        }
        guard sawFormat else { throw SourceError(at1, "not a BIND private key file (no Private-key-format line)") }
        guard let s = secret else { throw SourceError(at1, "no PrivateKey line") }
        return (s, timing)
    }

    /// `YYYYMMDDHHMMSS` in UTC (dnssec-keygen's timing format).
    static func parseTimestamp(_ s: String) -> UInt32? {
        let d = Array(s.utf8)
        guard d.count == 14, d.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        func n(_ a: Int, _ b: Int) -> Int32 { Int32(String(decoding: d[a..<b], as: UTF8.self))! }
        var t = tm()
        t.tm_year = n(0, 4) - 1900; t.tm_mon = n(4, 6) - 1; t.tm_mday = n(6, 8)
        t.tm_hour = n(8, 10); t.tm_min = n(10, 12); t.tm_sec = n(12, 14)
        let v = timegm(&t)
        return v >= 0 && v <= Int(UInt32.max) ? UInt32(v) : nil
    }

    static func formatTimestamp(_ v: Int) -> String {
        var t = tm()
        var x = time_t(v)
        gmtime_r(&x, &t)
        return String(format: "%04d%02d%02d%02d%02d%02d", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    }

    /// An OpenSSL key from the raw private key, checked against the `.key` file's public key.
    static func makePrivateKey(_ alg: DNSSECAlgorithm, secret: [UInt8], publicKey: [UInt8]) -> OpaquePointer? {
        let pkey: OpaquePointer?
        switch alg {
        case .ed25519:
            pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, secret, secret.count)
        case .ecdsaP256SHA256:
            // RFC 5915 ECPrivateKey: version 1, the scalar and the named curve prime256v1,
            // without the public point, which OpenSSL then computes from the scalar (and
            // `publicKeyOf` compares with the .key file's).
            let der: [UInt8] = [0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20] + secret
                + [0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
            pkey = der.withUnsafeBufferPointer { p in
                var q: UnsafePointer<UInt8>? = p.baseAddress
                return d2i_PrivateKey(EVP_PKEY_EC, nil, &q, p.count)
            }
        }
        guard let pkey else { return nil }
        guard publicKeyOf(alg, pkey) == publicKey else { EVP_PKEY_free(pkey); return nil }
        return pkey
    }

    /// The DNSKEY form of the public half (RFC 6605 4: x || y; RFC 8080 3: the raw key).
    static func publicKeyOf(_ alg: DNSSECAlgorithm, _ pkey: OpaquePointer) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 65)
        var len = 0
        switch alg {
        case .ed25519:
            len = 32
            guard EVP_PKEY_get_raw_public_key(pkey, &buf, &len) == 1, len == 32 else { return nil }
            return Array(buf[0..<32])
        case .ecdsaP256SHA256:
            // The uncompressed point 04 || x || y.
            guard EVP_PKEY_get_octet_string_param(pkey, "pub", &buf, 65, &len) == 1, len == 65, buf[0] == 4 else { return nil }
            return Array(buf[1..<65])
        }
    }

    /// Makes a key pair and writes `K<zone>.+<alg>+<tag>.key` and `.private` into `folder`
    /// (the private file mode 0600). Returns the key file's path.
    public static func generate(zone: DNSName, algorithm: DNSSECAlgorithm, keySigning: Bool, folder: String,
                                now: Int = Int(time(nil))) throws(SourceError) -> String {
        let here = SourceLocation(file: folder, line: 1, column: 1)
        guard let ctx = EVP_PKEY_CTX_new_id(algorithm == .ed25519 ? EVP_PKEY_ED25519 : EVP_PKEY_EC, nil) else {
            throw SourceError(here, "cannot make a key: \(openSSLErrorText())")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1,
              algorithm == .ed25519 || EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) == 1,
              EVP_PKEY_keygen(ctx, &pkey) == 1, let pkey else {
            throw SourceError(here, "cannot make a key: \(openSSLErrorText())")
        }
        defer { EVP_PKEY_free(pkey) }
        var secret = [UInt8](repeating: 0, count: 32)
        if algorithm == .ed25519 {
            var n = 32
            guard EVP_PKEY_get_raw_private_key(pkey, &secret, &n) == 1 else { throw SourceError(here, "cannot read the new key: \(openSSLErrorText())") }
        } else {
            var bn: OpaquePointer?
            guard EVP_PKEY_get_bn_param(pkey, "priv", &bn) == 1, let bn else { throw SourceError(here, "cannot read the new key: \(openSSLErrorText())") }
            defer { BN_clear_free(bn) }
            guard BN_bn2binpad(bn, &secret, 32) == 32 else { throw SourceError(here, "cannot read the new key") }
        }
        guard let pub = publicKeyOf(algorithm, pkey) else { throw SourceError(here, "cannot read the new public key") }
        let flags: UInt16 = keySigning ? 257 : 256
        let rdata = [UInt8(flags >> 8), UInt8(flags & 0xFF), 3, algorithm.rawValue] + pub
        let tag = DNSSECKey.keyTag(rdata)
        let zoneText = zone.description
        let base = (folder as NSString).appendingPathComponent(
            "K\(zoneText)+\(String(format: "%03d", algorithm.rawValue))+\(String(format: "%05d", tag))")
        let stamp = formatTimestamp(now)
        let role = keySigning ? "key-signing" : "zone-signing"
        let keyText = """
            ; This is a \(role) key, keyid \(tag), for \(zoneText)
            ; Created: \(stamp)
            ; Publish: \(stamp)
            ; Activate: \(stamp)
            \(zoneText) IN DNSKEY \(flags) 3 \(algorithm.rawValue) \(Base64.encode(pub))

            """
        let privateText = """
            Private-key-format: v1.3
            Algorithm: \(algorithm.rawValue) (\(algorithm.mnemonic))
            PrivateKey: \(Base64.encode(secret))
            Created: \(stamp)
            Publish: \(stamp)
            Activate: \(stamp)

            """
        guard FileManager.default.createFile(atPath: base + ".private", contents: Data(privateText.utf8),
                                             attributes: [.posixPermissions: 0o600]),
              FileManager.default.createFile(atPath: base + ".key", contents: Data(keyText.utf8),
                                             attributes: [.posixPermissions: 0o644])
        else { throw SourceError(here, "cannot write \(base).key/.private") }
        return base + ".key"
    }
}
