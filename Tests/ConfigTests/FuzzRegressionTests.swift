import Config
import Testing

/// Inputs FuzzConfig found (Tests/Fuzz/README.md), kept so they never come back.

/// A duplicate-key error whose key is empty and whose mark sits at column 0 made the
/// error-position search index a line at -2.
@Test func crashDuplicateKeyMarkOutsideLine() {
    let bytes: [UInt8] = [51, 58, 49, 50, 58, 32, 115, 101, 46, 119, 114, 101, 118, 114, 111, 108, 101, 32, 110, 117, 109, 98, 101, 114, 44, 32, 102, 111, 117, 110, 100, 32, 34, 109, 97, 32, 119, 104, 111, 108, 101, 32, 110, 117, 109, 98, 101, 114, 44, 32, 102, 111, 117, 110, 100, 32, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 34, 109, 97, 110, 121, 34, 10, 38, 101, 114, 118, 101, 114, 58, 10, 32, 35, 32, 101, 120, 112, 101, 99, 116, 58, 32, 51, 58, 49, 50, 58, 32, 115, 101, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 34, 112, 97, 110, 121, 34, 10, 38, 101, 114, 118, 101, 114, 58, 10, 32, 32, 119, 97, 101, 142, 197, 10, 32, 32, 119, 111, 114, 107, 101, 114, 255, 110, 117, 109, 98, 101, 114, 44, 32, 102, 10]
    #expect(throws: ConfigErrors.self) {
        _ = try ConfigLoader.load(yaml: String(decoding: bytes, as: UTF8.self), file: "fuzz.yaml", baseDirectory: "/nonexistent")
    }
}
