import COpenSSL
import Config
import DNSWire
import Glibc

/// One record of a message, as located by `MessageRecords.walk`.
struct WireRecord {
    var start: Int
    var nameEnd: Int
    var type: RRType
    var rdata: Int
    var rdlength: Int
    var end: Int { rdata + rdlength }
}

enum MessageRecords {
    /// Every record after the question, in order (answer, authority, additional).
    static func walk(_ msg: UnsafeRawBufferPointer, from: Int, count: Int) throws(DNSWireError) -> [WireRecord] {
        var out: [WireRecord] = []
        var off = from
        for _ in 0..<count {
            let start = off
            let nameEnd = try Wire.readName(msg, at: off)
            let type = RRType(try Wire.getU16(msg, nameEnd))
            let rdlen = Int(try Wire.getU16(msg, nameEnd + 8))
            guard nameEnd + 10 + rdlen <= msg.count else { throw .truncated(nameEnd) }
            out.append(WireRecord(start: start, nameEnd: nameEnd, type: type, rdata: nameEnd + 10, rdlength: rdlen))
            off = nameEnd + 10 + rdlen
        }
        guard off == msg.count else { throw .trailingData(off) }
        return out
    }
}

/// The TSIG record of a request (RFC 8945 4.2).
struct TSIGRecord {
    static let type = RRType(250)
    /// Where the record starts in the message: the MAC covers everything before it.
    var start: Int
    /// Lowercase key name.
    var keyName: DNSName
    var algorithm: DNSName
    var timeSigned: UInt64
    var fudge: UInt16
    var mac: [UInt8]
    var originalID: UInt16
    var error: UInt16
    var other: [UInt8]

    /// Parses the last record of the message if it is a TSIG; nil when there is none.
    /// Throws for a TSIG that is malformed or is not the last record (RFC 8945 5.2: FORMERR).
    static func find(_ msg: UnsafeRawBufferPointer, records: [WireRecord], arcount: Int) throws(DNSWireError) -> TSIGRecord? {
        for (i, r) in records.enumerated() where r.type == TSIGRecord.type {
            guard i == records.count - 1, arcount > 0 else { throw .badRData(r.start) }
            var owner: [UInt8] = []
            _ = try withUnsafeMutablePointer(to: &owner) { (p) throws(DNSWireError) in try Wire.readName(msg, at: r.start, into: p, lowercase: true) }
            var alg: [UInt8] = []
            let algEnd = try withUnsafeMutablePointer(to: &alg) { (p) throws(DNSWireError) in
                try Wire.readName(msg, at: r.rdata, into: p, lowercase: true, compressed: false)
            }
            var off = algEnd
            let hi = UInt64(try Wire.getU16(msg, off)), lo = UInt64(try Wire.getU32(msg, off + 2))
            let fudge = try Wire.getU16(msg, off + 6)
            let macSize = Int(try Wire.getU16(msg, off + 8))
            off += 10
            guard off + macSize + 6 <= r.end else { throw .badRData(r.rdata) }
            let mac = Array(msg[off..<(off + macSize)])
            off += macSize
            let originalID = try Wire.getU16(msg, off)
            let error = try Wire.getU16(msg, off + 2)
            let otherLen = Int(try Wire.getU16(msg, off + 4))
            off += 6
            guard off + otherLen == r.end else { throw .badRData(r.rdata) }
            return TSIGRecord(start: r.start, keyName: DNSName(uncheckedWire: owner), algorithm: DNSName(uncheckedWire: alg),
                              timeSigned: hi << 32 | lo, fudge: fudge, mac: mac, originalID: originalID, error: error,
                              other: Array(msg[off..<(off + otherLen)]))
        }
        return nil
    }
}

/// RFC 8945 signing and verification with HMAC-SHA2 (OpenSSL's one-shot HMAC).
enum TSIG {
    static let badSig: UInt16 = 16
    static let badKey: UInt16 = 17
    static let badTime: UInt16 = 18
    static let notAuth = RCode(rawValue: 9)
    static let fudge: UInt16 = 300

    static func hmac(_ algorithm: TSIGAlgorithm, key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        let md: OpaquePointer?
        switch algorithm {
        case .hmacSHA256: md = EVP_sha256()
        case .hmacSHA384: md = EVP_sha384()
        case .hmacSHA512: md = EVP_sha512()
        }
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBytes { o in
                    _ = HMAC(md, k.baseAddress, Int32(k.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count,
                             o.baseAddress?.assumingMemoryBound(to: UInt8.self), &len)
                }
            }
        }
        return Array(out.prefix(Int(len)))
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 } }
    }

    static func append48(_ v: UInt64, to d: inout [UInt8]) {
        for s in stride(from: 40, through: 0, by: -8) { d.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
    }

    static func append16(_ v: UInt16, to d: inout [UInt8]) { d.append(UInt8(v >> 8)); d.append(UInt8(truncatingIfNeeded: v)) }

    /// The TSIG variables of RFC 8945 4.3.3 (all of them, or the timers alone for the
    /// later messages of a multi-message response, 4.3.1/5.3.1).
    static func variables(key: TSIGKey, time: UInt64, fudge: UInt16, error: UInt16, other: [UInt8], timersOnly: Bool, into d: inout [UInt8]) {
        if !timersOnly {
            d += key.name.lowercased().wire
            append16(RRClass.any.rawValue, to: &d)
            d += [0, 0, 0, 0]
            d += key.algorithm.name.wire
        }
        append48(time, to: &d)
        append16(fudge, to: &d)
        if !timersOnly {
            append16(error, to: &d)
            append16(UInt16(other.count), to: &d)
            d += other
        }
    }

    /// Whether the request's MAC is right for `key` (RFC 8945 5.2: the message without its
    /// TSIG, ARCOUNT one less, the original ID, then the variables).
    static func verify(_ msg: UnsafeRawBufferPointer, _ t: TSIGRecord, key: TSIGKey) -> Bool {
        guard t.algorithm == key.algorithm.name, t.mac.count == key.algorithm.macLength else { return false }
        var d = Array(msg[0..<t.start])
        d[0] = UInt8(t.originalID >> 8); d[1] = UInt8(truncatingIfNeeded: t.originalID)
        let ar = (UInt16(d[10]) << 8 | UInt16(d[11])) &- 1
        d[10] = UInt8(ar >> 8); d[11] = UInt8(truncatingIfNeeded: ar)
        variables(key: key, time: t.timeSigned, fudge: t.fudge, error: t.error, other: t.other, timersOnly: false, into: &d)
        return equal(hmac(key.algorithm, key: key.secret, d), t.mac)
    }

    /// Appends a TSIG record to the complete message in `out[0..<length]` (which must have
    /// room) and bumps ARCOUNT; returns the new length and the MAC (the next message's
    /// "prior MAC"). `key` nil writes an unsigned error TSIG (BADKEY, BADSIG: MAC size 0).
    static func sign(_ out: UnsafeMutableRawBufferPointer, length: Int, key: TSIGKey?, keyName: DNSName, algorithm: DNSName,
                     priorMAC: [UInt8]?, first: Bool, originalID: UInt16, error: UInt16, time: UInt64) -> (Int, [UInt8]) {
        var mac: [UInt8] = []
        if let key {
            var d: [UInt8] = []
            d.reserveCapacity(length + 200)
            if let priorMAC {
                append16(UInt16(priorMAC.count), to: &d)
                d += priorMAC
            }
            d += UnsafeRawBufferPointer(rebasing: out[0..<length])
            let other: [UInt8] = error == badTime ? timeBytes(time) : []
            variables(key: key, time: time, fudge: fudge, error: error, other: other, timersOnly: !first, into: &d)
            mac = hmac(key.algorithm, key: key.secret, d)
        }
        var r: [UInt8] = keyName.wire
        append16(TSIGRecord.type.rawValue, to: &r)
        append16(RRClass.any.rawValue, to: &r)
        r += [0, 0, 0, 0]
        var rdata: [UInt8] = algorithm.wire
        append48(time, to: &rdata)
        append16(fudge, to: &rdata)
        append16(UInt16(mac.count), to: &rdata)
        rdata += mac
        append16(originalID, to: &rdata)
        append16(error, to: &rdata)
        let other: [UInt8] = error == badTime ? timeBytes(time) : []
        append16(UInt16(other.count), to: &rdata)
        rdata += other
        append16(UInt16(rdata.count), to: &r)
        r += rdata
        guard length + r.count <= out.count else { return (length, mac) }
        for (i, b) in r.enumerated() { out[length + i] = b }
        let ar = (UInt16(out[10]) << 8 | UInt16(out[11])) &+ 1
        out[10] = UInt8(ar >> 8); out[11] = UInt8(truncatingIfNeeded: ar)
        return (length + r.count, mac)
    }

    static func timeBytes(_ t: UInt64) -> [UInt8] {
        var d: [UInt8] = []
        append48(t, to: &d)
        return d
    }

    /// Room a TSIG record can take: names of at most 255 bytes each, a MAC of at most 64.
    static let maxRecordSize = 255 + 10 + 255 + 16 + 64 + 6 + 6
}

/// TSIG on ordinary queries (RFC 8945 5.2, 5.3): a signed query, such as the SOA probe a
/// secondary sends before IXFR, gets its answer signed with the same key, or NOTAUTH with a
/// TSIG error when the key is unknown, the MAC wrong or the time off. Off the common path:
/// the responder calls it only for a query that holds a TSIG record.
enum QueryTSIG {
    /// Rewrites `response[0..<length]` in place; returns the new length.
    static func sign(query q: UnsafeRawBufferPointer, response out: UnsafeMutableRawBufferPointer, length: Int, limit: Int,
                     questionEnd: Int, transfers: TransferSettings) -> Int {
        guard let pq = try? ParsedQuery.parse(q),
              let records = try? MessageRecords.walk(q, from: pq.questionEnd, count: Int(pq.ancount) + Int(pq.nscount) + Int(pq.arcount)),
              let t = (try? TSIGRecord.find(q, records: records, arcount: Int(pq.arcount))) ?? nil else { return length }
        let id = pq.id
        var key: TSIGKey?
        var error: UInt16 = 0
        if let k = transfers.key(named: t.keyName), transfers.keys[k].algorithm.name == t.algorithm {
            if TSIG.verify(q, t, key: transfers.keys[k]) {
                key = transfers.keys[k]
                let now = UInt64(time(nil))
                if (now > t.timeSigned ? now - t.timeSigned : t.timeSigned - now) > UInt64(t.fudge) { error = TSIG.badTime }
            } else {
                error = TSIG.badSig
            }
        } else {
            error = TSIG.badKey
        }
        let room = min(limit, out.count) - TSIG.maxRecordSize
        var n = length
        if error != 0 || n > room {
            // An error, or no room for the TSIG: the header and question alone (TC when it
            // was only room), then the TSIG record.
            n = min(questionEnd, n)
            out[6] = 0; out[7] = 0; out[8] = 0; out[9] = 0; out[10] = 0; out[11] = 0
            if error != 0 {
                out[3] = (out[3] & 0xF0) | UInt8(TSIG.notAuth.rawValue)
            } else {
                out[2] |= UInt8(HeaderFlags.tc >> 8)
            }
        }
        guard n + TSIG.maxRecordSize <= out.count else { return n }
        return TSIG.sign(out, length: n, key: error == TSIG.badKey || error == TSIG.badSig ? nil : key, keyName: t.keyName,
                         algorithm: t.algorithm, priorMAC: t.mac, first: true, originalID: id, error: error, time: UInt64(time(nil))).0
    }
}
