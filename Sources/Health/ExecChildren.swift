import CShim
import Glibc
import Platform
import Logging

/// Owns the processes of exec checks: every check runs as the leader of its own process
/// group, and the whole group is killed when the check finishes or times out, so a script's
/// background children (`sleep 100 &`) die with it.
///
/// A descendant that left the group (`setsid`) survives that kill. `meridian serve` makes
/// itself a child subreaper (`enableOrphanReaping`), so such orphans are reparented to it
/// rather than to init; a sweep kills and reaps every child that is not the leader of a
/// running check (the server starts no other child process). As PID 1 in a container this
/// also keeps zombies from piling up.
///
/// Reaping happens in one place: leaders by `finish` (after killing their group), everything
/// else by the sweep, which never waits on a registered leader. Both run under one lock, as
/// does the spawn, so a sweep can never take a check's fresh child for an orphan.
///
///     ExecChildren.enableOrphanReaping(logger: log)     // serve only, once
///     ...
///     ExecChildren.terminateAll()                        // on SIGTERM
public enum ExecChildren {
    /// Every field is guarded by `lock`.
    private final class Shared: @unchecked Sendable {
        let lock = Lock()
        let wake: Condition
        /// Leaders (= process group ids) of running checks.
        var running: Set<Int32> = []
        /// After `terminateAll`: no new check may start.
        var closed = false
        var reaping = false
        var kicked = false
        var logger: Logger?
        init() { wake = Condition(lock) }
    }
    private static let s = Shared()

    /// Spawns one check command (see `cshim_spawn_check`) and registers its pid, under the
    /// lock the sweep takes. Returns the pid, or nil and an errno.
    static func spawn(path: String, arguments: [String], environment: [String], output: Int32) -> (pid: pid_t?, errno: Int32) {
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) }; for p in envp { free(p) } }
        return s.lock.withLock {
            if s.closed { return (nil, ECANCELED) }
            var pid: Int32 = 0
            let rc = cshim_spawn_check(&pid, path, argv, envp, output)
            guard rc == 0 else { return (nil, rc) }
            s.running.insert(pid)
            return (pid, 0)
        }
    }

    /// Kills the check's whole process group and reaps its leader; returns the raw wait
    /// status. Call once per spawned pid, after the leader exited or when it timed out.
    /// When the leader exited, it is still a zombie here (see `cshim_child_exited`), so its
    /// pid, which is the group id, cannot have been reused.
    static func finish(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        s.lock.withLock {
            kill(-pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            s.running.remove(pid)
            if s.reaping {
                // A setsid child of this check is ours now; sweep it without waiting a round.
                s.kicked = true
                s.wake.signal()
            }
        }
        return status
    }

    /// Makes this process a child subreaper and starts the sweep thread. For `meridian
    /// serve` only: a sweep kills every child that is not a running check, which would be
    /// wrong in a process (a test runner) that has children of its own. Returns nil or why
    /// it failed (the checks still run; escaped processes then go to init).
    public static func enableOrphanReaping(logger: Logger) -> String? {
        let already: Bool = s.lock.withLock {
            let was = s.reaping
            s.reaping = true
            s.logger = logger
            return was
        }
        guard !already else { return nil }
        var problem: String? = nil
        if cshim_set_child_subreaper() != 0 { problem = "prctl(PR_SET_CHILD_SUBREAPER): \(errnoText(errno))" }
        do {
            _ = try spawnThread(name: "exec-reaper") {
                cshim_name_current_thread("exec-reaper")
                s.lock.lock()
                while !s.closed {
                    if !s.kicked { s.wake.wait(until: monotonicSeconds() + ProcessBounds.orphanSweepInterval) }
                    s.kicked = false
                    _ = sweepLocked()
                }
                s.lock.unlock()
            }
        } catch {
            s.lock.withLock { s.reaping = false }
            return (problem.map { $0 + "; " } ?? "") + "orphan sweep thread: \(error.message)"
        }
        return problem
    }

    /// On stop: no new check starts, the group of every running check is killed, and orphans
    /// are killed and reaped for at most `ProcessBounds.stopReapWindow` seconds.
    public static func terminateAll() {
        let deadline = monotonicSeconds() + ProcessBounds.stopReapWindow
        s.lock.withLock {
            s.closed = true
            for pid in s.running { kill(-pid, SIGKILL) }
            s.wake.broadcast()
        }
        while monotonicSeconds() < deadline {
            let left: Int = s.lock.withLock { (s.reaping ? sweepLocked() : 0) + s.running.count }
            if left == 0 { return }
            usleep(10_000)
        }
    }

    /// Kills and reaps every child that is not a running check's leader; returns how many
    /// were still there (killed but maybe not yet dead: the next sweep reaps them).
    private static func sweepLocked() -> Int {
        var found = 0
        for pid in childPIDs() where !s.running.contains(pid) {
            found += 1
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { found -= 1; continue }
            // Still running: an escaped descendant of an exec check.
            kill(pid, SIGKILL)
            s.logger?.warning("exec checks: killed orphaned process \(pid) (\(commandLine(pid))), which left its check's process group")
            if waitpid(pid, &status, WNOHANG) == pid { found -= 1 }
        }
        return found
    }

    /// This process's children, from /proc/self/task/*/children (one line of pids per
    /// thread; the kernel lists a child under the thread that forked it, or under any thread
    /// for an orphan it reparented). Falls back to scanning /proc/*/stat for our pid as the
    /// parent when the kernel lacks that file (CONFIG_PROC_CHILDREN).
    static func childPIDs() -> [Int32] {
        var out: [Int32] = []
        var sawFile = false
        for tid in numericEntries("/proc/self/task") {
            guard let text = readSmallFile("/proc/self/task/\(tid)/children") else { continue }
            sawFile = true
            out += text.split(separator: " ").compactMap { Int32($0.trimmingSpaces) }
        }
        if sawFile { return out }
        let me = getpid()
        for pid in numericEntries("/proc") {
            guard let stat = readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
            // After "pid (comm)": state, then ppid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, Int32(fields[1]) == me { out.append(pid) }
        }
        return out
    }

    private static func numericEntries(_ dir: String) -> [Int32] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [Int32] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let n = Int32(name) { out.append(n) }
        }
        return out
    }

    private static func commandLine(_ pid: Int32) -> String {
        guard let raw = readSmallFile("/proc/\(pid)/cmdline") else { return "?" }
        let words = raw.split(separator: "\0").map(String.init).joined(separator: " ")
        return words.isEmpty ? "?" : String(words.prefix(120))
    }

    /// Reads up to 64 KiB of a /proc file (their size is reported as 0, so no stat).
    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private extension Substring {
    var trimmingSpaces: Substring {
        var t = self
        while let c = t.last, c == "\n" || c == " " { t = t.dropLast() }
        return t
    }
}
