/// The one error type of the wire codec.
///
/// It carries a small `code` and the byte offset where decoding stopped; equality
/// compares the code only, so tests can match on the kind of failure. Errors are
/// built by `@inline(never)` factories so that the throwing paths stay out of the
/// hot loop and no `String` is formatted while decoding untrusted input.
public struct DNSWireError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: UInt8, Sendable {
        case truncated            // a read ran past the end of the message
        case labelTooLong         // RFC 1035 2.3.4: labels are 63 octets or less
        case nameTooLong          // RFC 1035 2.3.4: names are 255 octets or less
        case badPointer           // compression pointer forward, to itself, or out of range
        case tooManyPointers      // more compression pointers than a legal name can need
        case badLabelType         // 0b01/0b10 label types (RFC 6891 deprecated extended labels)
        case badQuestionCount     // RFC 9619: QDCOUNT must be 1
        case badOPT               // OPT with a non-root owner, twice, or outside the additional section
        case badOption            // a malformed EDNS option (ECS per RFC 7871 section 6)
        case trailingData         // bytes after the last record
        case bufferFull           // the output buffer cannot hold the record
        case badRData             // rdata whose length disagrees with its type
    }

    public let code: Code
    public let offset: Int

    public init(_ code: Code, at offset: Int) {
        self.code = code
        self.offset = offset
    }

    public static func == (a: DNSWireError, b: DNSWireError) -> Bool { a.code == b.code }
    public func hash(into h: inout Hasher) { h.combine(code) }

    public var description: String { "\(code) at byte \(offset)" }

    @inline(never) public static func truncated(_ at: Int) -> DNSWireError { .init(.truncated, at: at) }
    @inline(never) public static func labelTooLong(_ at: Int) -> DNSWireError { .init(.labelTooLong, at: at) }
    @inline(never) public static func nameTooLong(_ at: Int) -> DNSWireError { .init(.nameTooLong, at: at) }
    @inline(never) public static func badPointer(_ at: Int) -> DNSWireError { .init(.badPointer, at: at) }
    @inline(never) public static func tooManyPointers(_ at: Int) -> DNSWireError { .init(.tooManyPointers, at: at) }
    @inline(never) public static func badLabelType(_ at: Int) -> DNSWireError { .init(.badLabelType, at: at) }
    @inline(never) public static func badQuestionCount(_ at: Int) -> DNSWireError { .init(.badQuestionCount, at: at) }
    @inline(never) public static func badOPT(_ at: Int) -> DNSWireError { .init(.badOPT, at: at) }
    @inline(never) public static func badOption(_ at: Int) -> DNSWireError { .init(.badOption, at: at) }
    @inline(never) public static func trailingData(_ at: Int) -> DNSWireError { .init(.trailingData, at: at) }
    @inline(never) public static func bufferFull(_ at: Int) -> DNSWireError { .init(.bufferFull, at: at) }
    @inline(never) public static func badRData(_ at: Int) -> DNSWireError { .init(.badRData, at: at) }
}
