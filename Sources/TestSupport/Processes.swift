import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a finished command printed and how it ended.
public struct CommandOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// True when the command was killed because it outlived its timeout.
    public var timedOut: Bool
    /// stdout then stderr, for matching messages without caring where they went.
    public var combined: String { stdout + stderr }
}

public enum ProcessError: Error, CustomStringConvertible, Sendable {
    case notFound(String)
    case launchFailed(String, String)
    case exitedEarly(String, Int32, log: String)
    case notReady(String, seconds: Int, log: String)

    public var description: String {
        switch self {
        case .notFound(let what): return "not found: \(what)"
        case .launchFailed(let path, let why): return "cannot launch \(path): \(why)"
        case .exitedEarly(let what, let status, let log):
            return "\(what) exited with status \(status) before answering queries; its output:\n\(log)"
        case .notReady(let what, let seconds, let log):
            return "\(what) did not answer within \(seconds) s; its output:\n\(log)"
        }
    }
}

/// Runs a command to completion with a timeout, output captured through temporary files
/// (pipes could fill and block the child). Polls with `Task.sleep`, so waiting does not
/// hold a thread of the test runner's pool.
///
///     let out = try await runCommand("/usr/bin/dig", ["-v"], timeout: .seconds(5))
///     out.status   // 0
public func runCommand(_ path: String, _ arguments: [String], timeout: Duration = .seconds(20)) async throws -> CommandOutput {
    let p = try ChildProcess(path: path, arguments: arguments)
    let finished = await p.waitForExit(timeout: timeout)
    if !finished {
        p.signal(SIGKILL)
        _ = await p.waitForExit(timeout: .seconds(5))
    }
    return CommandOutput(status: p.exitStatus ?? -1, stdout: p.stdoutText, stderr: p.stderrText, timedOut: !finished)
}

/// Searches PATH and the usual sbin folders for a program.
public func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"]
    for d in dirs {
        let candidate = d + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// A child process whose stdout and stderr go to files in a private temporary folder.
/// Used for long-running servers (Meridian, NSD) and for one-shot commands.
///
/// Started with `posix_spawn` and an empty signal mask and default handlers: a thread of
/// the test runner may block SIGTERM, and a spawned child inherits that mask, which made
/// NSD ignore SIGTERM when it was started through Foundation's `Process`.
///
///     let p = try ChildProcess(path: "/usr/sbin/nsd", arguments: ["-d", "-c", conf])
///     await p.stop()      // SIGTERM, bounded wait, SIGKILL if needed
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let directory: URL
    public let stdoutPath: URL
    public let stderrPath: URL
    public let description: String
    /// The raw wait status once reaped; reaping happens once, under the lock.
    private let reaped = Mutex<Int32?>(nil)

    /// `environment` is laid over the test runner's environment.
    public init(path: String, arguments: [String], environment: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else { throw ProcessError.notFound(path) }
        directory = try makeTemporaryDirectory(prefix: "meridian-proc")
        stdoutPath = directory.appendingPathComponent("stdout")
        stderrPath = directory.appendingPathComponent("stderr")
        description = ([URL(fileURLWithPath: path).lastPathComponent] + arguments).joined(separator: " ")

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for e in envp { free(e) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw ProcessError.launchFailed(path, String(cString: strerror(rc))) }
        pid = child
    }

    /// Reaps the child if it has exited (non-blocking).
    private func poll() -> Int32? {
        reaped.withLock { state in
            if let s = state { return s }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { state = status }
            return state
        }
    }

    public var isRunning: Bool { poll() == nil }

    /// The exit code, or 128 + the signal number when a signal ended it (the shell's
    /// convention); nil while running.
    public var exitStatus: Int32? {
        guard let s = poll() else { return nil }
        let sig = s & 0x7F
        return sig == 0 ? (s >> 8) & 0xFF : 128 + sig
    }

    public var stdoutText: String { (try? String(contentsOf: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderrText: String { (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? "" }

    public func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// Waits for the process to end; false when it is still running after `timeout`.
    public func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Asks the process to stop with SIGTERM, then SIGKILL if it outlives `grace`.
    /// Returns the exit status.
    @discardableResult
    public func stop(grace: Duration = .seconds(5)) async -> Int32 {
        signal(SIGTERM)
        if await !waitForExit(timeout: grace) {
            signal(SIGKILL)
            _ = await waitForExit(timeout: .seconds(5))
        }
        return exitStatus ?? -1
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}

/// A fresh private folder under the system temporary directory.
public func makeTemporaryDirectory(prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
