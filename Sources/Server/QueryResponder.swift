import DNSWire

/// How a query arrived. TCP answers may be up to 65535 bytes; UDP answers are bounded
/// by the EDNS size the client offered (RFC 6891) or 512 without EDNS.
public enum Transport: Sendable { case udp, tcp }

/// Turns one query packet into one response packet. The socket layer owns one responder
/// per worker thread (built by a factory), so a responder may keep mutable scratch
/// buffers without locks; it must not block and should not allocate per query.
public protocol QueryResponder: AnyObject {
    /// Writes the response to `query` into `response` and returns its length, or 0 to send
    /// nothing (malformed headers, responses, rate-limited drops).
    func respond(query: UnsafeRawBufferPointer, client: IPAddress, transport: Transport,
                 response: UnsafeMutableRawBufferPointer) -> Int

    /// Called by an idle worker (on its wake tick): drop whatever a reload replaced, so an
    /// old configuration is freed within a tick of the reload rather than at this worker's
    /// next query.
    func refresh()

    /// The same, with the client's port and the address the query arrived on (for query
    /// logging). By default it calls the form above.
    func respond(query: UnsafeRawBufferPointer, client: IPAddress, port: UInt16, local: ListenAddress?,
                 transport: Transport, response: UnsafeMutableRawBufferPointer) -> Int

    /// Called by the TCP worker for AXFR and IXFR queries only (`ZoneTransfer.isTransferQuery`).
    func startTransfer(query: UnsafeRawBufferPointer, client: IPAddress) -> ZoneTransfer?
}

extension QueryResponder {
    public func refresh() {}

    public func respond(query: UnsafeRawBufferPointer, client: IPAddress, port: UInt16, local: ListenAddress?,
                        transport: Transport, response: UnsafeMutableRawBufferPointer) -> Int {
        respond(query: query, client: client, transport: transport, response: response)
    }

    /// A zone transfer (AXFR or IXFR over TCP) for `query`, or nil when this responder
    /// offers none (the query is then answered by `respond`, which refuses it).
    public func startTransfer(query: UnsafeRawBufferPointer, client: IPAddress) -> ZoneTransfer? { nil }
}
