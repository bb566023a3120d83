import Foundation
import Synchronization
import Testing
@testable import Server

/// The reload coordinator with real threads and real blocking loads (usleep), short deadlines.
@Suite("Reloader")
struct ReloaderTests {
    final class Events: Sendable {
        let list = Mutex<[String]>([])
        func add(_ e: String) { list.withLock { $0.append(e) } }
        var all: [String] { list.withLock { $0 } }
        /// Polls every 10 ms until `e` was recorded or `seconds` pass.
        func waitFor(_ e: String, seconds: Double = 5) -> Bool {
            let until = Date().addingTimeInterval(seconds)
            while Date() < until { if all.contains(e) { return true }; usleep(10_000) }
            return all.contains(e)
        }
    }

    func reloader(_ ev: Events, deadline: Double, maxAbandoned: Int, loadSeconds: @escaping @Sendable (UInt64) -> Double) -> Reloader<UInt64> {
        Reloader<UInt64>(deadline: deadline, maxAbandoned: maxAbandoned,
                         load: { gen in ev.add("load \(gen)"); usleep(useconds_t(loadSeconds(gen) * 1e6)); return gen },
                         apply: { r, gen in ev.add("apply \(gen)=\(r)") },
                         onTimeout: { gen in ev.add("timeout \(gen)") },
                         onRefused: { n in ev.add("refused \(n)") },
                         onLate: { gen in ev.add("late \(gen)") })
    }

    @Test func aLoadPastTheDeadlineIsAbandonedAndLaterReloadsRun() {
        let ev = Events()
        let r = reloader(ev, deadline: 0.3, maxAbandoned: 1) { $0 == 1 ? 1.5 : 0 }
        r.start()
        defer { r.stop() }
        r.request()
        #expect(ev.waitFor("timeout 1"))
        // One abandoned load still blocks: the limit (1) refuses the next request.
        r.request()
        #expect(ev.waitFor("refused 1"))
        // Once it finished (late, dropped), reloads run again.
        #expect(ev.waitFor("late 1"))
        r.request()
        #expect(ev.waitFor("apply 2=2"))
        #expect(!ev.all.contains("apply 1=1"), "\(ev.all)")
    }

    @Test func requestsDuringAReloadCoalesceIntoOne() {
        let ev = Events()
        let r = reloader(ev, deadline: 10, maxAbandoned: 1) { _ in 0.4 }
        r.start()
        defer { r.stop() }
        r.request()
        #expect(ev.waitFor("load 1"))
        r.request()
        r.request()
        r.request()
        #expect(ev.waitFor("apply 2=2"))
        usleep(800_000)
        #expect(ev.all == ["load 1", "apply 1=1", "load 2", "apply 2=2"], "\(ev.all)")
    }
}
