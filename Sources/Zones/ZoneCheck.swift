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
/// What is not an error, by choice (both are what BIND and NSD do, minus their warnings):
/// - an exact duplicate record (same name, type, rdata, case-insensitive names in the owner):
///   `normalized` keeps the first one;
/// - differing TTLs within one RRset (RFC 2181 5.2 forbids them on the wire): `normalized`
///   gives the whole set the TTL of its first record in file order.
public enum ZoneCheck {
    struct SetKey: Hashable {
        var name: DNSName
        var type: RRType
    }

    struct RecordKey: Hashable {
        var name: DNSName
        var type: RRType
        var rdata: [UInt8]
    }

    /// Drops exact duplicates and unifies RRset TTLs to the first record's TTL; keeps file order.
    public static func normalized(_ records: [ResourceRecord]) -> [ResourceRecord] {
        var seen = Set<RecordKey>()
        seen.reserveCapacity(records.count)
        var firstTTL: [SetKey: UInt32] = [:]
        var out: [ResourceRecord] = []
        out.reserveCapacity(records.count)
        for var r in records {
            guard seen.insert(RecordKey(name: r.name, type: r.type, rdata: r.rdata)).inserted else { continue }
            let k = SetKey(name: r.name, type: r.type)
            if let t = firstTTL[k] { r.ttl = t } else { firstTTL[k] = r.ttl }
            out.append(r)
        }
        return out
    }

    /// Returns every content error; duplicates and TTL differences are not errors (see above).
    public static func check(records input: [ResourceRecord], origin: DNSName) -> [ZoneError] {
        let records = normalized(input)
        var errors: [ZoneError] = []
        let defaultFile = input.first?.location?.file ?? origin.description
        func loc(_ r: ResourceRecord) -> SourceLocation {
            r.location ?? SourceLocation(file: defaultFile, line: 0, column: 0)
        }

        // A set per name: checking each record against a list of its name's types made the
        // check quadratic in the RRset size (20,000 records at one name took minutes).
        var typesAt: [DNSName: Set<RRType>] = [:]
        var cuts = Set<DNSName>()
        var dnames = Set<DNSName>()
        for r in records {
            typesAt[r.name, default: []].insert(r.type)
            if r.type == .ns && r.name != origin { cuts.insert(r.name) }
            if r.type == .dname { dnames.insert(r.name) }
        }

        var soaCount = 0
        var nsAtApex = false
        var cnameSeen = Set<DNSName>()
        var dnameSeen = Set<DNSName>()
        var conflictReported = Set<DNSName>()
        for r in records {
            guard r.name.isSubdomain(of: origin) else {
                errors.append(ZoneError(loc(r), "\(r.name) \(r.type) is outside the zone \(origin)"))
                continue
            }
            let atApex = r.name == origin
            switch r.type {
            case .soa:
                if !atApex {
                    errors.append(ZoneError(loc(r), "SOA record at \(r.name): expected it only at the zone apex \(origin)"))
                } else {
                    soaCount += 1
                    if soaCount > 1 { errors.append(ZoneError(loc(r), "second SOA record at the apex \(origin): expected exactly one")) }
                }
            case .ns where atApex:
                nsAtApex = true
            case .cname:
                if atApex {
                    errors.append(ZoneError(loc(r), "CNAME at the zone apex \(origin): the apex needs SOA and NS records"))
                } else if !cnameSeen.insert(r.name).inserted {
                    errors.append(ZoneError(loc(r), "second CNAME at \(r.name): a name has at most one CNAME (RFC 2181 10.1)"))
                }
            case .dname:
                if !dnameSeen.insert(r.name).inserted {
                    errors.append(ZoneError(loc(r), "second DNAME at \(r.name): a name has at most one DNAME (RFC 6672 2.4)"))
                }
            default:
                break
            }

            // CNAME exclusivity (RFC 2181 10.1): reported once per name, at its first record.
            if let types = typesAt[r.name], types.contains(.cname), !atApex, !conflictReported.contains(r.name) {
                let others = types.filter { $0 != .cname && $0 != .rrsig && $0 != .nsec }
                if !others.isEmpty && r.type != .rrsig && r.type != .nsec {
                    conflictReported.insert(r.name)
                    errors.append(ZoneError(loc(r), "CNAME and other data at \(r.name): a CNAME owner has no other records (RFC 2181 10.1)"))
                }
            }

            // Walk up from the owner to the origin looking for a cut or a DNAME above it.
            if !atApex {
                if cuts.contains(r.name) {
                    if r.type != .ns && r.type != .ds && r.type != .a && r.type != .aaaa && r.type != .rrsig && r.type != .nsec {
                        errors.append(ZoneError(loc(r), "\(r.type) record at the delegation \(r.name): only NS, DS and glue addresses belong at a zone cut"))
                    }
                } else if r.type == .ds {
                    errors.append(ZoneError(loc(r), "DS record at \(r.name), which is not a delegation: DS belongs at a zone cut"))
                }
                var p = r.name.parent
                while let q = p, q != origin, q.isSubdomain(of: origin) {
                    if dnames.contains(q) {
                        errors.append(ZoneError(loc(r), "\(r.name) \(r.type) is below the DNAME at \(q): names below a DNAME are not served (RFC 6672 2.4)"))
                        break
                    }
                    if cuts.contains(q) {
                        if r.type != .a && r.type != .aaaa {
                            errors.append(ZoneError(loc(r), "\(r.name) \(r.type) is below the delegation \(q): only A and AAAA glue may be there"))
                        }
                        break
                    }
                    p = q.parent
                }
            }
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
