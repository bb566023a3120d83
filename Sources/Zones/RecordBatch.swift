import Diagnostics
import DNSWire

/// Records as the master-file parser writes them: owners and rdata in two growing byte
/// buffers, and each record's owner entry, type, TTL, rdata end and place in one array. A million-record zone is a
/// dozen allocations here instead of three per record (`ResourceRecord`'s name, rdata and
/// location), and the zone build (`ZoneIndex`, `Zone`) reads the bytes in place.
///
/// Consecutive records of one owner share its name entry (`nameIndex`), which is how most
/// zones are written; an owner written again later gets another entry with the same bytes.
///
///     var batch = RecordBatch()
///     batch.append(ResourceRecord(name: n, type: .a, ttl: 60, rdata: [192, 0, 2, 1]))
///     batch[0].rdata   // [192, 0, 2, 1], a copy
public struct RecordBatch: Sendable {
    /// What a record has besides its bytes, in one array so that adding a record is one
    /// append there (and one of its rdata) rather than one per field.
    struct Fixed {
        /// The owner's name entry.
        var name: Int32
        var ttl: UInt32
        /// Where record i's rdata ends in `rdataBytes` (it starts where record i - 1's ends).
        var rdataEnd: UInt32
        /// Line and column of the record (`noLine`: no place, a synthesized record).
        var line: UInt32
        var column: UInt32
        var type: RRType
    }

    /// Owner names, wire form as written (case kept), back to back.
    private(set) var nameBytes: [UInt8] = []
    /// Name k is `nameBytes[nameStart(k)..<nameEnds[k]]`.
    private(set) var nameEnds: [UInt32] = []
    /// Per record.
    private(set) var fixed: [Fixed] = []
    private(set) var rdataBytes: [UInt8] = []
    /// The file of records `start...` up to the next run.
    private var fileRuns: [(start: Int, file: String)] = []
    /// The file of the last run (compared per record without copying the run out).
    private var lastFile: String?

    static let noLine = UInt32.max

    /// The most bytes of owner names or of rdata a batch holds (32-bit offsets).
    public static let maxBytes = Int(UInt32.max)

    public init() {}

    /// A batch of `records`, in order.
    public init(_ records: [ResourceRecord]) {
        reserve(records: records.count, names: records.count)
        for r in records { append(r) }
    }

    public var count: Int { fixed.count }
    public var isEmpty: Bool { fixed.isEmpty }
    public var indices: Range<Int> { 0..<count }

    mutating func reserve(records: Int, names: Int, bytes: Int = 0) {
        rdataBytes.reserveCapacity(bytes); nameBytes.reserveCapacity(bytes)
        fixed.reserveCapacity(records)
        nameEnds.reserveCapacity(names)
    }

    /// Adds an owner name's wire bytes; returns its name index, for `append(name:...)`.
    mutating func addName(_ wire: UnsafeRawBufferPointer) -> Int32 {
        nameBytes.append(contentsOf: wire)
        nameEnds.append(UInt32(truncatingIfNeeded: nameBytes.count))
        return Int32(nameEnds.count - 1)
    }

    /// Whether `bytes` more rdata still fit the 32-bit offsets.
    func fits(rdata bytes: Int) -> Bool { rdataBytes.count + bytes <= RecordBatch.maxBytes && nameBytes.count <= RecordBatch.maxBytes - 255 }

    /// Adds a record whose owner is name `name` (from `addName`) and whose rdata is `rdata`.
    mutating func append(name: Int32, type: RRType, ttl: UInt32, rdata: UnsafeRawBufferPointer, line: Int, column: Int, file: String?) {
        noteFile(file)
        rdataBytes.append(contentsOf: rdata)
        fixed.append(Fixed(name: name, ttl: ttl, rdataEnd: UInt32(truncatingIfNeeded: rdataBytes.count),
                           line: file == nil ? RecordBatch.noLine : UInt32(clamping: line), column: UInt32(clamping: column), type: type))
    }

    private mutating func noteFile(_ file: String?) {
        guard let file, file != lastFile else { return }
        fileRuns.append((fixed.count, file))
        lastFile = file
    }

    public mutating func append(_ r: ResourceRecord) {
        let n = r.name.wire.withUnsafeBytes { addName($0) }
        r.rdata.withUnsafeBytes {
            append(name: n, type: r.type, ttl: r.ttl, rdata: $0, line: r.location?.line ?? 0, column: r.location?.column ?? 0,
                   file: r.location?.file)
        }
    }

    public mutating func append(contentsOf records: [ResourceRecord]) {
        for r in records { append(r) }
    }

    // MARK: Reading

    @inline(__always) func nameIndex(_ i: Int) -> Int { Int(fixed[i].name) }
    @inline(__always) func type(_ i: Int) -> RRType { fixed[i].type }
    @inline(__always) func ttl(_ i: Int) -> UInt32 { fixed[i].ttl }

    @inline(__always) private func nameRange(_ k: Int) -> Range<Int> { (k == 0 ? 0 : Int(nameEnds[k - 1]))..<Int(nameEnds[k]) }
    @inline(__always) private func rdataRange(_ i: Int) -> Range<Int> { (i == 0 ? 0 : Int(fixed[i - 1].rdataEnd))..<Int(fixed[i].rdataEnd) }

    /// Bytes of record `i`'s owner name.
    @inline(__always) func nameLength(_ i: Int) -> Int { nameRange(nameIndex(i)).count }
    @inline(__always) func rdataLength(_ i: Int) -> Int { rdataRange(i).count }

    /// Runs `body` over record `i`'s owner wire bytes, in place.
    @inline(__always) func withName<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let r = nameRange(nameIndex(i))
        return nameBytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[r])) }
    }

    /// Runs `body` over record `i`'s rdata, in place.
    @inline(__always) func withRdata<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let r = rdataRange(i)
        return rdataBytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[r])) }
    }

    /// Record `i`'s owner (a new name).
    func name(_ i: Int) -> DNSName { DNSName(uncheckedWire: Array(nameBytes[nameRange(nameIndex(i))])) }

    /// Record `i`'s rdata, copied.
    func rdata(_ i: Int) -> [UInt8] { Array(rdataBytes[rdataRange(i)]) }

    func rdataEqual(_ i: Int, _ j: Int) -> Bool {
        let a = rdataRange(i), b = rdataRange(j)
        guard a.count == b.count else { return false }
        return rdataBytes.withUnsafeBytes { p in
            memcmpBytes(UnsafeRawBufferPointer(rebasing: p[a]), UnsafeRawBufferPointer(rebasing: p[b]))
        }
    }

    /// Where record `i` was written, or nil for a synthesized record.
    func location(_ i: Int) -> SourceLocation? {
        let f = fixed[i]
        guard f.line != RecordBatch.noLine else { return nil }
        // The last run starting at or before i (runs are few: one per included file).
        var lo = 0, hi = fileRuns.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if fileRuns[mid].start <= i { lo = mid } else { hi = mid }
        }
        return SourceLocation(file: fileRuns.isEmpty ? "" : fileRuns[lo].file, line: Int(f.line), column: Int(f.column))
    }

    /// Record `i`, copied out.
    public subscript(i: Int) -> ResourceRecord {
        ResourceRecord(name: name(i), type: type(i), rrclass: .in, ttl: ttl(i), rdata: rdata(i), location: location(i))
    }

    /// Every record, copied out (for the few users that need them all as values).
    public var records: [ResourceRecord] { indices.map { self[$0] } }

    /// Sets the SOA serial of every SOA record owned by `origin` (case-insensitive); the
    /// rdata keeps its length, so it is changed in place.
    mutating func setSOASerial(_ serial: UInt32, origin: DNSName) {
        let key = origin.lowercased().wire
        for i in indices where type(i) == .soa {
            let same = withName(i) { w in w.count == key.count && zip(w, key).allSatisfy { asciiLower($0) == $1 } }
            guard same else { continue }
            let r = rdataRange(i)
            let changed = SOAData.withSerial(Array(rdataBytes[r]), serial)
            rdataBytes.replaceSubrange(r, with: changed)
        }
    }
}
