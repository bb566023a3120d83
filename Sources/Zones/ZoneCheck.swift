import Diagnostics
import DNSWire

/// Content checks on a parsed zone, run after `MasterFileParser` and before the zone is served.
///
///     let records = ZoneCheck.normalized(try parser.parse(contents: text, file: "zones/example.com.zone"))
///     let errors = ZoneCheck.check(records: records, origin: try DNSName("example.com."))
///     // errors.isEmpty, or each is "file:line:column: message"
///
/// What is an error (each points at the offending record):
/// - no SOA at the apex, more than one, or an SOA anywhere else;
/// - no NS at the apex;
/// - a CNAME at the apex, a CNAME next to other data, or two CNAMEs at one name (RFC 2181 10.1;
///   RRSIG and NSEC may sit next to a CNAME, RFC 4035 2.5);
/// - two DNAMEs at one name, or anything below a DNAME owner (RFC 6672 2.4);
/// - a record outside the zone (not at or below the origin);
/// - data at or below a delegation (an NS RRset not at the apex) other than the NS and DS at
///   the cut and glue. Glue is any A or AAAA record at or below the cut; it is not required to
///   be a target of the cut's NS records, because one server often serves several child zones,
///   and this keeps the check linear.
///
/// - an RRset too big for one DNS message: over `maxRRsetBytes` (a TCP answer cannot
///   carry it, RFC 1035 4.2.2, and truncating an authoritative RRset would be wrong).
///
/// What is not an error, by choice (both are what BIND and NSD do, minus their warnings):
/// - an exact duplicate record (same name, type, rdata, case-insensitive names in the owner):
///   `normalized` keeps the first one;
/// - differing TTLs within one RRset (RFC 2181 5.2 forbids them on the wire): `normalized`
///   gives the whole set the TTL of its first record in file order.
public enum ZoneCheck {
    /// The most one RRset may take on the wire, counting every record with its owner name
    /// uncompressed (name + 10 bytes of type, class, TTL, RDLENGTH + rdata): a TCP message
    /// holds 65,535 bytes (RFC 1035 4.2.2), less 12 for the header, 259 for the question
    /// (a 255-byte name, type and class) and 512 kept for the OPT record and its options
    /// (NSID, cookies, RFC 6891). A set that passes always fits an answer over TCP.
    public static let maxRRsetBytes = 65535 - 12 - 259 - 512

    /// A record outside the zone, compared as `normalized` does (lowercase owner, type,
    /// rdata): such records are not grouped by `ZoneIndex`, and are reported once each.
    struct OutsideKey: Hashable {
        var name: [UInt8]
        var type: RRType
        var rdata: [UInt8]
        init(_ records: RecordBatch, _ i: Int) {
            name = records.name(i).wire.map(asciiLower); type = records.type(i); rdata = records.rdata(i)
        }
    }

    /// Drops exact duplicates and unifies RRset TTLs to the first record's TTL; keeps file order.
    public static func normalized(_ records: [ResourceRecord]) -> [ResourceRecord] {
        let index = ZoneIndex(records: records, origin: .root)
        var out: [ResourceRecord] = []
        out.reserveCapacity(index.uniqueCount)
        for (i, var r) in records.enumerated() {
            let set = Int(index.setOf[i])
            guard set >= 0 else { continue }
            r.ttl = index.setTTL[set]
            out.append(r)
        }
        return out
    }

    /// Returns every content error; duplicates and TTL differences are not errors (see above).
    public static func check(records input: [ResourceRecord], origin: DNSName) -> [ZoneError] {
        ZoneIndex(records: input, origin: origin).check(origin: origin)
    }
}

extension ZoneIndex {
    /// `ZoneCheck.check` on the grouped records: the same errors in the same order (file
    /// order of the first of each duplicate, then the missing apex records).
    func check(origin: DNSName) -> [ZoneError] {
        var errors: [ZoneError] = []
        let defaultFile = (records.isEmpty ? nil : records.location(0)?.file) ?? origin.description
        func loc(_ ri: Int) -> SourceLocation {
            records.location(ri) ?? SourceLocation(file: defaultFile, line: 0, column: 0)
        }
        let apex = originKey.withUnsafeBytes { owner(lowercaseWire: $0) }
        var anyCutOrDNAME = false
        for (o, f) in ownerFlags.enumerated() where f & ZoneIndex.hasDNAME != 0 || (f & ZoneIndex.hasNS != 0 && o != apex) {
            anyCutOrDNAME = true
            break
        }
        func isCut(_ o: Int) -> Bool { o != apex && ownerFlags[o] & ZoneIndex.hasNS != 0 }

        // Per owner: a CNAME or DNAME was seen, the CNAME conflict was reported.
        let cnameSeen: UInt8 = 1, dnameSeen: UInt8 = 2, conflictReported: UInt8 = 4
        var seen = [UInt8](repeating: 0, count: ownerCount)
        // Records outside the origin are not grouped; their duplicates are dropped here.
        var outside = Set<ZoneCheck.OutsideKey>()
        var soaCount = 0
        var nsAtApex = false
        for ri in records.indices {
            let o = Int(ownerOf[ri])
            // Most records need no check at all: skip them without copying the record.
            if o >= 0 && o != apex && setOf[ri] >= 0 && !anyCutOrDNAME && ownerFlags[o] & ZoneIndex.hasCNAME == 0 {
                let t = records.type(ri)
                if t != .soa && t != .cname && t != .dname && t != .ds { continue }
            }
            // The record's type, and its owner as written (built only for a message).
            let rtype = records.type(ri)
            lazy var rname = records.name(ri)
            guard o >= 0 else {
                if outside.insert(ZoneCheck.OutsideKey(records, ri)).inserted {
                    errors.append(ZoneError(loc(ri), "\(rname) \(rtype) is outside the zone \(origin)"))
                }
                continue
            }
            guard setOf[ri] >= 0 else { continue }
            let atApex = o == apex
            switch rtype {
            case .soa:
                if !atApex {
                    errors.append(ZoneError(loc(ri), "SOA record at \(rname): expected it only at the zone apex \(origin)"))
                } else {
                    soaCount += 1
                    if soaCount > 1 { errors.append(ZoneError(loc(ri), "second SOA record at the apex \(origin): expected exactly one")) }
                }
            case .ns where atApex:
                nsAtApex = true
            case .cname:
                if atApex {
                    errors.append(ZoneError(loc(ri), "CNAME at the zone apex \(origin): the apex needs SOA and NS records"))
                } else if seen[o] & cnameSeen != 0 {
                    errors.append(ZoneError(loc(ri), "second CNAME at \(rname): a name has at most one CNAME (RFC 2181 10.1)"))
                } else {
                    seen[o] |= cnameSeen
                }
            case .dname:
                if seen[o] & dnameSeen != 0 {
                    errors.append(ZoneError(loc(ri), "second DNAME at \(rname): a name has at most one DNAME (RFC 6672 2.4)"))
                }
                seen[o] |= dnameSeen
            default:
                break
            }

            // CNAME exclusivity (RFC 2181 10.1): reported once per name, at its first record.
            let flags = ownerFlags[o]
            if !atApex, flags & ZoneIndex.hasCNAME != 0, seen[o] & conflictReported == 0,
               flags & ZoneIndex.hasOther != 0, rtype != .rrsig, rtype != .nsec {
                seen[o] |= conflictReported
                errors.append(ZoneError(loc(ri), "CNAME and other data at \(rname): a CNAME owner has no other records (RFC 2181 10.1)"))
            }

            // Walk up from the owner to the origin looking for a cut or a DNAME above it.
            guard !atApex else { continue }
            if isCut(o) {
                if rtype != .ns && rtype != .ds && rtype != .a && rtype != .aaaa && rtype != .rrsig && rtype != .nsec {
                    errors.append(ZoneError(loc(ri), "\(rtype) record at the delegation \(rname): only NS, DS and glue addresses belong at a zone cut"))
                }
            } else if rtype == .ds {
                errors.append(ZoneError(loc(ri), "DS record at \(rname), which is not a delegation: DS belongs at a zone cut"))
            }
            guard anyCutOrDNAME else { continue }
            let key = table.key(o)
            if let message = key.withUnsafeBytes({ k -> String? in
                var off = Int(k[0]) + 1
                while k.count - off > originKey.count {
                    let q = UnsafeRawBufferPointer(rebasing: k[off...])
                    let a = owner(lowercaseWire: q)
                    if a >= 0 && ownerFlags[a] & ZoneIndex.hasDNAME != 0 {
                        return "\(rname) \(rtype) is below the DNAME at \(DNSName(uncheckedWire: Array(q))): names below a DNAME are not served (RFC 6672 2.4)"
                    }
                    if a >= 0 && isCut(a) {
                        guard rtype != .a && rtype != .aaaa else { return nil }
                        return "\(rname) \(rtype) is below the delegation \(DNSName(uncheckedWire: Array(q))): only A and AAAA glue may be there"
                    }
                    off += Int(k[off]) + 1
                }
                return nil
            }) {
                errors.append(ZoneError(loc(ri), message))
            }
        }
        // RRsets that no DNS message can carry, reported at their first record.
        var setBytes = [Int](repeating: 0, count: setType.count)
        var setFirst = [Int32](repeating: -1, count: setType.count)
        for ri in records.indices where setOf[ri] >= 0 {
            let set = Int(setOf[ri])
            if setFirst[set] < 0 { setFirst[set] = Int32(ri) }
            setBytes[set] += records.nameLength(ri) + 10 + records.rdataLength(ri)
        }
        for set in setBytes.indices where setBytes[set] > ZoneCheck.maxRRsetBytes {
            let r = records[Int(setFirst[set])]
            errors.append(ZoneError(loc(Int(setFirst[set])), "the \(r.type) RRset at \(r.name) takes \(setBytes[set]) bytes, over the \(ZoneCheck.maxRRsetBytes) that fit in one DNS message over TCP"))
        }
        let apexFile = SourceLocation(file: defaultFile, line: 1, column: 1)
        if soaCount == 0 {
            errors.append(ZoneError(apexFile, "no SOA record at the zone apex \(origin): expected exactly one"))
        }
        if !nsAtApex {
            errors.append(ZoneError(apexFile, "no NS records at the zone apex \(origin): expected at least one"))
        }
        return errors
    }
}
