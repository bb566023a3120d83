import Diagnostics
import DNSWire
import Synchronization

/// Zones built by the previous load, kept so that a reload whose zone file and GSLB names
/// did not change takes the built zone instead of parsing and indexing it again (a zone
/// with 100,000 GSLB names takes about a quarter of a second to build).
///
///     let reuse = ZoneReuse()                                     // one per server
///     let first = ZoneLoader.load(sources, dynamicNames: d, reuse: reuse)
///     let again = ZoneLoader.load(sources, dynamicNames: d, reuse: reuse)   // same Zone objects
///
/// A zone is reused when its file has the same path, origin and content (length and a
/// hash of its bytes, read again on every load, so an edit that keeps size and mtime is
/// still seen) and its GSLB bindings are equal. A file with an `$INCLUDE` directive is
/// always parsed again: the included files are not fingerprinted. Only the last load's
/// zones are kept, so the memory held is the zones already being served.
public final class ZoneReuse: Sendable {
    struct Fingerprint: Equatable, Sendable {
        var length: Int
        var hash: Int
    }

    struct Entry: Sendable {
        var origin: DNSName
        var fingerprint: Fingerprint
        var dynamic: [GSLBBinding]
        var zone: Zone
        var types: [DNSName: [(type: RRType, location: SourceLocation)]]
        var cuts: [DNSName: (owner: DNSName, location: SourceLocation)]
    }

    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    /// The fingerprint of the zone file at `path`, or nil: unreadable, or it has `$INCLUDE`.
    /// `Hasher` is seeded per process, which is all an in-process cache needs.
    static func fingerprint(path: String) -> Fingerprint? {
        guard let bytes = try? InputFile.read(path, limit: InputLimits.zoneFileBytes) else { return nil }
        if containsInclude(bytes) { return nil }
        var h = Hasher()
        bytes.withUnsafeBytes { h.combine(bytes: $0) }
        return Fingerprint(length: bytes.count, hash: h.finalize())
    }

    /// Whether `$INCLUDE` appears anywhere, in any case (a comment too: erring on parsing again).
    static func containsInclude(_ bytes: [UInt8]) -> Bool {
        let word = Array("$INCLUDE".utf8)
        guard bytes.count >= word.count else { return false }
        for i in 0...(bytes.count - word.count) where bytes[i] == UInt8(ascii: "$") {
            var j = 1
            while j < word.count && bytes[i + j] & 0xDF == word[j] { j += 1 }
            if j == word.count { return true }
        }
        return false
    }

    func entry(_ path: String) -> Entry? { entries.withLock { $0[path] } }

    /// Keeps `kept` (this load's zones) in place of the previous load's.
    func replace(with kept: [String: Entry]) { entries.withLock { $0 = kept } }
}
