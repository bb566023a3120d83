import DNSWire

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

/// One resource record as loaded from a master file. `rdata` is uncompressed wire form;
/// names inside it keep the case they were written in.
public struct ResourceRecord: Hashable, Sendable {
    public var name: DNSName
    public var type: RRType
    public var rrclass: RRClass
    public var ttl: UInt32
    public var rdata: [UInt8]
    /// Where the record was written, for error messages; nil for synthesized records.
    public var location: SourceLocation?

    public init(name: DNSName, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: [UInt8], location: SourceLocation? = nil) {
        self.name = name; self.type = type; self.rrclass = rrclass; self.ttl = ttl; self.rdata = rdata; self.location = location
    }
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

/// Zone-file and zone-content errors.
public typealias ZoneError = SourceError
public typealias ZoneErrors = SourceErrors
