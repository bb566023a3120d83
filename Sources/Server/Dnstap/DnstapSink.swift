import Config
import Foundation
import Glibc
import Logging
import Platform
import SwiftProtobuf
import Synchronization

/// Query logging through dnstap: every worker queues the queries it answers in its own
/// `DnstapRing` (never waiting, dropping and counting when the ring is full), and one writer
/// thread turns them into dnstap protobuf messages and writes them as Frame Streams to a
/// file or a collector's Unix socket. A missing or dead collector never stops answering:
/// the writer reconnects with backoff while the rings fill and drop.
///
///     let sink = DnstapSink(settings: s, logger: log)
///     sink.start()
///     let ring = sink.makeRing()          // one per worker, off the query path
///     ring.push(header, query: q, response: r)
///     sink.stop()                         // drains, writes STOP, joins
public final class DnstapSink: @unchecked Sendable {
    public let settings: DnstapSettings
    private let rings = Mutex<[DnstapRing]>([])
    private let stopping = Atomic<Bool>(false)
    private let logger: Logger
    private var thread: JoinableThread?
    private let identity: Data
    private let version: Data
    /// Messages written to the output, and records taken from the rings while no output was
    /// open (after a write error) and thrown away.
    public let written = Atomic<UInt64>(0)
    public let lost = Atomic<UInt64>(0)
    /// The configuration the workers answer from, to name the decision in `extra`.
    private let decisionNames = Mutex<(model: ConfigModel, paths: PolicyPaths)?>(nil)
    /// Outputs opened (the first connection and every reconnection).
    public let connections = Atomic<UInt64>(0)
    /// How long the writer sleeps when the rings are empty.
    static let idleMicroseconds: UInt32 = 10_000
    static let firstBackoff = 0.1, maxBackoff = 5.0

    public init(settings: DnstapSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        identity = Data((settings.identity ?? ProcessInfo.processInfo.hostName).utf8)
        version = Data((settings.version ?? "meridian \(MeridianVersion.string)").utf8)
    }

    /// The configuration being published (each load calls this): records are described
    /// with its names. A record queued just before a reload may be described with the new one.
    func adopt(model: ConfigModel?) {
        decisionNames.withLock { $0 = model.map { ($0, PolicyPaths($0)) } }
    }

    /// The Meridian `extra` text of a GSLB answer: `gslb=NAME node=PATH endpoint=EP dc=DC scope=N`
    /// (nil for other answers).
    func extra(_ h: DnstapRecordHeader) -> Data? {
        guard h.gslbName >= 0 else { return nil }
        return decisionNames.withLock { d -> Data? in
            guard let (model, paths) = d, Int(h.gslbName) < model.names.count else { return nil }
            var text = "gslb=\(model.names[Int(h.gslbName)].owner) node=\(paths.path(of: Int(h.node)))"
            if h.endpoint >= 0 && Int(h.endpoint) < model.endpoints.count {
                let ep = model.endpoints[Int(h.endpoint)]
                text += " endpoint=\(ep.name) dc=\(ep.datacenter.map { model.datacenters[$0].name } ?? "none")"
            }
            text += " scope=\(h.scope)"
            return Data(text.utf8)
        }
    }

    /// A ring for one worker; the writer drains it for as long as the sink runs.
    func makeRing() -> DnstapRing {
        let r = DnstapRing(sample: settings.sample, maxPerSecond: settings.maxPerSecond,
                           logQueries: settings.logQueries, logResponses: settings.logResponses)
        rings.withLock { $0.append(r) }
        return r
    }

    /// Records dropped because a worker's ring was full, summed over the workers.
    public var dropped: UInt64 { rings.withLock { $0.reduce(0) { $0 &+ $1.dropped.load(ordering: .relaxed) } } }
    /// Sampled queries not logged because a worker reached `max_per_second`.
    public var capped: UInt64 { rings.withLock { $0.reduce(0) { $0 &+ $1.capped.load(ordering: .relaxed) } } }
    /// Records queued by the workers.
    public var queued: UInt64 { rings.withLock { $0.reduce(0) { $0 &+ $1.queued.load(ordering: .relaxed) } } }

    public func start() throws(SystemError) {
        thread = try JoinableThread(name: "dnstap") { [self] in run() }
    }

    /// Stops the writer after it wrote what the rings hold (when an output is open), sent
    /// STOP (and on a socket waited for FINISH), and closed the output.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        thread?.join()
        thread = nil
    }

    private var outputName: String {
        switch settings.output {
        case .file(let p): return "file \(p)"
        case .socket(let p): return "socket \(p)"
        }
    }

    private func open() throws(SystemError) -> FrameStreamOutput {
        switch settings.output {
        case .file(let p): return try FrameStreamOutput.file(p)
        case .socket(let p): return try FrameStreamOutput.socket(p)
        }
    }

    private func run() {
        var output: FrameStreamOutput?
        var backoff = Self.firstBackoff
        var nextAttempt = 0.0
        var failures = 0
        var pending: [UInt8] = []
        while true {
            let stop = stopping.load(ordering: .relaxed)
            if output == nil && monotonicSeconds() >= nextAttempt && !stop {
                do {
                    output = try open()
                    connections.add(1, ordering: .relaxed)
                    logger.info("dnstap: writing to \(outputName)")
                    backoff = Self.firstBackoff
                    failures = 0
                } catch {
                    failures += 1
                    // The 1st, 2nd, 4th, 8th... failure is logged: a long outage does not flood the log.
                    if failures & (failures - 1) == 0 {
                        logger.warning("dnstap: cannot open \(outputName): \(error); retrying in \(backoff) s (queries are still answered, log messages are dropped)")
                    }
                    nextAttempt = monotonicSeconds() + backoff
                    backoff = min(backoff * 2, Self.maxBackoff)
                }
            }
            var moved = 0
            if let out = output {
                for ring in rings.withLock({ $0 }) {
                    while let record = ring.pop() {
                        moved += 1
                        for m in messages(record) {
                            do { FrameStream.appendData(try m.serializedData(), to: &pending) } catch {}
                        }
                        if pending.count >= 1 << 16 { flush(&pending, out, &output, &nextAttempt, &backoff) }
                        if output == nil { break }
                    }
                    if output == nil { break }
                }
                if output != nil && !pending.isEmpty { flush(&pending, out, &output, &nextAttempt, &backoff) }
            }
            if stop {
                output?.finish()
                return
            }
            if moved == 0 { usleep(Self.idleMicroseconds) }
        }
    }

    private func flush(_ pending: inout [UInt8], _ out: FrameStreamOutput, _ output: inout FrameStreamOutput?,
                       _ nextAttempt: inout Double, _ backoff: inout Double) {
        let frames = UInt64(countFrames(pending))
        do {
            try out.write(pending)
            written.add(frames, ordering: .relaxed)
        } catch {
            logger.warning("dnstap: writing to \(outputName) failed: \(error); reconnecting")
            lost.add(frames, ordering: .relaxed)
            out.close()
            output = nil
            nextAttempt = monotonicSeconds() + backoff
        }
        pending.removeAll(keepingCapacity: true)
    }

    private func countFrames(_ bytes: [UInt8]) -> Int {
        var i = 0, n = 0
        while i + 4 <= bytes.count {
            let l = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            i += 4 + l
            n += 1
        }
        return n
    }

    /// The AUTH_QUERY and AUTH_RESPONSE messages of one record.
    func messages(_ r: (header: DnstapRecordHeader, query: [UInt8], response: [UInt8])) -> [Dnstap_Dnstap] {
        let h = r.header
        var base = Dnstap_Message()
        let v4 = h.family == 4
        base.socketFamily = v4 ? .inet : .inet6
        base.socketProtocol = h.flags & DnstapRecordHeader.tcp != 0 ? .tcp : .udp
        base.queryAddress = Self.addressBytes(h.clientHi, h.clientLo, v4: v4)
        base.queryPort = UInt32(h.clientPort)
        base.responseAddress = Self.addressBytes(h.localHi, h.localLo, v4: v4)
        base.responsePort = UInt32(h.localPort)
        base.queryTimeSec = UInt64(max(0, h.querySec))
        base.queryTimeNsec = UInt32(clamping: h.queryNsec)
        var out: [Dnstap_Dnstap] = []
        let extra = extra(h)
        func wrap(_ m: Dnstap_Message) -> Dnstap_Dnstap {
            var d = Dnstap_Dnstap()
            d.identity = identity
            d.version = version
            if let extra { d.extra = extra }
            d.type = .message
            d.message = m
            return d
        }
        if h.flags & DnstapRecordHeader.hasQuery != 0 {
            var m = base
            m.type = .authQuery
            m.queryMessage = Data(r.query)
            out.append(wrap(m))
        }
        if h.flags & DnstapRecordHeader.hasResponse != 0 {
            var m = base
            m.type = .authResponse
            m.responseTimeSec = UInt64(max(0, h.responseSec))
            m.responseTimeNsec = UInt32(clamping: h.responseNsec)
            m.responseMessage = Data(r.response)
            out.append(wrap(m))
        }
        return out
    }

    /// The 4 or 16 bytes of an address kept as `IPAddress` keeps them (network order in two words).
    static func addressBytes(_ hi: UInt64, _ lo: UInt64, v4: Bool) -> Data {
        var words = (hi.bigEndian, lo.bigEndian)
        return withUnsafeBytes(of: &words) { Data($0[0..<(v4 ? 4 : 16)]) }
    }
}
