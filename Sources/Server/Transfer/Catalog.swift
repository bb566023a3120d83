import Config
import DNSWire
import Foundation
import Zones

/// A catalog zone (RFC 9432, schema version 2) generated from the served zones, so a
/// secondary that consumes catalogs (Knot, BIND) adds and removes member zones by itself.
/// It is served and transferred like any zone, with the same ACLs and NOTIFY targets.
///
///     catalog.invalid.                 0 SOA invalid. invalid. SERIAL 3600 600 2147483646 0
///     catalog.invalid.                 0 NS  invalid.
///     version.catalog.invalid.         0 TXT "2"
///     <id>.zones.catalog.invalid.      0 PTR example.com.
enum Catalog {
    static func zone(named origin: DNSName, members: [Zone], serial: UInt32) throws(ZoneErrors) -> Zone {
        let invalid = DNSName(uncheckedWire: Array("\u{7}invalid\u{0}".utf8))
        var soa = invalid.wire + invalid.wire
        for v: UInt32 in [serial, 3600, 600, 2_147_483_646, 0] { soa += withUnsafeBytes(of: v.bigEndian) { Array($0) } }
        var records = [
            ResourceRecord(name: origin, type: .soa, ttl: 0, rdata: soa),
            ResourceRecord(name: origin, type: .ns, ttl: 0, rdata: invalid.wire),
            ResourceRecord(name: origin.prepending(label: Array("version".utf8)), type: .txt, ttl: 0, rdata: [1, UInt8(ascii: "2")]),
        ]
        let zones = origin.prepending(label: Array("zones".utf8))
        for z in members.map({ $0.origin.lowercased() }).sorted() where z != origin {
            records.append(ResourceRecord(name: zones.prepending(label: Array(memberID(z).utf8)), type: .ptr, ttl: 0, rdata: z.wire))
        }
        return try Zone.checked(origin: origin, records: records)
    }

    /// RFC 9432 4.1: a unique label per member; a stable hash of the name keeps it across reloads.
    static func memberID(_ zone: DNSName) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in zone.wire { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        let hex = String(mix64(h), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
