import CMaxMindDB
import CShim
import DNSWire
import Diagnostics
#if canImport(Glibc)
import Glibc
import Platform
#endif

/// Packs up to four ASCII letters or digits, upper-cased, into an integer so geo keys
/// compare without strings on the query path. "GB" and "ENG" become distinct non-zero values.
@inline(__always) func packCode(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
    guard bytes.count >= 1, bytes.count <= 4 else { return 0 }
    var v: UInt32 = 0
    for b in bytes {
        let u = (b >= 97 && b <= 122) ? b - 32 : b
        v = v << 8 | UInt32(u)
    }
    return v
}

func packCode(_ s: String) -> UInt32 {
    var a = Array(s.utf8)
    return a.withUnsafeMutableBufferPointer { packCode(UnsafeBufferPointer($0)) }
}

func unpackCode(_ v: UInt32) -> String {
    var out = ""
    var shift = 24
    while shift >= 0 {
        let b = UInt8(truncatingIfNeeded: v >> UInt32(shift))
        if b != 0 { out.append(Character(Unicode.Scalar(b))) }
        shift -= 8
    }
    return out
}

/// What one database lookup found. Codes are packed with `packCode`; 0 means absent.
public struct GeoRecord: Sendable, Hashable {
    public var found = false
    /// Prefix length of the database network that holds the address (IPv4 lengths for
    /// IPv4 clients, also in IPv6 databases). The ECS scope of a decision made from it.
    public var prefixLength = 0
    public var country: UInt32 = 0
    public var continent: UInt32 = 0
    public var subdivision1: UInt32 = 0
    public var subdivision2: UInt32 = 0
    public var hasCoordinates = false
    public var latitude = 0.0
    public var longitude = 0.0
    public var asn: UInt32 = 0
    public init() {}

    public var countryCode: String? { country == 0 ? nil : unpackCode(country) }
    public var continentCode: String? { continent == 0 ? nil : unpackCode(continent) }
    public var subdivisionCodes: [String] { [subdivision1, subdivision2].filter { $0 != 0 }.map(unpackCode) }
}

/// A MaxMind DB file (GeoIP2/GeoLite2 City, Country or ASN) opened through libmaxminddb.
///
///     let db = try GeoDatabase(path: "GeoIP2-City-Test.mmdb")
///     let r = db.lookup(IPAddress("81.2.69.142")!)
///     r.countryCode      // "GB"
///     r.prefixLength     // 31
///
/// The file is never mapped itself: `init` reads it (under `InputFile`'s rules: regular file,
/// at most `InputLimits.geoDatabaseBytes`, never blocking) into a sealed anonymous memory
/// file and maps that. libmaxminddb only has a shared-mapping mode, and a database file
/// truncated or rewritten in place (`cp new.mmdb db.mmdb`) under a shared mapping kills the
/// server with SIGBUS on the next lookup; the private copy cannot change, whatever happens
/// to the file. The cost is one copy of the database in memory, as with the mapping.
///
/// `@unchecked Sendable`: the `MMDB_s` lives on the heap at a fixed address (its entries
/// point back into it), is written only by `MMDB_open` in `init` and read-only afterwards;
/// libmaxminddb lookups on an opened database are thread-safe. Closed in `deinit`.
public final class GeoDatabase: @unchecked Sendable {
    public let path: String
    private let mmdb: UnsafeMutablePointer<MMDB_s>
    /// NULL-terminated C path arrays for `MMDB_aget_value`, built once so lookups allocate nothing.
    private let paths: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private let pathStarts: [Int]
    private let strings: [UnsafeMutablePointer<CChar>]
    public let isIPv6: Bool
    public let databaseType: String

    private static let fieldPaths: [[String]] = [
        ["country", "iso_code"],
        ["continent", "code"],
        ["subdivisions", "0", "iso_code"],
        ["subdivisions", "1", "iso_code"],
        ["location", "latitude"],
        ["location", "longitude"],
        ["autonomous_system_number"],
        ["registered_country", "iso_code"],
    ]

    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(path: String) throws(OpenError) {
        self.path = path
        let copy: Int32
        do {
            copy = try InputFile.withOpened(path, limit: InputLimits.geoDatabaseBytes) { (fd, size) throws(InputFileError) in
                let m = cshim_sealed_copy(fd, "meridian-geoip", size)
                if m == -2 { throw InputFileError(path: path, reason: "changed while being read") }
                if m < 0 { throw InputFileError(path: path, reason: "cannot copy into memory: \(String(cString: strerror(errno)))") }
                return m
            }
        } catch {
            throw OpenError(description: error.reason)
        }
        // libmaxminddb opens by path: /proc/self/fd/N opens the memory file itself (not the
        // original), and its mapping keeps the pages alive after both descriptors are closed.
        defer { close(copy) }
        mmdb = .allocate(capacity: 1)
        let status = MMDB_open("/proc/self/fd/\(copy)", UInt32(MMDB_MODE_MMAP), mmdb)
        guard status == MMDB_SUCCESS else {
            mmdb.deallocate()
            throw OpenError(description: String(cString: MMDB_strerror(status)))
        }
        isIPv6 = mmdb.pointee.metadata.ip_version == 6
        databaseType = mmdb.pointee.metadata.database_type.map { String(cString: $0) } ?? "unknown"
        var strs: [UnsafeMutablePointer<CChar>] = []
        var starts: [Int] = []
        let total = GeoDatabase.fieldPaths.reduce(0) { $0 + $1.count + 1 }
        paths = .allocate(capacity: total)
        var k = 0
        for p in GeoDatabase.fieldPaths {
            starts.append(k)
            for s in p {
                let c = strdup(s)!
                strs.append(c)
                paths[k] = UnsafePointer(c); k += 1
            }
            paths[k] = nil; k += 1
        }
        strings = strs
        pathStarts = starts
    }

    deinit {
        MMDB_close(mmdb)
        mmdb.deallocate()
        for s in strings { free(s) }
        paths.deallocate()
    }

    /// Looks `address` up. Never allocates; a miss returns `found == false` with the prefix
    /// length of the empty network, which is still the right ECS scope for "not found".
    public func lookup(_ address: IPAddress) -> GeoRecord {
        var rec = GeoRecord()
        var err: Int32 = 0
        guard address.isV4 || isIPv6 else { return rec }
        let sa = SocketAddress(isV4: address.isV4, hi: address.hi, lo: address.lo, port: 0)
        let result = sa.withSockaddr { p, _ in MMDB_lookup_sockaddr(mmdb, p, &err) }
        guard err == MMDB_SUCCESS else { return rec }
        var mask = Int(result.netmask)
        // An IPv4 address in an IPv6 database sits under ::/96, so its netmask counts those 96 bits.
        if address.isV4 && isIPv6 { mask = max(0, mask - 96) }
        rec.prefixLength = mask
        guard result.found_entry else { return rec }
        var entry = result.entry
        decode(&entry, into: &rec)
        return rec
    }

    /// The fields of data record `entry` (prefix length left as it is).
    private func decode(_ entry: inout MMDB_entry_s, into rec: inout GeoRecord) {
        rec.found = true
        rec.country = code(&entry, 0)
        if rec.country == 0 { rec.country = code(&entry, 7) }
        rec.continent = code(&entry, 1)
        rec.subdivision1 = code(&entry, 2)
        if rec.subdivision1 != 0 { rec.subdivision2 = code(&entry, 3) }
        var data = MMDB_entry_data_s()
        if MMDB_aget_value(&entry, &data, paths + pathStarts[4]) == MMDB_SUCCESS, data.has_data, data.type == UInt32(MMDB_DATA_TYPE_DOUBLE) {
            rec.latitude = data.double_value
            var lon = MMDB_entry_data_s()
            if MMDB_aget_value(&entry, &lon, paths + pathStarts[5]) == MMDB_SUCCESS, lon.has_data, lon.type == UInt32(MMDB_DATA_TYPE_DOUBLE) {
                rec.longitude = lon.double_value
                rec.hasCoordinates = true
            }
        }
        var asn = MMDB_entry_data_s()
        if MMDB_aget_value(&entry, &asn, paths + pathStarts[6]) == MMDB_SUCCESS, asn.has_data, asn.type == UInt32(MMDB_DATA_TYPE_UINT32) {
            rec.asn = asn.uint32
        }
    }

    @inline(__always) private func code(_ entry: inout MMDB_entry_s, _ field: Int) -> UInt32 {
        var data = MMDB_entry_data_s()
        guard MMDB_aget_value(&entry, &data, paths + pathStarts[field]) == MMDB_SUCCESS, data.has_data,
              data.type == UInt32(MMDB_DATA_TYPE_UTF8_STRING), let p = data.utf8_string else { return 0 }
        return p.withMemoryRebound(to: UInt8.self, capacity: Int(data.data_size)) {
            packCode(UnsafeBufferPointer(start: $0, count: Int(data.data_size)))
        }
    }

    /// Every network of the database in address order, read once from its search tree
    /// (for `GeoMaps`): covering ranges per family whose values index `records`, -1 for
    /// networks without data, adjacent ranges with equal records merged. IPv4 ranges come
    /// from the IPv4 subtree (::/96 in an IPv6 database); IPv6 ranges are the whole tree,
    /// its aliases of the IPv4 subtree included, as a lookup would find them. Bounded by
    /// the tree: each node is read at most once (the IPv4 subtree once, then copied).
    func networks() -> GeoNetworks {
        var out = GeoNetworks()
        var records: [GeoRecord] = []
        var aliases: [(prefix: UInt128, shift: Int)] = []
        var byOffset: [UInt32: Int32] = [:]
        var byRecord: [GeoRecord: Int32] = [:]
        let nodeCount = mmdb.pointee.metadata.node_count
        func value(_ type: UInt8, _ entry: MMDB_entry_s) -> Int32 {
            guard type == UInt8(MMDB_RECORD_TYPE_DATA) else { return -1 }
            if let v = byOffset[entry.offset] { return v }
            var rec = GeoRecord()
            var e = entry
            decode(&e, into: &rec)
            let v: Int32
            if let known = byRecord[rec] { v = known } else {
                v = Int32(records.count)
                records.append(rec)
                byRecord[rec] = v
            }
            byOffset[entry.offset] = v
            return v
        }
        struct Pending { var record: UInt64; var type: UInt8; var entry: MMDB_entry_s; var depth: Int; var prefix: UInt128 }
        /// Walks the subtree under `root` (a record at `depth` of a `bits`-bit tree), emitting
        /// ranges in address order; where it meets the IPv4 start node `alias` (an alias of
        /// the IPv4 subtree), one placeholder range (`GeoNetworks.aliasValue`) stands for it.
        func walk(_ root: Pending, bits: Int, alias: UInt64?, into ranges: inout GeoRanges) {
            var stack = [root]
            while let p = stack.popLast() {
                if p.type == UInt8(MMDB_RECORD_TYPE_SEARCH_NODE) && p.depth < bits && p.record < UInt64(nodeCount) {
                    if let a = alias, p.record == a, bits - p.depth >= 32 {
                        aliases.append((p.prefix, bits - p.depth - 32))
                        ranges.append(p.prefix, GeoNetworks.aliasValue(aliases.count - 1))
                        continue
                    }
                    var node = MMDB_search_node_s()
                    guard MMDB_read_node(mmdb, UInt32(p.record), &node) == MMDB_SUCCESS else {
                        ranges.append(p.prefix, -1); continue
                    }
                    let rightPrefix = p.prefix | (UInt128(1) << (bits - 1 - p.depth))
                    stack.append(Pending(record: node.right_record, type: node.right_record_type, entry: node.right_record_entry,
                                         depth: p.depth + 1, prefix: rightPrefix))
                    stack.append(Pending(record: node.left_record, type: node.left_record_type, entry: node.left_record_entry,
                                         depth: p.depth + 1, prefix: p.prefix))
                } else {
                    ranges.append(p.prefix, value(p.type, p.entry))
                }
            }
        }
        let top = Pending(record: 0, type: UInt8(MMDB_RECORD_TYPE_SEARCH_NODE), entry: MMDB_entry_s(), depth: 0, prefix: 0)
        if !isIPv6 {
            walk(top, bits: 32, alias: nil, into: &out.v4)
            out.v6.append(0, -1)
            out.records = records
            out.aliases = aliases
            return out
        }
        // The IPv4 subtree: 96 zero bits down from the root.
        var v4Root = top
        while v4Root.depth < 96 && v4Root.type == UInt8(MMDB_RECORD_TYPE_SEARCH_NODE) && v4Root.record < UInt64(nodeCount) {
            var node = MMDB_search_node_s()
            guard MMDB_read_node(mmdb, UInt32(v4Root.record), &node) == MMDB_SUCCESS else { break }
            v4Root = Pending(record: node.left_record, type: node.left_record_type, entry: node.left_record_entry,
                             depth: v4Root.depth + 1, prefix: 0)
        }
        if v4Root.depth == 96 && v4Root.type == UInt8(MMDB_RECORD_TYPE_SEARCH_NODE) {
            v4Root.depth = 0
            walk(v4Root, bits: 32, alias: nil, into: &out.v4)
            walk(top, bits: 128, alias: v4Root.record, into: &out.v6)
        } else {
            // The whole IPv4 space is one network (or none) of the tree.
            out.v4.append(0, value(v4Root.type, v4Root.entry))
            walk(top, bits: 128, alias: nil, into: &out.v6)
        }
        out.records = records
        out.aliases = aliases
        return out
    }

    /// A digest of the database's bytes, so a reload of an unchanged file is recognised.
    var contentDigest: (UInt64, UInt64) {
        let base = UnsafeRawPointer(mmdb.pointee.file_content)
        let size = Int(mmdb.pointee.file_size)
        return digest(UnsafeRawBufferPointer(start: base, count: size))
    }
}

/// What `GeoDatabase.networks` reads out of a database. In `v6`, the IPv6 database's
/// aliases of its IPv4 subtree (::/96, ::ffff:0:0/96, 2002::/16, ...) are one range each,
/// valued `aliasValue(i)` for `aliases[i]`: IPv6 address x there is IPv4 address
/// (x >> shift) & 0xFFFFFFFF. Compiling expands them from the already merged IPv4 ranges,
/// which keeps three copies of the IPv4 networks out of the intermediate lists.
struct GeoNetworks {
    var v4 = GeoRanges()
    var v6 = GeoRanges()
    var records: [GeoRecord] = []
    var aliases: [(prefix: UInt128, shift: Int)] = []
    static func aliasValue(_ i: Int) -> Int32 { -2 - Int32(i) }
    static func aliasIndex(_ v: Int32) -> Int? { v <= -2 ? Int(-2 - v) : nil }
}
