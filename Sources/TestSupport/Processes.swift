import Foundation

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
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: `process` is only started in init and then read through Foundation's
    // thread-safe accessors; the paths are immutable.
    private let process = Process()
    public let directory: URL
    public let stdoutPath: URL
    public let stderrPath: URL
    public let description: String

    public init(path: String, arguments: [String], environment: [String: String]? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else { throw ProcessError.notFound(path) }
        directory = try makeTemporaryDirectory(prefix: "meridian-proc")
        stdoutPath = directory.appendingPathComponent("stdout")
        stderrPath = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutPath.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        description = ([URL(fileURLWithPath: path).lastPathComponent] + arguments).joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: stdoutPath)
        process.standardError = try FileHandle(forWritingTo: stderrPath)
        do { try process.run() } catch { throw ProcessError.launchFailed(path, "\(error)") }
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    /// The exit status (or the signal number for a signalled exit), nil while running.
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }
    public var stdoutText: String { (try? String(contentsOf: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderrText: String { (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? "" }

    public func signal(_ sig: Int32) {
        if process.isRunning { kill(process.processIdentifier, sig) }
    }

    /// Waits for the process to end; false when it is still running after `timeout`.
    public func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
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
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// A fresh private folder under the system temporary directory.
public func makeTemporaryDirectory(prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
