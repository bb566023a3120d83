import DNSWire
import Foundation

/// Polls a DNS server until it answers over UDP and accepts TCP, or `timeout` passes,
/// or `child` exits. Any answer counts (REFUSED included): the point is that the sockets
/// are open and the query loop runs.
public func waitUntilAnswering(host: String, port: UInt16, child: ChildProcess, what: String, probeName: String,
                               timeout: Duration = .seconds(10)) async throws {
    let client = RawDNSClient(host: host, port: port)
    let probe = RawQuery(id: 0x5052, name: probeName, type: .soa).bytes()
    let deadline = ContinuousClock.now + timeout
    // Bounded by the deadline; each pass waits at most 200 ms for the probe.
    while ContinuousClock.now < deadline {
        if let status = child.exitStatus {
            throw ProcessError.exitedEarly(what, status, log: child.stdoutText + child.stderrText)
        }
        if let reply = try? client.udpExchange(probe, timeout: .milliseconds(200)), DNSReply(reply).qr,
           let c = try? client.tcpConnect(timeout: .milliseconds(500)) {
            c.close()
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw ProcessError.notReady(what, seconds: Int(timeout.components.seconds), log: child.stdoutText + child.stderrText)
}
