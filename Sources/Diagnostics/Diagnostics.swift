/// What every loader shares (master files, the YAML configuration, CIDR maps, MaxMind
/// databases, token and state files): source locations and load errors, each read as
/// `file:line:column: message` as editors and `meridian check` expect, and `InputFile`, the
/// one way to open an input file. Standard library and libc only, so every module can
/// depend on it.

/// Where a token came from: `file:line:column`, 1-based, as editors expect.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file; self.line = line; self.column = column
    }
    public var description: String { "\(file):\(line):\(column)" }
}

/// An error in an input file (zone file, zone content, YAML configuration), printed as
/// `file:line:column: message` like every Meridian input error.
///
///     SourceError(SourceLocation(file: "zones/example.com.zone", line: 12, column: 5), "bad TTL \"1x\"")
public struct SourceError: Error, Hashable, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public init(_ location: SourceLocation, _ message: String) {
        self.location = location; self.message = message
    }
    public var description: String { "\(location): \(message)" }
}

/// Every error found in one pass; `meridian check` prints them all.
public struct SourceErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [SourceError]
    public init(_ errors: [SourceError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
