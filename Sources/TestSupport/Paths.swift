import Foundation

/// Where things are when tests run.
public enum TestPaths {
    /// The package root, found from this source file's location (Sources/TestSupport/).
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// MaxMind's test databases: `<repo>/../shared/geoip` (CI and the main checkout); a
    /// worktree sits one level deeper, so the next few ancestors are tried too.
    public static let sharedGeoIP: String = {
        var dir = repositoryRoot
        for _ in 0..<3 {
            dir = dir.deletingLastPathComponent()
            let candidate = dir.appendingPathComponent("shared/geoip").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/geoip").path
    }()

    /// The folder holding the running test binary; SwiftPM builds `meridian` into the same
    /// folder, whatever `--scratch-path` was used.
    public static var testBinaryDirectory: URL? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            return Bundle.main.executableURL?.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: exe).deletingLastPathComponent()
    }

    /// The `meridian` binary to test, looked up in this order:
    /// 1. `$MERIDIAN_BIN`;
    /// 2. `meridian` next to the running test binary (`swift test` builds it there);
    /// 3. `<repo>/.build/debug/meridian` (a plain `swift build`).
    /// Returns nil when none exists, so a test can fail with a clear message.
    public static var meridianBinary: String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["MERIDIAN_BIN"], !env.isEmpty { candidates.append(env) }
        if let dir = testBinaryDirectory { candidates.append(dir.appendingPathComponent("meridian").path) }
        candidates.append(repositoryRoot.appendingPathComponent(".build/debug/meridian").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
