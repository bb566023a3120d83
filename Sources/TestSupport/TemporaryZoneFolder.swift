import Foundation

/// A private copy of a fixture folder that a test may change, for reload tests
/// (edit a zone, send SIGHUP, query again) without touching the fixtures.
///
///     let folder = try TemporaryZoneFolder(copying: fixtures)
///     try folder.write("example.com.zone", contents: newText)
///     server.signal(SIGHUP)
///     folder.remove()
public struct TemporaryZoneFolder: Sendable {
    public let path: String

    public init(copying source: String) throws {
        let dir = try makeTemporaryDirectory(prefix: "meridian-zones")
        for name in try FileManager.default.contentsOfDirectory(atPath: source) {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: dir.path + "/" + name)
        }
        path = dir.path
    }

    /// Replaces (or creates) one file atomically, so a server never reads half of it.
    public func write(_ fileName: String, contents: String) throws {
        try contents.write(toFile: path + "/" + fileName, atomically: true, encoding: .utf8)
    }

    public func read(_ fileName: String) throws -> String {
        try String(contentsOfFile: path + "/" + fileName, encoding: .utf8)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
