import Config
import DNSWire
import Foundation
import Logging
import Synchronization
import Zones

/// Moves the served serial of some zones without a reload: the zones are built again from
/// the current snapshot's (`Zone.withSerial`) with the serial their `transfers.serial`
/// policy gives for their content now, published, recorded in the IXFR journal and
/// NOTIFY'd. Two causes: a signed zone's transferred signatures reached their refresh
/// point (`SignedTransfers`), or a `healthy` transfer view changed with health
/// (`HealthSerials`). Zone files and the configuration are not read again.
enum Reserial {
    static let log = Logger(label: "meridian.notify")

    static func apply(_ publisher: Publisher, zones wanted: Set<DNSName>, why: String) {
        let result = publisher.update { config, health in
            var zones = config.zones.zones
            var viewHealth = config.transferHealth
            var moved: [String] = []
            for (i, z) in zones.enumerated() {
                let origin = z.origin.lowercased()
                guard wanted.contains(origin) else { continue }
                let follows = config.transfers.followsHealth(zone: origin)
                guard let n = Runtime.servedSerial(z, router: config.router, transfers: config.transfers,
                                                   health: follows ? health : nil), n != z.serial else { continue }
                do {
                    zones[i] = try z.withSerial(n)
                } catch {
                    log.error("zone \(z.origin): serial not moved: \(error)")
                    continue
                }
                if follows { viewHealth[origin] = health }
                moved.append("\(z.origin) \(z.serial) -> \(n)")
            }
            guard !moved.isEmpty else { return nil }
            log.info("serial moved (\(why)): \(moved.joined(separator: ", "))")
            return config.with(zones: ZoneSet(zones: zones), transferHealth: viewHealth)
        }
        guard let (old, new) = result else { return }
        SignedTransfers.prepare(new)
        TransferJournal.shared.record(old: old, new: new)
        Notifier.reloaded(old: old, new: new, log: log)
    }
}

/// Serial bumps and NOTIFY for zones whose transfer view follows health (`gslb_view:
/// healthy`), damped: at most one bump per zone per `transfers.health_notify_interval`. A
/// change inside the interval is held, and when the interval ends the zone is written with
/// the health of that moment, so the last change always goes out and a flapping endpoint
/// costs the secondaries one transfer per interval.
final class HealthSerials: Sendable {
    static let shared = HealthSerials()
    private struct State {
        var last: [DNSName: Double] = [:]
        var pending: Set<DNSName> = []
    }
    private let state = Mutex(State())

    /// After a publish: each zone whose `healthy` view differs from the one its serial was
    /// decided with is bumped now, or at the end of its interval. Cheap when no zone follows
    /// health (one pass over the zones' settings). Never on the query path.
    func check(_ publisher: Publisher) {
        let config = publisher.config
        let health = publisher.store.load().health
        var changed: [DNSName] = []
        for zone in config.zones.zones {
            let origin = zone.origin.lowercased()
            guard config.transfers.followsHealth(zone: origin) else { continue }
            // Only the GSLB names' views can differ between the two healths.
            let before = Notifier.healthViewDigest(zone, router: config.router, transfers: config.transfers,
                                                   health: config.transferHealth[origin])
            let now = Notifier.healthViewDigest(zone, router: config.router, transfers: config.transfers, health: health)
            if before != now { changed.append(origin) }
        }
        guard !changed.isEmpty else { return }
        let interval = config.transfers.healthNotifyInterval
        let now = Date().timeIntervalSince1970
        var runNow: Set<DNSName> = []
        var wait: Double?
        state.withLock { s in
            for z in changed where !s.pending.contains(z) {
                let last = s.last[z] ?? 0
                if now - last >= interval {
                    runNow.insert(z)
                    s.last[z] = now
                } else {
                    s.pending.insert(z)
                    wait = max(wait ?? 0, last + interval - now)
                }
            }
        }
        if !runNow.isEmpty {
            let zones = runNow
            Thread { Reserial.apply(publisher, zones: zones, why: "health changed") }.start()
        }
        if let wait {
            Thread {
                Thread.sleep(forTimeInterval: wait)
                let due = self.state.withLock { s in
                    let t = Date().timeIntervalSince1970
                    let zones = s.pending
                    s.pending.removeAll()
                    for z in zones { s.last[z] = t }
                    return zones
                }
                Reserial.apply(publisher, zones: due, why: "health changed, held for health_notify_interval")
            }.start()
        }
    }
}
