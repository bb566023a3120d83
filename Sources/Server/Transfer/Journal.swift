import Config
import DNSWire
import Routing
import Synchronization
import Zones

/// One record as a transfer carries it.
struct TransferRecord: Hashable, Sendable {
    var owner: DNSName
    var type: RRType
    var ttl: UInt32
    var rdata: [UInt8]
}

/// The difference between two versions of a zone (RFC 1995 4: the old SOA, the records
/// deleted, the new SOA, the records added).
struct ZoneDiff: Sendable {
    var fromSOA: [UInt8]
    var toSOA: [UInt8]
    var from: UInt32
    var to: UInt32
    var removed: [TransferRecord]
    var added: [TransferRecord]
    var size: Int { removed.count + added.count + 2 }
}

/// The differences between reloads, per zone, that IXFR answers from. Bounded: at most
/// `maxDiffs` versions and `maxRecords` records of differences per zone (the oldest go
/// first); a difference larger than that is not kept, and IXFR from before it gets the
/// whole zone. Kept for the process: after a restart IXFR starts again with full answers.
final class TransferJournal: Sendable {
    static let shared = TransferJournal()
    static let maxDiffs = 16
    static let maxRecords = 200_000

    private let diffs = Mutex<[DNSName: [ZoneDiff]]>([:])

    /// Records what changed between the zones of `old` and `new` whose serials differ.
    func record(old: ServingSnapshot, new: ServingSnapshot) {
        for (i, zone) in new.zones.zones.enumerated() {
            // A signed zone always goes out whole (`SignedTransferView`): nothing to keep.
            if let s = new.signing, i < s.zones.count, s.zones[i] != nil { continue }
            let origin = zone.origin.lowercased()
            // Nobody may transfer the zone: no IXFR to answer (when an ACL opens it later, the
            // journal starts at that reload and older serials get the whole zone).
            if new.transfers.allow.isEmpty && (new.transfers.zoneAllow[origin] ?? []).isEmpty { continue }
            guard let before = old.zones.zones.first(where: { $0.origin.lowercased() == origin }),
                  before.serial != zone.serial, SOAData.greater(zone.serial, before.serial) else { continue }
            let a = Set(ZoneTransfer.records(of: before, snapshot: old))
            let b = Set(ZoneTransfer.records(of: zone, snapshot: new))
            let d = ZoneDiff(fromSOA: before.soa.rdatas.firstBytes, toSOA: zone.soa.rdatas.firstBytes, from: before.serial, to: zone.serial,
                             removed: a.subtracting(b).sorted(by: TransferJournal.order), added: b.subtracting(a).sorted(by: TransferJournal.order))
            diffs.withLock { all in
                var list = all[origin] ?? []
                // A version older than what is kept cannot be chained to any more.
                if list.last.map({ $0.to != d.from }) ?? false { list.removeAll() }
                guard d.size <= TransferJournal.maxRecords else { all[origin] = []; return }
                list.append(d)
                while list.count > TransferJournal.maxDiffs || list.reduce(0, { $0 + $1.size }) > TransferJournal.maxRecords {
                    list.removeFirst()
                }
                all[origin] = list
            }
        }
    }

    /// The differences from serial `from` to `to`, in order; nil when the journal does not
    /// reach back that far (or `to` is not the newest it knows).
    func chain(zone origin: DNSName, from: UInt32, to: UInt32) -> [ZoneDiff]? {
        diffs.withLock { all in
            guard let list = all[origin], let start = list.firstIndex(where: { $0.from == from }), list.last?.to == to else { return nil }
            return Array(list[start...])
        }
    }

    static func order(_ a: TransferRecord, _ b: TransferRecord) -> Bool {
        if a.owner != b.owner { return a.owner < b.owner }
        if a.type != b.type { return a.type.rawValue < b.type.rawValue }
        return a.rdata.lexicographicallyPrecedes(b.rdata)
    }
}
