import Config
import Diagnostics
import Foundation
import Glibc
import Health
import Synchronization

/// One override as `overrides.json` holds it: the target by name (so a reordered endpoint
/// list keeps it right), the forced state as operators write it, and wall-clock times.
public struct SavedOverride: Codable, Sendable, Equatable {
    /// `endpoint:NAME` or `dc:NAME`.
    public var target: String
    /// `up`, `down` or `degraded:FACTOR`.
    public var state: String
    public var reason: String
    public var author: String
    /// Seconds since the epoch.
    public var created: Double
    /// Seconds since the epoch; nil: until cleared.
    public var expires: Double?

    public init(target: String, state: String, reason: String, author: String, created: Double, expires: Double?) {
        self.target = target; self.state = state; self.reason = reason
        self.author = author; self.created = created; self.expires = expires
    }

    init(_ o: OverrideStatus, model: ConfigModel) {
        self.init(target: o.target.name(in: model).description, state: stateText(o.state), reason: o.reason,
                  author: o.author, created: o.setAt, expires: o.expiresAt)
    }
}

extension SavedOverride {
    /// Sets this override on `monitor` with its original author, time and expiry; the reason
    /// it cannot be when its target or state does not fit `model`.
    func apply(to monitor: HealthMonitor, model: ConfigModel, now: Double) -> String? {
        guard let name = OverrideTargetName(parsing: target), let t = try? name.resolve(in: model),
              let st = parseHealthState(state) else {
            return "no such target or state in this configuration"
        }
        do {
            try monitor.setOverride(t, state: st, reason: reason, expiresIn: expires.map { $0 - now }, author: author, setAt: created)
            return nil
        } catch {
            return error.message
        }
    }
}

/// The operator overrides of one server, saved in `server.state_dir` so that a restart or a
/// crash (SIGKILL, power loss) does not silently bring a drained datacenter back.
///
///     let file = OverrideFile(directory: "/var/lib/meridian")
///     try file.save([SavedOverride(target: "dc:ams", state: "down", reason: "maintenance",
///                                  author: "ops@host", created: now, expires: now + 3600)])
///     let back = try file.load()          // [] when nothing was ever saved
///
/// Durability: the list is written whole to `overrides.json.tmp`, fsynced, renamed over
/// `overrides.json` and the folder is fsynced, so after a crash the file holds either the
/// old list or the new one, never a torn mix. Writers are serialized by a lock; each save
/// writes the list as it stands when the lock is taken, so the last save wins with the
/// newest list. Not on the query path: the control API and the reload thread call it.
public final class OverrideFile: Sendable {
    public let directory: String
    public var path: String { directory + "/overrides.json" }
    private let lock = Mutex<Void>(())

    public init(directory: String) { self.directory = directory }

    struct Contents: Codable {
        var version: Int
        var overrides: [SavedOverride]
    }

    /// The saved list; empty when the file does not exist. A file that exists but cannot be
    /// read or decoded is an error naming it (serve refuses to start rather than forget a drain).
    public func load() throws(InputFileError) -> [SavedOverride] {
        guard access(path, F_OK) == 0 else { return [] }
        let bytes = try InputFile.read(path, limit: InputLimits.configFileBytes)
        do {
            let c = try JSONDecoder().decode(Contents.self, from: Data(bytes))
            guard c.version == 1 else { throw InputFileError(path: path, reason: "version \(c.version) is not 1") }
            return c.overrides
        } catch let e as InputFileError {
            throw e
        } catch {
            throw InputFileError(path: path, reason: "not a saved override list (\(error)); move it away to start without the saved overrides")
        }
    }

    /// Replaces the saved list with `make()`'s result, computed under the writers' lock.
    public func save(_ make: () -> [SavedOverride]) throws(SystemError) {
        try lock.withLock { _ throws(SystemError) in try write(make()) }
    }

    public func save(_ list: [SavedOverride]) throws(SystemError) { try save { list } }

    /// Saves the overrides in force in `publisher`'s monitor; the error when that failed.
    public func saveCurrent(of publisher: Publisher) -> SystemError? {
        do {
            try save { () -> [SavedOverride] in
                guard let model = publisher.config.model, let m = publisher.monitor else { return [] }
                return m.overrides().map { SavedOverride($0, model: model) }
            }
            return nil
        } catch {
            return error
        }
    }

    private func write(_ list: [SavedOverride]) throws(SystemError) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and numbers cannot fail.
        let data = Array((try? enc.encode(Contents(version: 1, overrides: list))) ?? Data()) + [10]
        let tmp = path + ".tmp"
        let fd = try retryingEINTR("open", context: tmp) { open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640) }
        var ok = false
        defer {
            if !ok { closeSocket(fd); unlink(tmp) }
        }
        var off = 0
        while off < data.count {
            let n = data.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress! + off, raw.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", errno: errno, context: tmp)
            }
            off += n
        }
        _ = try retryingEINTR("fsync", context: tmp) { fsync(fd) }
        ok = true
        closeSocket(fd)
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw SystemError("rename", errno: e, context: "\(tmp) -> \(path)")
        }
        // The rename is durable only once the folder's entry is on disk.
        let dfd = try retryingEINTR("open", context: directory) { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { closeSocket(dfd) }
        _ = try retryingEINTR("fsync", context: directory) { fsync(dfd) }
    }

    /// Why `directory` cannot hold the saved overrides, nil when it can: an existing folder
    /// must be writable; a missing one is created by `serve`, so its nearest existing parent
    /// must be a writable folder.
    public static func directoryProblem(_ directory: String) -> String? {
        var st = stat()
        if stat(directory, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { return "\(directory) is not a folder" }
            guard access(directory, W_OK | X_OK) == 0 else { return "\(directory) is not writable (\(String(cString: strerror(errno))))" }
            return nil
        }
        var parent = (directory as NSString).deletingLastPathComponent
        while !parent.isEmpty, stat(parent, &st) != 0 {
            let up = (parent as NSString).deletingLastPathComponent
            if up == parent { break }
            parent = up
        }
        if parent.isEmpty { parent = "." }
        guard (st.st_mode & S_IFMT) == S_IFDIR, access(parent, W_OK | X_OK) == 0 else {
            return "\(directory) does not exist and cannot be created: \(parent) is not a writable folder"
        }
        return nil
    }

    /// Creates `directory` (and missing parents, mode 0750). When `serve` runs as root and
    /// will switch to `server.user`/`group`, the folder and the saved file are handed to them
    /// so the saves after the switch can write.
    public static func prepare(_ directory: String, user: String?, group: String?) throws(SystemError) {
        try makeFolder(directory)
        guard geteuid() == 0, user != nil || group != nil else { return }
        var uid = UInt32.max, gid = UInt32.max
        if let u = user, let ids = Privileges.lookup(user: u) { uid = ids.uid; gid = ids.gid }
        if let g = group, let id = Privileges.lookup(group: g) { gid = id }
        for p in [directory, directory + "/overrides.json"] where access(p, F_OK) == 0 {
            if chown(p, uid, gid) != 0 { throw SystemError("chown", errno: errno, context: p) }
        }
    }

    private static func makeFolder(_ directory: String) throws(SystemError) {
        var st = stat()
        guard stat(directory, &st) != 0 else { return }
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != directory { try makeFolder(parent) }
        if mkdir(directory, 0o750) != 0 && errno != EEXIST { throw SystemError("mkdir", errno: errno, context: directory) }
    }
}
