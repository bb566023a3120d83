@testable import Admin
import Server
import Testing

/// The CLI's side of the control API: the URLs it accepts.
@Suite("control client")
struct ControlClientTests {
    @Test func clientURLs() throws {
        #expect(try ControlClient(url: "http://127.0.0.1:8053/").address.description == "127.0.0.1:8053")
        #expect(try ControlClient(url: "localhost:9").address.description == "127.0.0.1:9")
        #expect(try ControlClient(url: "[::1]:8053").address.description == "[::1]:8053")
        #expect(throws: ControlConfigError.self) { try ControlClient(url: "https://127.0.0.1:8053") }
        #expect(throws: ControlConfigError.self) { try ControlClient(url: "127.0.0.1") }
    }
}
