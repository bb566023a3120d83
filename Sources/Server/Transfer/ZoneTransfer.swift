import Config
import DNSWire
import Glibc
import Routing
import Zones

/// How a transfer request ended, for the log and the metrics.
enum TransferResult: String, Sendable, CaseIterable {
    /// The zone went out (AXFR, or IXFR answered with the whole zone or the current SOA).
    case transferred
    /// REFUSED: not a served zone, or a client no ACL entry allows.
    case refused
    /// NOTAUTH with a TSIG error (RFC 8945 5.2): unknown key, bad MAC or time.
    case notAuth = "notauth"
    /// FORMERR: a malformed request or TSIG record.
    case formErr = "formerr"
}

/// One outgoing zone transfer (RFC 5936 AXFR; RFC 1995 IXFR answered from the current
/// zone), produced a message at a time so a large zone is never held whole in memory:
/// the TCP worker asks for the next message whenever its output buffer drains.
///
/// Messages: the SOA first and last, records packed up to 64 KiB per message with name
/// compression, the question in the first message only (RFC 5936 2.2), each message
/// signed when the request was (RFC 8945 5.3.1: the first over the request's MAC, later
/// ones over the previous MAC and the timers). GSLB names are written as their static view
/// (`TransferView`). A refused request is a session of one message.
///
///     let t = ZoneTransfer.start(query: q, client: addr, snapshot: s)
///     while case let n = t.next(into: buffer), n > 0 { send(buffer[0..<n]) }
public final class ZoneTransfer {
    private let snapshot: ServingSnapshot
    private let zone: Zone?
    private let id: UInt16
    /// Question name, type and class as the client sent them.
    private let question: [UInt8]
    private var rcode: RCode = .noError
    private let signing: TSIGKey?
    private var tsigKeyName = DNSName.root
    private var tsigAlgorithm = DNSName.root
    private var tsigError: UInt16 = 0
    private var priorMAC: [UInt8]?
    private var messagesSent = 0
    /// Only the current SOA (IXFR from a serial at or past ours, RFC 1995 2).
    private var soaOnly = false
    /// The records between the two SOAs when they are not the zone's nodes: an incremental
    /// IXFR (RFC 1995 4: the journal's differences, each as old SOA, deletions, new SOA,
    /// additions), or a signed zone's signed view (`SignedTransferView`).
    private var listed: [TransferRecord]?
    /// A signed zone's view, built in the background; the transfer waits until it is there.
    private var signedView: SignedTransferBuild?
    private var listedIndex = 0
    /// How an IXFR was answered, for the log: incremental, full, or up to date.
    private(set) var style = "full"

    // Cursor: 0 before the first SOA, then nodes, then the last SOA.
    private var stage = 0
    private var nodeIndex = 0
    private var sets: [RRSet] = []
    private var setIndex = 0
    /// The next record of `sets[setIndex]`; nil for its first.
    private var rdataCursor: RdataList.Index? = nil
    private var done = false
    private(set) var records = 0
    let result: TransferResult
    let qtype: RRType
    let zoneName: String
    let reason: String
    let startedAt = monotonicMilliseconds()

    private init(snapshot: ServingSnapshot, zone: Zone?, id: UInt16, question: [UInt8], qtype: RRType, result: TransferResult,
                 rcode: RCode, signing: TSIGKey?, reason: String, zoneName: String) {
        self.snapshot = snapshot; self.zone = zone; self.id = id; self.question = question; self.qtype = qtype
        self.result = result; self.rcode = rcode; self.signing = signing; self.reason = reason; self.zoneName = zoneName
    }

    /// Whether a TCP message asks for AXFR or IXFR: one question whose type is 251 or 252.
    /// A header test and a walk over the question's labels; nothing else is read.
    static func isTransferQuery(_ q: UnsafeRawBufferPointer) -> Bool {
        guard q.count >= 17, q[4] == 0, q[5] == 1 else { return false }
        var off = 12
        for _ in 0..<128 {
            guard off < q.count else { return false }
            let len = Int(q[off])
            if len == 0 { break }
            if len & 0xC0 != 0 { return false }
            off += len + 1
        }
        guard off + 3 <= q.count, q[off + 1] == 0 else { return false }
        return q[off + 2] == 251 || q[off + 2] == 252
    }

    /// Reads an AXFR or IXFR request (the caller saw one of those types) and decides:
    /// a transfer, or a one-message refusal.
    static func start(query q: UnsafeRawBufferPointer, client: IPAddress, snapshot: ServingSnapshot) -> ZoneTransfer {
        let id = q.count >= 2 ? UInt16(q[0]) << 8 | UInt16(q[1]) : 0
        func fail(_ r: TransferResult, _ rc: RCode, _ why: String, question: [UInt8] = [], qtype: RRType = .axfr, zone: String = "-") -> ZoneTransfer {
            ZoneTransfer(snapshot: snapshot, zone: nil, id: id, question: question, qtype: qtype, result: r, rcode: rc,
                         signing: nil, reason: why, zoneName: zone)
        }
        guard let pq = try? ParsedQuery.parse(q), pq.qdcount == 1 else { return fail(.formErr, .formErr, "malformed request") }
        let question = Array(q[12..<pq.questionEnd])
        let qtype = pq.qtype
        let records: [WireRecord]
        do {
            records = try MessageRecords.walk(q, from: pq.questionEnd, count: Int(pq.ancount) + Int(pq.nscount) + Int(pq.arcount))
        } catch { return fail(.formErr, .formErr, "malformed records", question: question, qtype: qtype) }
        var nameBytes: [UInt8] = []
        _ = withUnsafeMutablePointer(to: &nameBytes) { p in try? Wire.readName(q, at: 12, into: p, lowercase: true) }
        let origin = DNSName(uncheckedWire: nameBytes)
        let zoneText = origin.description
        let tsig: TSIGRecord?
        do { tsig = try TSIGRecord.find(q, records: records, arcount: Int(pq.arcount)) } catch {
            return fail(.formErr, .formErr, "malformed TSIG record", question: question, qtype: qtype, zone: zoneText)
        }
        let settings = snapshot.transfers
        // TSIG first (RFC 8945 5.2): a signed request gets a signed (or TSIG-error) answer.
        var key: TSIGKey?
        if let t = tsig {
            let s = ZoneTransfer(snapshot: snapshot, zone: nil, id: id, question: question, qtype: qtype, result: .notAuth,
                                 rcode: TSIG.notAuth, signing: nil, reason: "", zoneName: zoneText)
            guard let k = settings.key(named: t.keyName), settings.keys[k].algorithm.name == t.algorithm else {
                return s.tsigFailure(t, error: TSIG.badKey, key: nil, why: "unknown TSIG key \(t.keyName) (\(t.algorithm))")
            }
            let candidate = settings.keys[k]
            guard TSIG.verify(q, t, key: candidate) else {
                return s.tsigFailure(t, error: TSIG.badSig, key: nil, why: "bad TSIG signature with key \(t.keyName)")
            }
            let now = UInt64(time(nil))
            let skew = now > t.timeSigned ? now - t.timeSigned : t.timeSigned - now
            guard skew <= UInt64(t.fudge) else {
                return s.tsigFailure(t, error: TSIG.badTime, key: candidate, why: "TSIG time off by \(skew) s (fudge \(t.fudge))")
            }
            key = candidate
        }
        func refuse(_ why: String) -> ZoneTransfer {
            let r = ZoneTransfer(snapshot: snapshot, zone: nil, id: id, question: question, qtype: qtype, result: .refused,
                                 rcode: .refused, signing: key, reason: why, zoneName: zoneText)
            if let t = tsig, key != nil { r.signWith(t) }
            return r
        }
        guard pq.opcode == 0, pq.qclass == .in else { return refuse("not class IN") }
        var zi = -1
        for (i, z) in snapshot.zones.zones.enumerated() where z.origin.lowercased() == origin { zi = i; break }
        guard zi >= 0 else { return refuse("not a served zone") }
        let zone = snapshot.zones.zones[zi]
        let entries = settings.entries(zone: origin, client: client)
        let keyIndex = key.flatMap { k in settings.keys.firstIndex { $0.name == k.name } }
        guard entries.contains(where: { $0.key == nil || $0.key == keyIndex }) else {
            if entries.isEmpty { return refuse("client not in any transfer ACL of the zone") }
            return refuse(key == nil ? "unsigned request; the ACL entry for this client needs a TSIG key" : "signed with a key the ACL does not name for this client")
        }
        let x = ZoneTransfer(snapshot: snapshot, zone: zone, id: id, question: question, qtype: qtype, result: .transferred,
                             rcode: .noError, signing: key, reason: "", zoneName: zoneText)
        if let t = tsig, key != nil { x.signWith(t) }
        if qtype == .ixfr, let theirs = ixfrSerial(q, records: records, nscount: Int(pq.ancount) ..< Int(pq.ancount) + Int(pq.nscount)),
           !SOAData.greater(zone.serial, theirs) {
            x.soaOnly = true
            x.style = "up-to-date"
        } else if let build = SignedTransfers.request(zone: zone, index: zi, snapshot: snapshot) {
            // A signed zone always goes out whole, IXFR included (RFC 1995 4 allows it): a
            // refresh re-signs every RRset, so a difference would be most of the zone anyway.
            x.signedView = build
        } else if qtype == .ixfr, let theirs = ixfrSerial(q, records: records, nscount: Int(pq.ancount) ..< Int(pq.ancount) + Int(pq.nscount)),
                  let diffs = TransferJournal.shared.chain(zone: origin, from: theirs, to: zone.serial) {
            var list: [TransferRecord] = []
            for d in diffs {
                list.append(TransferRecord(owner: zone.origin, type: .soa, ttl: zone.soa.ttl, rdata: d.fromSOA))
                list += d.removed
                list.append(TransferRecord(owner: zone.origin, type: .soa, ttl: zone.soa.ttl, rdata: d.toSOA))
                list += d.added
            }
            x.listed = list
            x.style = "incremental"
        }
        return x
    }

    private func signWith(_ t: TSIGRecord) {
        tsigKeyName = t.keyName
        tsigAlgorithm = t.algorithm
        priorMAC = t.mac
    }

    private func tsigFailure(_ t: TSIGRecord, error: UInt16, key: TSIGKey?, why: String) -> ZoneTransfer {
        let r = ZoneTransfer(snapshot: snapshot, zone: nil, id: id, question: question, qtype: qtype, result: .notAuth,
                             rcode: TSIG.notAuth, signing: key, reason: why, zoneName: zoneName)
        r.signWith(t)
        // BADKEY and BADSIG answers carry no MAC (RFC 8945 5.2.1, 5.2.2); BADTIME is signed.
        r.tsigError = error
        return r
    }

    /// The serial of the SOA the client sent in the authority section of an IXFR.
    private static func ixfrSerial(_ q: UnsafeRawBufferPointer, records: [WireRecord], nscount: Range<Int>) -> UInt32? {
        for i in nscount where i < records.count && records[i].type == .soa {
            let r = records[i]
            guard let m = try? Wire.readName(q, at: r.rdata), let n = try? Wire.readName(q, at: m), n + 4 <= r.end else { return nil }
            return try? Wire.getU32(q, n)
        }
        return nil
    }


    /// True while the signed view this transfer carries is still being built: `next`
    /// returns -1 until it is there.
    var isWaiting: Bool { signedView.map { $0.view == nil } ?? false }

    /// Calls `ready` once the signed view this transfer waits for is built (at once if it
    /// is there already); never for a transfer that carries no signed view.
    func whenViewReady(_ ready: @escaping @Sendable () -> Void) { signedView?.whenReady(ready) }

    /// Writes the next message into `out` (at least 65535 bytes); returns its length, 0
    /// when the transfer is complete, or -1 while the signed view is being built (ask again).
    func next(into out: UnsafeMutableRawBufferPointer) -> Int {
        guard !done else { return 0 }
        if let b = signedView {
            guard let v = b.view else { return -1 }
            listed = v.records
            signedView = nil
        }
        let w = MessageWriter()
        let room = (signing != nil || tsigError != 0) ? TSIG.maxRecordSize : 0
        w.reset(buffer: out, limit: min(out.count, 65535) - room)
        var an = 0
        do {
            for _ in 0..<6 { try w.writeU16(0) }
            let first = messagesSent == 0
            if first {
                try w.writeBytes(question)
                w.registerName(at: 12)
            }
            if let zone, rcode == .noError {
                an = try fill(w, zone: zone)
            } else {
                done = true
            }
        } catch {
            done = true
            return 0
        }
        let first = messagesSent == 0
        w.setU16(id, at: 0)
        w.setU16(HeaderFlags.qr | HeaderFlags.aa | (rcode.rawValue & 0xF), at: 2)
        w.setU16(first ? 1 : 0, at: 4)
        w.setU16(UInt16(an), at: 6)
        var length = w.position
        if signing != nil || tsigError != 0 {
            let (n, mac) = TSIG.sign(out, length: length, key: signing, keyName: tsigKeyName, algorithm: tsigAlgorithm,
                                     priorMAC: priorMAC, first: first, originalID: id, error: tsigError, time: UInt64(time(nil)))
            length = n
            priorMAC = mac
        }
        messagesSent += 1
        records += an
        return length
    }

    /// Packs records into the message until it is full or the zone is done.
    private func fill(_ w: MessageWriter, zone: Zone) throws(DNSWireError) -> Int {
        var an = 0
        while true {
            if stage == 0 {
                guard try put(w, owner: zone.origin.wire, type: .soa, ttl: zone.soa.ttl, rdata: zone.soa.rdatas.firstBytes) else { return an }
                an += 1
                stage = soaOnly ? 2 : 1
                continue
            }
            if stage == 1, let list = listed {
                guard listedIndex < list.count else { stage = 2; continue }
                let r = list[listedIndex]
                guard try put(w, owner: r.owner.wire, type: r.type, ttl: r.ttl, rdata: r.rdata) else {
                    if an == 0 { throw DNSWireError.bufferFull(w.position) }
                    return an
                }
                an += 1
                listedIndex += 1
                continue
            }
            if stage == 1 {
                if setIndex >= sets.count {
                    guard nodeIndex < zone.nodes.count else { stage = 2; continue }
                    sets = ZoneTransfer.rrsets(of: nodeIndex, zone: zone, snapshot: snapshot)
                    setIndex = 0; rdataCursor = nil
                    nodeIndex += 1
                    continue
                }
                let s = sets[setIndex]
                let at = rdataCursor ?? s.rdatas.startIndex
                if at >= s.rdatas.endIndex { setIndex += 1; rdataCursor = nil; continue }
                let owner = zone.nodes[nodeIndex - 1].name.wire
                // The rdata is written from the zone's storage in place, not copied out.
                let fitted = try s.rdatas[at].withBytes { (r) throws(DNSWireError) in try put(w, owner: owner, type: s.type, ttl: s.ttl, rdata: r) }
                guard fitted else {
                    if an == 0 { throw .bufferFull(w.position) }
                    return an
                }
                an += 1
                rdataCursor = s.rdatas.index(after: at)
                continue
            }
            if stage == 2 {
                if qtype == .ixfr && soaOnly { stage = 3; done = true; return an }
                guard try put(w, owner: zone.origin.wire, type: .soa, ttl: zone.soa.ttl, rdata: zone.soa.rdatas.firstBytes) else { return an }
                an += 1
                stage = 3
                done = true
                return an
            }
            return an
        }
    }

    /// Writes one record, or rolls back and returns false when the message is full.
    private func put(_ w: MessageWriter, owner: [UInt8], type: RRType, ttl: UInt32, rdata: [UInt8]) throws(DNSWireError) -> Bool {
        try withBytes(rdata) { (r) throws(DNSWireError) in try put(w, owner: owner, type: type, ttl: ttl, rdata: r) }
    }

    private func put(_ w: MessageWriter, owner: [UInt8], type: RRType, ttl: UInt32, rdata: UnsafeRawBufferPointer) throws(DNSWireError) -> Bool {
        let mark = w.mark()
        do {
            try withBytes(owner) { (o) throws(DNSWireError) in try w.writeRecord(owner: o, type: type, ttl: ttl, rdata: rdata) }
            return true
        } catch {
            guard error.code == .bufferFull else { throw error }
            w.rollback(to: mark)
            return false
        }
    }

    /// The RRsets a node contributes: its static ones (the apex SOA goes first and last
    /// instead), and for a GSLB name the static view of the types its policy owns.
    static func rrsets(of i: Int, zone: Zone, snapshot: ServingSnapshot) -> [RRSet] {
        let node = zone.nodes[i]
        var out = node.rrsets.filter { !(i == zone.apexIndex && $0.type == .soa) && !node.dynamicTypes.owns($0.type) }
        guard node.dynamicIndex >= 0, let router = snapshot.router, let model = snapshot.model else { return out }
        let name = Int(node.dynamicIndex)
        let view = snapshot.transfers.view(name: model.names[name].owner.lowercased(), zone: zone.origin.lowercased())
        out += ZoneTransfer.staticView(router: router, name: name, types: node.dynamicTypes, view: view, health: snapshot.transferHealth[zone.origin.lowercased()])
        return out
    }

    /// Every record a full transfer of `zone` carries between its two SOAs.
    static func records(of zone: Zone, snapshot: ServingSnapshot) -> [TransferRecord] {
        var out: [TransferRecord] = []
        out.reserveCapacity(zone.recordCount)
        for i in zone.nodes.indices {
            for s in rrsets(of: i, zone: zone, snapshot: snapshot) {
                for r in s.rdatas { out.append(TransferRecord(owner: zone.nodes[i].name, type: s.type, ttl: s.ttl, rdata: r.bytes)) }
            }
        }
        return out
    }

    /// A GSLB name's records as a secondary serves them: the answers with every endpoint up
    /// and no client location (`all_up`), or with every endpoint down, which is the
    /// `when_all_down`/`fallback` answer where one is configured (`fallback`), or with
    /// `current` health (`healthy`; every endpoint up when nil or from another endpoint list).
    static func staticView(router: Router, name: Int, types: GSLBTypes, view: TransferView, health current: HealthSnapshot?) -> [RRSet] {
        let count = router.model.endpoints.count
        let health: HealthSnapshot
        switch view {
        case .allUp: health = .allUp(count: count)
        case .fallback: health = HealthSnapshot(states: Array(repeating: .down, count: count))
        case .healthy:
            // States only: a suspect endpoint's shorter TTL is for live answers, not for a copy.
            health = current.flatMap { $0.states.count == count ? HealthSnapshot(states: $0.states) : nil } ?? .allUp(count: count)
        }
        let client = ClientInfo(source: IPAddress(v4: 0), subnet: nil)
        var rng = RoutingRandom(seed: 1)
        var result = router.makeResult()
        var out: [RRSet] = []
        func addresses(_ t: RRType) -> Bool {
            router.resolve(nameIndex: name, qtype: t, client: client, health: health, random: &rng, into: &result)
            if let c = result.cname {
                out.append(RRSet(type: .cname, ttl: result.ttl, rdatas: [c.wire]))
                return false
            }
            var seen = Set<IPAddress>()
            let rd = result.addresses.filter { $0.isV4 == (t == .a) && seen.insert($0).inserted }.map(\.bytes)
            if !rd.isEmpty { out.append(RRSet(type: t, ttl: result.ttl, rdatas: rd)) }
            return true
        }
        if types.contains(.all) {
            if addresses(.a) { _ = addresses(.aaaa) }
        } else {
            if types.owns(.a) { _ = addresses(.a) }
            if types.owns(.aaaa) { _ = addresses(.aaaa) }
        }
        return out
    }
}
