import Foundation
import Synchronization
import Testing

@testable import Server

/// Replaced snapshots are freed on the reaper's thread, never by the thread that published
/// the next one or adopted it (a million-record zone takes tens of milliseconds to free).
@Suite("Snapshot reaper")
struct SnapshotReaperTests {
    /// Records the name of the thread that frees it.
    final class Witness: @unchecked Sendable {
        let log: FreedLog
        init(_ log: FreedLog) { self.log = log }
        deinit {
            let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
            log.names.withLock { $0.append(name.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    final class FreedLog: Sendable { let names = Mutex<[String]>([]) }

    private func waitFor(_ log: FreedLog, count: Int) async throws -> [String] {
        for _ in 0..<200 {
            let n = log.names.withLock { $0 }
            if n.count >= count { return n }
            try await Task.sleep(for: .milliseconds(10))
        }
        return log.names.withLock { $0 }
    }

    @Test func retiredObjectsAreFreedOnTheReaperThreadAndTheCallersReferenceIsTaken() async throws {
        let reaper = SnapshotReaper<Witness>()
        let log = FreedLog()
        for _ in 0..<5 {
            var old: Witness? = Witness(log)
            reaper.retire(&old)
            #expect(old == nil, "retire takes the caller's reference over")
        }
        var none: Witness? = nil
        reaper.retire(&none) // nothing to retire: no effect
        let names = try await waitFor(log, count: 5)
        #expect(names.count == 5, "\(names)")
        #expect(names.allSatisfy { $0 == "snapshot-reaper" }, "freed on: \(names)")
    }

    @Test func retiredWhileTheReaperIsBusyStillGetFreed() async throws {
        let reaper = SnapshotReaper<Witness>()
        let log = FreedLog()
        // Retired from several threads at once, as the publisher and the workers do.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<50 {
                        var old: Witness? = Witness(log)
                        reaper.retire(&old)
                    }
                }
            }
        }
        let names = try await waitFor(log, count: 200)
        #expect(names.count == 200)
        #expect(Set(names) == ["snapshot-reaper"], "\(Set(names))")
    }
}
