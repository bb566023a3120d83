import Foundation
import Health
import Logging
import Platform
import Synchronization

/// Every bound of the control API, in one place (the operations guide lists them). Each
/// is far above what the CLI, curl, Prometheus or a kubelet probe need, and low enough that a
/// hostile or broken client cannot exhaust threads, memory or the log.
///
///     guard body.count <= ControlLimits.maxBodyBytes else { ... }
public enum ControlLimits {
    /// Seconds from accept to the end of the request head (the whole head, not per byte).
    /// Real clients send the head in one segment within milliseconds; 5 s allows for a slow
    /// link and bounds how long a slowloris client holds a slot.
    public static let headDeadline: Double = 5
    /// Seconds from the end of the head to the end of the body. Bodies are at most
    /// `maxBodyBytes` (a few segments), so 5 s is generous.
    public static let bodyDeadline: Double = 5
    /// Seconds a response may take to send to a client that does not read (the largest reply,
    /// /metrics, is a few hundred KiB at most).
    public static let sendTimeout: Double = 5
    /// Seconds to drain unread input after an error reply before closing (lingering close: a
    /// close with unread input sends RST, which can destroy the reply before it is read).
    public static let lingerTimeout: Double = 0.5
    /// Connections served at once (one thread each).
    public static let maxConnections = 32
    /// Connections from one client address at once. With `maxConnections` 32, one address can
    /// hold a quarter of the slots; a new connection from an address at its limit evicts that
    /// address's oldest connection still reading its request (or is refused when none is).
    public static let maxConnectionsPerAddress = 8
    /// Request line plus headers, in bytes (16 KiB, as common proxies default to 8-16 KiB).
    public static let maxHeaderBytes = 16 * 1024
    /// Header lines per request (clients here send fewer than ten).
    public static let maxHeaderCount = 64
    /// Request body (an override is under 1 KiB of JSON).
    public static let maxBodyBytes = 64 * 1024
    /// Longest override expiry, in seconds: 365 days. Anything meant to last longer is a
    /// configuration change, not an override; the bound also keeps every date computed from
    /// it (wall clock + expiry, in Double and Int seconds) far from overflow.
    public static let maxOverrideExpiry: Double = 365 * 86_400
    /// Longest override reason, in UTF-8 bytes: a sentence or a ticket link, on one log line.
    public static let maxReasonBytes = 512
    /// Largest control token file, in bytes (a token is tens of bytes).
    public static let maxTokenFileBytes = 4096
    /// Seconds between two log lines about refused, evicted or timed-out connections of one
    /// kind; the lines in between are counted and the count is logged with the next one.
    public static let connectionLogInterval: Double = 10
}

/// The rules an override's operator input must meet, shared by the API (a 400) and the CLI
/// (an error before sending): one place for each rule.
///
///     if let problem = OverrideRules.reasonProblem(reason) { return .text(400, problem + "\n") }
public enum OverrideRules {
    /// Why `reason` is refused, nil when it is fine: empty, longer than `maxReasonBytes`, or
    /// containing a control character (C0, DEL, C1: they would forge log lines or drive the
    /// terminal reading the log), a line or paragraph separator, or a bidirectional override.
    public static func reasonProblem(_ reason: String) -> String? {
        if reason.trimmingCharacters(in: .whitespaces).isEmpty {
            return "\"reason\" is required: say why, it shows in every status view and log"
        }
        return textProblem(reason, field: "reason")
    }

    /// Why `author` is refused: the same rules as the reason's (it is logged and shown too).
    public static func authorProblem(_ author: String) -> String? {
        if author.trimmingCharacters(in: .whitespaces).isEmpty { return "\"author\" must not be empty when given" }
        return textProblem(author, field: "author")
    }

    private static func textProblem(_ text: String, field: String) -> String? {
        if text.utf8.count > ControlLimits.maxReasonBytes {
            return "\"\(field)\" is \(text.utf8.count) bytes; at most \(ControlLimits.maxReasonBytes) (UTF-8)"
        }
        if let bad = text.unicodeScalars.first(where: needsEscapingInLog) {
            return "\"\(field)\" contains the control character \(logQuoted(String(bad))); use printable text on one line"
        }
        return nil
    }

    /// Why an expiry of `seconds` is refused, nil when it is within (0, maxOverrideExpiry].
    public static func expiryProblem(_ seconds: Double) -> String? {
        guard seconds.isFinite, seconds > 0 else { return "must be a number of seconds > 0" }
        guard seconds <= ControlLimits.maxOverrideExpiry else {
            return "\(seconds) s is too long: at most 365d (\(Int(ControlLimits.maxOverrideExpiry)) s); longer than that is a configuration change"
        }
        return nil
    }
}

/// Logs one line per kind of event every `interval` seconds at most, and counts the lines it
/// held back, so a flood of bad connections cannot flood the log.
final class LogThrottle: Sendable {
    private let interval: Double
    private let state = Mutex<[String: (last: Double, held: Int)]>([:])

    init(interval: Double) { self.interval = interval }

    func warning(_ logger: Logger, kind: String, _ message: @autoclosure () -> String) {
        let now = monotonicSeconds()
        let held: Int? = state.withLock { st in
            let e = st[kind] ?? (last: -Double.infinity, held: 0)
            if now - e.last < interval { st[kind] = (e.last, e.held + 1); return nil }
            st[kind] = (now, 0)
            return e.held
        }
        guard let h = held else { return }
        logger.warning("\(message())\(h > 0 ? " (\(h) more like it since the last one)" : "")")
    }
}
