import Config
import DNSWire
import Foundation
import Glibc
import Logging
import Platform
import Routing
import Zones

/// NOTIFY out (RFC 1996): after a reload, every zone whose transferable content changed
/// (records, or the static view of its GSLB names as the configuration defines it) is
/// announced to its `notify` targets over UDP, signed when the target has a key, retried
/// until the secondary answers. Health changes notify only for zones with GSLB names in the
/// `healthy` view (`HealthSerials`); the other views are computed with fixed health.
///
///     Notifier.reloaded(old: previous, new: snapshot, log: log)
enum Notifier {
    /// Tries per target, and the wait for an answer to each (doubling): 1+2+4+8+16 s at most.
    static let tries = 5
    static let firstWait = 1000

    /// `ADDR` (port 53), `ADDR:PORT` or `[v6]:PORT`.
    static func address(_ t: NotifyTarget) throws(ListenAddressError) -> ListenAddress {
        if let a = IPAddress(t.address) { return ListenAddress(address: a, port: 53) }
        return try ListenAddress(t.address)
    }

    /// Load-time check of every target's address, with the location it was written at.
    static func problems(_ settings: TransferSettings) -> [String] {
        var out: [String] = []
        for t in settings.notify + settings.zoneNotify.values.flatMap({ $0 }) {
            do { _ = try address(t) } catch { out.append("\(t.location): transfers notify: \"\(t.address)\" is not ADDR, ADDR:PORT or [V6]:PORT: \(error.reason)") }
        }
        return out
    }

    /// Sends NOTIFY for each zone of `new` whose content differs from `old`'s (every zone
    /// with targets when `old` is nil: the first load). Returns at once; the sending and
    /// retries run on a thread per target.
    static func reloaded(old: ServingSnapshot?, new: ServingSnapshot, log: Logger) {
        for zone in new.zones.zones {
            let origin = zone.origin.lowercased()
            let targets = new.transfers.notifyTargets(zone: origin)
            guard !targets.isEmpty else { continue }
            let digest = contentDigest(zone, snapshot: new, serial: true)
            if let old, let before = old.zones.zones.first(where: { $0.origin.lowercased() == origin }),
               contentDigest(before, snapshot: old, serial: true) == digest {
                continue
            }
            for t in targets {
                guard let to = try? address(t) else { continue }
                let key = t.key.map { new.transfers.keys[$0] }
                let soa = zone.soa
                Thread { send(zone: zone.origin, soa: soa, to: to, key: key, log: log) }.start()
            }
        }
    }

    static func contentDigest(_ zone: Zone, snapshot: ServingSnapshot, serial: Bool) -> UInt64 {
        contentDigest(zone, router: snapshot.router, transfers: snapshot.transfers, serial: serial, health: snapshot.transferHealth[zone.origin.lowercased()])
    }

    /// A hash of everything a transfer of `zone` would carry, in zone order; with
    /// `serial` false, the SOA serial is left out (to tell whether the content changed).
    static func contentDigest(_ zone: Zone, router: Router?, transfers: TransferSettings, serial: Bool, health: HealthSnapshot?) -> UInt64 {
        digest(zone, router: router, transfers: transfers, serial: serial, health: health, onlyDynamic: false)
    }

    /// A hash of only the part of a transfer of `zone` that health can change: the static
    /// views of its GSLB names. Cheap next to `contentDigest` on a large zone (the other
    /// nodes are skipped, not hashed), so a health change is compared with it.
    static func healthViewDigest(_ zone: Zone, router: Router?, transfers: TransferSettings, health: HealthSnapshot?) -> UInt64 {
        digest(zone, router: router, transfers: transfers, serial: false, health: health, onlyDynamic: true)
    }

    private static func digest(_ zone: Zone, router: Router?, transfers: TransferSettings, serial: Bool, health: HealthSnapshot?,
                               onlyDynamic: Bool) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix<C: Collection<UInt8>>(_ b: C) { for x in b { h = (h ^ UInt64(x)) &* 0x100_0000_01B3 }; h = mix64(h) }
        for (i, node) in zone.nodes.enumerated() {
            if onlyDynamic && node.dynamicIndex < 0 { continue }
            var sets = onlyDynamic ? [] : node.rrsets.filter { !node.dynamicTypes.owns($0.type) }
            if !serial, i == zone.apexIndex, let k = sets.firstIndex(where: { $0.type == .soa }) {
                let s = sets[k]
                sets[k] = RRSet(type: .soa, ttl: s.ttl, rdatas: s.rdatas.map { SOAData.withSerial($0.bytes, 0) })
            }
            if node.dynamicIndex >= 0, let router {
                let name = Int(node.dynamicIndex)
                let view = transfers.view(name: router.model.names[name].owner.lowercased(), zone: zone.origin.lowercased())
                sets += ZoneTransfer.staticView(router: router, name: name, types: node.dynamicTypes, view: view, health: health)
            }
            guard !sets.isEmpty else { continue }
            mix(node.name.lowercased().wire)
            mix([UInt8(truncatingIfNeeded: i)])
            for s in sets {
                mix([UInt8(s.type.rawValue >> 8), UInt8(truncatingIfNeeded: s.type.rawValue)])
                mix(withUnsafeBytes(of: s.ttl.bigEndian) { Array($0) })
                for r in s.rdatas { mix(r) }
            }
        }
        return h
    }

    /// The NOTIFY message (RFC 1996 3.7: the question is the zone's SOA; the answer carries
    /// the current SOA as a hint), signed with `key` when given.
    static func message(zone: DNSName, soa: RRSet, id: UInt16, key: TSIGKey?) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        let w = MessageWriter()
        w.reset(buffer: buffer, limit: 4096 - TSIG.maxRecordSize)
        do {
            for _ in 0..<6 { try w.writeU16(0) }
            try w.writeName(zone)
            try w.writeU16(RRType.soa.rawValue)
            try w.writeU16(RRClass.in.rawValue)
            try w.writeRecord(owner: zone, type: .soa, ttl: soa.ttl, rdata: soa.rdatas.firstBytes)
        } catch {
            return []
        }
        w.setU16(id, at: 0)
        w.setU16(UInt16(4) << 11 | HeaderFlags.aa, at: 2)
        w.setU16(1, at: 4)
        w.setU16(1, at: 6)
        var length = w.position
        if let key {
            (length, _) = TSIG.sign(buffer, length: length, key: key, keyName: key.name, algorithm: key.algorithm.name,
                                    priorMAC: nil, first: true, originalID: id, error: 0, time: UInt64(time(nil)))
        }
        return Array(buffer[0..<length])
    }

    /// Sends until the target answers NOTIFY with the same ID (any RCODE ends the tries:
    /// the secondary heard it), at most `tries` times; logs the outcome.
    static func send(zone: DNSName, soa: RRSet, to: ListenAddress, key: TSIGKey?, log: Logger) {
        let serial = SOAData.serial(soa.rdatas.firstBytes)
        let meta: Logger.Metadata = ["zone": "\(zone)", "to": "\(to)", "serial": "\(serial)"]
        let fd = socket(to.address.isV4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            log.warning("NOTIFY not sent: no socket", metadata: meta)
            return
        }
        defer { close(fd) }
        let peer = SocketAddress(isV4: to.address.isV4, hi: to.address.hi, lo: to.address.lo, port: to.port)
        var reply = [UInt8](repeating: 0, count: 4096)
        var wait = firstWait
        for attempt in 1...tries {
            let id = UInt16.random(in: 0...UInt16.max)
            let m = message(zone: zone, soa: soa, id: id, key: key)
            guard !m.isEmpty else { return }
            _ = peer.withSockaddr { a, l in m.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a, l) } }
            let deadline = monotonicMilliseconds() + Int64(wait)
            // Bounded by the deadline; stray datagrams are skipped.
            while case let left = deadline - monotonicMilliseconds(), left > 0 {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, Int32(left)) > 0 else { break }
                let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n >= 12, reply[0] == UInt8(id >> 8), reply[1] == UInt8(truncatingIfNeeded: id), reply[2] & 0x80 != 0,
                      (reply[2] >> 3) & 0xF == 4 else { continue }
                let rcode = RCode(rawValue: UInt16(reply[3] & 0xF))
                var m2 = meta
                m2["rcode"] = "\(rcode)"
                m2["attempt"] = "\(attempt)"
                if rcode == .noError { log.info("NOTIFY acknowledged", metadata: m2) } else { log.warning("NOTIFY answered with an error", metadata: m2) }
                return
            }
            wait *= 2
        }
        log.warning("NOTIFY not acknowledged after \(tries) tries", metadata: meta)
    }
}
