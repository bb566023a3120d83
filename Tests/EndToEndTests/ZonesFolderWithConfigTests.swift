import Foundation
import Testing
import TestSupport

/// `serve --config FILE --zones DIR`: the folder is the configuration's zone folder. Zones
/// the file lists without `file:` are read from it, and its other zone files are served too
/// (once each).
@Suite("Zones folder with a configuration")
struct ZonesFolderWithConfigTests {
    @Test func folderReplacesZonesDir() async throws {
        let configDir = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-zf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: configDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: configDir) }
        let config = configDir.appendingPathComponent("meridian.yaml").path
        try """
        zones:
          example.com:
            names:
              gslb-folder: { policy: { failover: [one] } }
        endpoints:
          one: { v4: 192.0.2.201 }
        """.write(toFile: config, atomically: true, encoding: .utf8)
        try await withMeridian(zones: Fixtures.zones, extraArguments: ["--config", config]) { server in
            let gslb = try await Dig.query("gslb-folder.example.com", "A", port: server.port)
            #expect(gslb.answer.map(\.rdata) == ["192.0.2.201"], "log:\n\(server.logText)")
            let www = try await Dig.query("www.example.com", "A", port: server.port)
            #expect(Set(www.answer.map(\.rdata)) == ["192.0.2.10", "192.0.2.11"])
            let net = try await Dig.query("example.net", "SOA", port: server.port)
            #expect(net.status == "NOERROR" && net.answer.count == 1)
        }
    }
}
