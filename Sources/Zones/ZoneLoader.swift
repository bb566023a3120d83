import Diagnostics
import DNSWire
import Foundation

/// Loads master files into `Zone`s, collecting every error with its file:line:column.
///
///     let result = ZoneLoader.load(directory: "zones")
///     result.errors.isEmpty ? result.zones : []
public enum ZoneLoader {
    public struct Source: Sendable {
        /// The zone's origin if known (from the config); else taken from the file name and
        /// then from the SOA owner, which a `$ORIGIN` line may have set.
        public var origin: DNSName?
        public var path: String
        public init(origin: DNSName?, path: String) { self.origin = origin; self.path = path }
    }

    public struct Result: Sendable {
        public var zones: [Zone] = []
        public var errors: [ZoneError] = []
        /// Per zone origin, then per GSLB owner with records in the zone file: each record
        /// type there with the place of its first record, for the configuration's conflict
        /// check (`ConfigModel.validate(againstStaticOwners:cuts:)`).
        public var gslbStatic: [DNSName: [DNSName: [(type: RRType, location: SourceLocation)]]] = [:]
        /// Per zone origin, then per GSLB owner at or below a zone cut: the topmost cut and
        /// the place of its first NS record.
        public var gslbCuts: [DNSName: [DNSName: (owner: DNSName, location: SourceLocation)]] = [:]
        /// Milliseconds each zone took to parse, check and build, by origin.
        public var loadMilliseconds: [DNSName: Double] = [:]
        /// Origins of the zones taken unchanged from the previous load (`ZoneReuse`).
        public var reused: Set<DNSName> = []
    }

    /// Every `*.zone` file directly in `directory`, sorted by name.
    public static func sources(inDirectory directory: String) -> [Source] {
        (InputFile.zoneFiles(inFolder: directory) ?? []).map {
            Source(origin: nil, path: (directory as NSString).appendingPathComponent($0))
        }
    }

    /// Loads every source. `$INCLUDE` is confined to each zone file's own folder. With
    /// `reuse`, a zone whose file and GSLB names are unchanged since the last load with the
    /// same `reuse` is taken as built then, unless its origin is in `rebuild` (a signed zone:
    /// its keys may have changed while its file did not).
    /// `serial`, when given, is asked for each zone built and may return the SOA serial to
    /// serve instead of the file's (`transfers.serial`); the zone is then built again with it.
    /// `extra` adds records to a zone once its origin is known (the DNSKEY, CDS and CDNSKEY
    /// RRsets of a signed zone); it may report errors for the zone.
    public static func load(_ sources: [Source], dynamicNames: [DNSName: [GSLBBinding]] = [:],
                            reuse: ZoneReuse? = nil, rebuild: Set<DNSName> = [],
                            serial: ((Zone) -> UInt32?)? = nil,
                            extra: (_ origin: DNSName, _ records: RecordBatch) -> Swift.Result<[ResourceRecord], ZoneErrors> = { _, _ in .success([]) }) -> Result {
        var out = Result()
        var kept: [String: ZoneReuse.Entry] = [:]
        defer { reuse?.replace(with: kept) }
        for src in sources {
            let t0 = Date()
            var fingerprint: ZoneReuse.Fingerprint? = nil
            if let reuse, let origin = src.origin, !rebuild.contains(origin.lowercased()) {
                fingerprint = ZoneReuse.fingerprint(path: src.path)
                let dynamic = dynamicNames[origin.lowercased()] ?? []
                if let fp = fingerprint, let e = reuse.entry(src.path), e.origin == origin, e.fingerprint == fp, e.dynamic == dynamic {
                    let key = origin.lowercased()
                    out.zones.append(e.zone)
                    out.gslbStatic[key] = e.types
                    out.gslbCuts[key] = e.cuts
                    out.loadMilliseconds[key] = Date().timeIntervalSince(t0) * 1000
                    out.reused.insert(key)
                    kept[src.path] = e
                    continue
                }
            }
            let fileName = (src.path as NSString).lastPathComponent
            var guess = src.origin
            if guess == nil {
                let stem = String(fileName.dropLast(".zone".count))
                guess = try? DNSName(stem.hasSuffix(".") ? stem : stem + ".")
            }
            let here = SourceLocation(file: src.path, line: 1, column: 1)
            var records: RecordBatch
            do {
                let folder = (src.path as NSString).deletingLastPathComponent
                records = try MasterFileParser(origin: guess ?? .root, baseDirectory: folder.isEmpty ? "." : folder).parseFileBatch(path: src.path)
            } catch {
                out.errors += error.errors
                continue
            }
            guard let origin = src.origin ?? records.indices.first(where: { records.type($0) == .soa }).map({ records.name($0) }) ?? guess else {
                out.errors.append(ZoneError(here, "cannot tell the zone's origin: name the file ORIGIN.zone or add $ORIGIN and an SOA record"))
                continue
            }
            switch extra(origin, records) {
            case .success(let added): records.append(contentsOf: added)
            case .failure(let e):
                out.errors += e.errors
                continue
            }
            do {
                let dynamic = dynamicNames[origin.lowercased()] ?? []
                var zone = try Zone.checked(origin: origin, batch: records, dynamicNames: dynamic, file: src.path)
                if let serial, let n = serial(zone), n != zone.serial {
                    records.setSOASerial(n, origin: origin)
                    zone = try Zone.checked(origin: origin, batch: records, dynamicNames: dynamic, file: src.path)
                }
                out.zones.append(zone)
                let facts = gslbFacts(zone, records: records, dynamic: dynamic, file: here)
                out.gslbStatic[origin.lowercased()] = facts.types
                out.gslbCuts[origin.lowercased()] = facts.cuts
                out.loadMilliseconds[origin.lowercased()] = Date().timeIntervalSince(t0) * 1000
                if let fingerprint, let declared = src.origin {
                    kept[src.path] = ZoneReuse.Entry(origin: declared, fingerprint: fingerprint, dynamic: dynamic, zone: zone,
                                                     types: facts.types, cuts: facts.cuts)
                }
            } catch {
                out.errors += error.errors
            }
        }
        var seen: [DNSName: String] = [:]
        for z in out.zones {
            if let other = seen[z.origin.lowercased()] {
                out.errors.append(ZoneError(SourceLocation(file: z.file ?? "?", line: 1, column: 1),
                                            "zone \(z.origin) is already loaded from \(other)"))
            }
            seen[z.origin.lowercased()] = z.file ?? "?"
        }
        return out
    }

    /// What the file holds at and above each GSLB name of `zone`: the record types at the
    /// name (the place of the first record of each) and the topmost zone cut at or above it
    /// (the place of its first NS record). Only GSLB names can clash with static data, so
    /// only they are looked up, and the records are scanned only when one of them has
    /// records or sits under a cut (most zones have none).
    static func gslbFacts(_ zone: Zone, records: RecordBatch, dynamic: [GSLBBinding], file: SourceLocation)
        -> (types: [DNSName: [(type: RRType, location: SourceLocation)]], cuts: [DNSName: (owner: DNSName, location: SourceLocation)]) {
        var owners = Set<DNSName>()
        var cutAbove: [DNSName: DNSName] = [:]
        for b in dynamic where b.owner.isSubdomain(of: zone.origin) {
            if let node = zone.node(named: b.owner), !node.rrsets.isEmpty { owners.insert(b.owner) }
            // Up to the apex, one label a step (at most 127): the last cut seen is the topmost.
            var n: DNSName? = b.owner
            while let x = n, x != zone.origin, x.isSubdomain(of: zone.origin) {
                if zone.node(named: x)?.isDelegation == true { cutAbove[b.owner] = x }
                n = x.parent
            }
        }
        var types: [DNSName: [(type: RRType, location: SourceLocation)]] = [:]
        var firstNS: [DNSName: SourceLocation] = [:]
        guard !owners.isEmpty || !cutAbove.isEmpty else { return ([:], [:]) }
        let cutOwners = Set(cutAbove.values)
        // Each owner name is built once for a run of records written with it.
        var nameIndex = -1
        var name = DNSName.root
        for i in records.indices {
            if records.nameIndex(i) != nameIndex { nameIndex = records.nameIndex(i); name = records.name(i) }
            let type = records.type(i)
            if owners.contains(name), !(types[name]?.contains { $0.type == type } ?? false) {
                types[name, default: []].append((type, records.location(i) ?? file))
            }
            if type == .ns, firstNS[name] == nil, cutOwners.contains(name) { firstNS[name] = records.location(i) ?? file }
        }
        return (types, cutAbove.mapValues { ($0, firstNS[$0] ?? file) })
    }
}
