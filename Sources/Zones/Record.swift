import DNSWire
import Diagnostics

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

/// Zone-file and zone-content errors.
public typealias ZoneError = SourceError
public typealias ZoneErrors = SourceErrors
