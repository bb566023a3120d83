import Foundation
import Glibc

/// What a fleet test starts (etcd members, `meridian` instances, TLS files, folders, anything
/// else with a stop of its own), kept as it is started and stopped in one place when the test
/// ends, also when it fails or throws half-way.
///
///     try await FleetFixture.run { fx in
///         let etcd = fx.keep(try await EtcdServer.start())
///         let folder = fx.remove(try makeTemporaryDirectory(prefix: "meridian-fleet"))
///         let ns1 = fx.keep(try await MeridianProcess.start(...))
///         ...
///     }
public final class FleetFixture {
    private var servers: [MeridianProcess] = []
    private var members: [EtcdServer] = []
    private var tlsFiles: [EtcdTLSFiles] = []
    private var paths: [URL] = []
    private var others: [() -> Void] = []

    private init() {}

    /// Runs `body` with a new fixture, then stops and removes everything kept in it: the
    /// instances first (continued if a test stopped them with SIGSTOP), then etcd with its
    /// data, then the files, then the rest.
    public static func run<T>(_ body: (FleetFixture) async throws -> T) async throws -> T {
        let fx = FleetFixture()
        let result: T
        do { result = try await body(fx) } catch {
            await fx.cleanup()
            throw error
        }
        await fx.cleanup()
        return result
    }

    @discardableResult public func keep(_ p: MeridianProcess) -> MeridianProcess { servers.append(p); return p }
    @discardableResult public func keep(_ e: EtcdServer) -> EtcdServer { members.append(e); return e }
    @discardableResult public func keep(_ e: [EtcdServer]) -> [EtcdServer] { members += e; return e }
    @discardableResult public func keep(_ f: EtcdTLSFiles) -> EtcdTLSFiles { tlsFiles.append(f); return f }
    /// A file or folder removed at the end.
    @discardableResult public func remove(_ path: URL) -> URL { paths.append(path); return path }
    /// Anything else to stop at the end (a backend, a listener).
    public func onCleanup(_ stop: @escaping () -> Void) { others.append(stop) }

    private func cleanup() async {
        for p in servers {
            p.signal(SIGCONT)
            await p.stop()
        }
        for m in members { await m.stop(removeData: true) }
        for f in tlsFiles { f.remove() }
        for u in paths { try? FileManager.default.removeItem(at: u) }
        for stop in others { stop() }
    }
}
