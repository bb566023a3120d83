import DNSWire
import Platform

/// One address and port the server listens on, for both UDP and TCP.
/// IPv6 addresses are written in brackets so the port is unambiguous (RFC 3986 section 3.2.2).
///
///     let a = try ListenAddress("127.0.0.1:5353")
///     let b = try ListenAddress("[::]:53")         // wildcard, IPv6 only (IPV6_V6ONLY)
///     print(a.address, a.port, b)                  // 127.0.0.1 5353 [::]:53
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    /// Port 0 asks the kernel for a free port; `DNSServer.boundAddresses` has the real one.
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address; self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port`; the port is required.
    public init(_ text: String) throws(ListenAddressError) {
        func fail(_ why: String) -> ListenAddressError { ListenAddressError(input: text, reason: why) }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("missing ']' after IPv6 address") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw fail("missing ':port' after ']'") }
            portPart = rest.dropFirst()
            guard hostPart.contains(":") else { throw fail("brackets are only for IPv6 addresses") }
        } else {
            guard let colon = text.firstIndex(of: ":") else { throw fail("missing ':port' (for example 127.0.0.1:53)") }
            if text[text.index(after: colon)...].contains(":") {
                throw fail("an IPv6 address needs brackets, for example [::1]:53")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty else { throw fail("missing address before the port") }
        guard let ip = IPAddress(hostPart) else { throw fail("'\(hostPart)' is not an IP address") }
        guard !portPart.isEmpty else { throw fail("missing port number") }
        guard portPart.allSatisfy({ $0.isASCII && $0.isNumber }), portPart.count <= 5,
              let p = Int(portPart), p <= 65535 else {
            throw fail("port '\(portPart)' is not a number from 0 to 65535")
        }
        self.init(address: ip, port: UInt16(p))
    }

    public var description: String {
        address.isV6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}

/// Why a listen address string was rejected, quoting the input.
public struct ListenAddressError: Error, Sendable, Equatable, CustomStringConvertible {
    public let input: String
    public let reason: String
    public var description: String { "bad listen address \"\(input)\": \(reason)" }
}

extension ListenAddress {
    /// The `sockaddr` form, for clients of a listen address (the drill, the control client, tests).
    public var socketAddress: SocketAddress {
        SocketAddress(isV4: address.isV4, hi: address.hi, lo: address.lo, port: port)
    }
}
