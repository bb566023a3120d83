import Config
import Testing

/// The one duration grammar (config, CLI, drill, control client) and its formatter.
@Suite("duration text")
struct DurationTextTests {
    @Test(arguments: [
        ("500ms", 0.5), ("100ms", 0.1), ("30s", 30), ("5m", 300), ("1.5m", 90), ("2h", 7200), ("1d", 86400),
        ("365d", 31_536_000), ("15", 15), ("90", 90), ("1.5s", 1.5), ("0", 0), ("0s", 0), (" 10m\t", 600),
    ] as [(String, Double)])
    func parses(_ text: String, _ seconds: Double) {
        #expect(DurationText.parse(text) == seconds)
        #expect(DurationText(text)?.seconds == seconds)
        #expect(DurationText(text)?.text == text)
    }

    /// Signs, exponents, unknown or upper-case units, inner spaces and values that overflow
    /// to infinity are not durations.
    @Test(arguments: ["", " ", "s", "m", "ms", "-1s", "-5m", "+5m", "1e3", "1e400s", "10x", "abc", "fast", "1 s", "10M",
                      "1..5s", "inf", "nan", "0x10", "٣s", String(repeating: "9", count: 400) + "d"])
    func rejects(_ text: String) {
        #expect(DurationText.parse(text) == nil)
        #expect(DurationText(text) == nil)
    }

    @Test(arguments: [
        (30.0, DurationText.Style.seconds, "30s"), (0.104, .seconds, "0.104s"), (90, .seconds, "90s"), (0, .seconds, "0s"),
        (1.5, .seconds, "1.500s"), (2, .milliseconds, "2.000s"), (0.0405, .milliseconds, "0.041s"), (-0.5, .milliseconds, "-0.500s"),
        (-1.5, .milliseconds, "-1.500s"), (.infinity, .seconds, "infs"), (.nan, .milliseconds, "nans"), (1e13, .seconds, "10000000000000.0s"),
        (59, .compact, "59s"), (119.4, .compact, "119s"), (119.6, .compact, "2m"), (120, .compact, "2m"), (150, .compact, "2m30s"), (7200, .compact, "2h"),
        (7500, .compact, "2h5m"), (3 * 86400, .compact, "3d"), (-5, .compact, "0s"), (.nan, .compact, "0s"), (.infinity, .compact, "11574074d"),
    ] as [(Double, DurationText.Style, String)])
    func formats(_ seconds: Double, _ style: DurationText.Style, _ text: String) {
        #expect(DurationText.format(seconds, style: style) == text)
    }

    /// Whatever `.seconds` prints for a whole or millisecond value reads back as the same value.
    @Test(arguments: [0.0, 0.5, 30, 90, 3600, 0.104])
    func formatReadsBack(_ seconds: Double) {
        #expect(DurationText.parse(DurationText.format(seconds)) == seconds)
    }
}
