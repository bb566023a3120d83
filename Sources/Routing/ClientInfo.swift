import DNSWire

/// Who a query is about: the EDNS Client Subnet address when the query carries a valid
/// option (RFC 7871 7.1.1), else the packet's source address.
///
///     let c = ClientInfo(source: IPAddress("198.51.100.7")!,
///                        subnet: ClientSubnet(family: 1, sourcePrefix: 24, scopePrefix: 0,
///                                             address: IPAddress("81.2.69.0")!))
///     c.address       // 81.2.69.0
///     c.reason        // .clientSubnet
public struct ClientInfo: Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        /// From a Client Subnet option with a non-zero source prefix.
        case clientSubnet
        /// No ECS option: the query's source address (usually a resolver's).
        case sourceAddress
        /// ECS with SOURCE PREFIX-LENGTH 0: the client asked not to be located (RFC 7871
        /// 7.1.2); the source address decides, and the answer is given scope 0 so it is
        /// cached for everyone, as a query without ECS would be.
        case clientSubnetZero
    }
    /// The address decisions use (IPv4-mapped IPv6 sources are unmapped).
    public var address: IPAddress
    /// Bits of `address` that are meaningful: the ECS source prefix, else the full length.
    public var sourcePrefix: Int
    public var reason: Reason

    /// Always inlined: the answering pipeline builds one per GSLB query (it was a call).
    @inlinable @inline(__always)
    public init(source: IPAddress, subnet: ClientSubnet?) {
        if let s = subnet, s.sourcePrefix > 0 {
            address = s.address.unmappingV4
            sourcePrefix = s.address.isV6 && address.isV4 ? max(0, Int(s.sourcePrefix) - 96) : Int(s.sourcePrefix)
            reason = .clientSubnet
        } else {
            address = source.unmappingV4
            sourcePrefix = address.bitLength
            reason = subnet == nil ? .sourceAddress : .clientSubnetZero
        }
    }

    /// Whether the response may carry a non-zero scope.
    public var allowsScope: Bool { reason != .clientSubnetZero }

    public var explanation: String {
        switch reason {
        case .clientSubnet: return "\(address)/\(sourcePrefix) from the query's EDNS Client Subnet option"
        case .sourceAddress: return "\(address), the query's source address (no EDNS Client Subnet)"
        case .clientSubnetZero: return "\(address), the query's source address (EDNS Client Subnet with source prefix 0: answer scope 0)"
        }
    }
}
