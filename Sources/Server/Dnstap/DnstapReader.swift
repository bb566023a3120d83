import DNSWire
import Foundation
import SwiftProtobuf

/// One dnstap message as `meridian report` needs it.
public struct DnstapEntry: Sendable {
    /// `AUTH_QUERY`, `AUTH_RESPONSE` (other message types are skipped).
    public var response: Bool
    /// Unix time: the response time for responses, the query time otherwise.
    public var time: Double
    public var client: IPAddress?
    /// Meridian's `extra` text (`gslb=... dc=...`), nil for answers that were not GSLB decisions.
    public var extra: String?

    /// One `key=value` of `extra`.
    public func extraValue(_ key: String) -> String? {
        guard let extra else { return nil }
        for part in extra.split(separator: " ") where part.hasPrefix(key + "=") { return String(part.dropFirst(key.count + 1)) }
        return nil
    }
}

public struct DnstapReadError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Reads a Frame Streams file of dnstap messages (what `server.dnstap.file` or
/// `fstrm_capture` writes): control frames are skipped, each data frame is decoded.
public enum DnstapReader {
    /// Files larger than this are refused (the whole file is read into memory).
    public static let maxBytes = 1 << 30

    public static func read(path: String) throws(DnstapReadError) -> [DnstapEntry] {
        let data: Data
        do {
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            guard size <= maxBytes else { throw DnstapReadError(description: "\(path): larger than \(maxBytes) bytes") }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch let e as DnstapReadError {
            throw e
        } catch {
            throw DnstapReadError(description: "\(path): \(error.localizedDescription)")
        }
        let bytes = [UInt8](data)
        func u32(_ i: Int) -> Int? {
            guard i + 4 <= bytes.count else { return nil }
            return Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        }
        var out: [DnstapEntry] = []
        var i = 0
        while i < bytes.count {
            guard let length = u32(i) else { throw DnstapReadError(description: "\(path): truncated frame at byte \(i)") }
            if length == 0 {
                guard let control = u32(i + 4), i + 8 + control <= bytes.count else {
                    throw DnstapReadError(description: "\(path): truncated control frame at byte \(i)")
                }
                i += 8 + control
                continue
            }
            guard i + 4 + length <= bytes.count else { throw DnstapReadError(description: "\(path): truncated data frame at byte \(i)") }
            let frame = Data(bytes[(i + 4)..<(i + 4 + length)])
            i += 4 + length
            guard let d = try? Dnstap_Dnstap(serializedBytes: frame), d.hasMessage else { continue }
            let m = d.message
            guard m.type == .authQuery || m.type == .authResponse else { continue }
            let response = m.type == .authResponse
            let sec = response && m.hasResponseTimeSec ? m.responseTimeSec : m.queryTimeSec
            let nsec = response && m.hasResponseTimeNsec ? m.responseTimeNsec : m.queryTimeNsec
            out.append(DnstapEntry(response: response, time: Double(sec) + Double(nsec) / 1e9,
                                   client: m.hasQueryAddress ? IPAddress(bytes: [UInt8](m.queryAddress)) : nil,
                                   extra: d.hasExtra ? String(decoding: d.extra, as: UTF8.self) : nil))
        }
        return out
    }
}
