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
        /// Per zone origin, the GSLB names that are also static owners (names with records in
        /// the zone file), for the conflict check.
        public var owners: [DNSName: Set<DNSName>] = [:]
        /// Milliseconds each zone took to parse, check and build, by origin.
        public var loadMilliseconds: [DNSName: Double] = [:]
    }

    /// Every `*.zone` file directly in `directory`, sorted by name.
    public static func sources(inDirectory directory: String) -> [Source] {
        (InputFile.zoneFiles(inFolder: directory) ?? []).map {
            Source(origin: nil, path: (directory as NSString).appendingPathComponent($0))
        }
    }

    /// Loads every source. `$INCLUDE` is confined to each zone file's own folder.
    public static func load(_ sources: [Source], dynamicNames: [DNSName: [(DNSName, Int32)]] = [:]) -> Result {
        var out = Result()
        for src in sources {
            let t0 = Date()
            let fileName = (src.path as NSString).lastPathComponent
            var guess = src.origin
            if guess == nil {
                let stem = String(fileName.dropLast(".zone".count))
                guess = try? DNSName(stem.hasSuffix(".") ? stem : stem + ".")
            }
            let here = SourceLocation(file: src.path, line: 1, column: 1)
            let records: [ResourceRecord]
            do {
                let folder = (src.path as NSString).deletingLastPathComponent
                records = try MasterFileParser(origin: guess ?? .root, baseDirectory: folder.isEmpty ? "." : folder).parseFile(path: src.path)
            } catch {
                out.errors += error.errors
                continue
            }
            guard let origin = src.origin ?? records.first(where: { $0.type == .soa })?.name ?? guess else {
                out.errors.append(ZoneError(here, "cannot tell the zone's origin: name the file ORIGIN.zone or add $ORIGIN and an SOA record"))
                continue
            }
            do {
                let dynamic = dynamicNames[origin.lowercased()] ?? []
                let zone = try Zone.checked(origin: origin, records: records, dynamicNames: dynamic, file: src.path)
                out.zones.append(zone)
                // Only GSLB names can clash with static owners, so only they are looked up.
                var owners = Set<DNSName>()
                for (n, _) in dynamic where zone.node(named: n).map({ !$0.rrsets.isEmpty }) ?? false { owners.insert(n.lowercased()) }
                out.owners[origin.lowercased()] = owners
                out.loadMilliseconds[origin.lowercased()] = Date().timeIntervalSince(t0) * 1000
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
}
