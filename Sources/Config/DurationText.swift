/// The one duration grammar of Meridian, shared by the YAML config, the CLI (`--poll`,
/// `--timeout`, `--for`, `--expires`), the drill and the control client, and the one way
/// durations are printed.
///
/// Grammar: a decimal number (ASCII digits and `.`, no sign, no exponent) with an optional
/// unit: `ms`, `s`, `m`, `h`, `d`; no unit means seconds. Spaces and tabs around it are
/// ignored. The value is finite and >= 0; each caller bounds it for its use (an override
/// expiry: `OverrideRules.expiryProblem`, at most 365 days and > 0).
///
///     DurationText.parse("500ms")        // 0.5
///     DurationText.parse("5m")           // 300
///     DurationText("10m")?.seconds       // 600, with .text "10m" for messages
///     DurationText.format(90)            // "90s"
///     DurationText.format(0.104)         // "0.104s"
public struct DurationText: Sendable, Equatable, CustomStringConvertible {
    /// The text as written (for error messages).
    public let text: String
    public let seconds: Double

    public init?(_ text: String) {
        guard let s = DurationText.parse(text) else { return nil }
        self.text = text
        self.seconds = s
    }

    public var description: String { text }

    static let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]

    /// Seconds, or nil when `text` is not in the grammar.
    public static func parse(_ text: String) -> Double? {
        var t = Substring(text)
        while t.first == " " || t.first == "\t" { t = t.dropFirst() }
        while t.last == " " || t.last == "\t" { t = t.dropLast() }
        var multiplier = 1.0
        // "ms" is tried before "s", and "m" must not take the "m" of "ms".
        for (u, m) in units where t.hasSuffix(u) {
            t = t.dropLast(u.count)
            multiplier = m
            break
        }
        guard !t.isEmpty, t.allSatisfy({ ("0"..."9").contains($0) || $0 == "." }), let v = Double(t) else { return nil }
        let s = v * multiplier
        return s.isFinite ? s : nil
    }

    /// How `format` writes a number of seconds.
    public enum Style: Sendable {
        /// Whole seconds as `30s`, anything else to the millisecond: `0.104s` (tables,
        /// budgets, the drill; operators compare these with an rto in seconds).
        case seconds
        /// Always to the millisecond: `2.000s` (check timeouts and log lines).
        case milliseconds
        /// Rounded to the second and shortened for a status table: `59s`, `119s`, `2m`,
        /// `2m30s`, `2h`, `2h5m`, `3d`; negative and NaN print as `0s`.
        case compact
    }

    /// Never traps: values beyond 10^12 s (and, except in `.compact`, non-finite ones)
    /// print as Swift prints the number.
    public static func format(_ s: Double, style: Style = .seconds) -> String {
        switch style {
        case .seconds:
            if s == s.rounded() && abs(s) < 1e12 { return "\(Int(s))s" }
            return format(s, style: .milliseconds)
        case .milliseconds:
            guard s.isFinite, abs(s) < 1e12 else { return "\(s)s" }
            let ms = Int((s * 1000).rounded())
            let frac = abs(ms % 1000)
            let pad = frac < 10 ? "00" : (frac < 100 ? "0" : "")
            return "\(ms < 0 && ms > -1000 ? "-" : "")\(ms / 1000).\(pad)\(frac)s"
        case .compact:
            // Clamped before the conversion: a NaN or a huge value must not trap.
            let v = Int(min(max(0, s.isNaN ? 0 : s), 1e12).rounded())
            if v < 120 { return "\(v)s" }
            if v < 7200 { return "\(v / 60)m\(v % 60 == 0 ? "" : "\(v % 60)s")" }
            if v < 172_800 { return "\(v / 3600)h\(v % 3600 / 60 == 0 ? "" : "\(v % 3600 / 60)m")" }
            return "\(v / 86400)d"
        }
    }
}
