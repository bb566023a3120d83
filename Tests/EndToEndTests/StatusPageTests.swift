import Foundation
import Testing
import TestSupport

enum Chromium {
    static var path: String? { findExecutable("chromium") }

    /// The DOM after the page loaded, as headless Chromium rendered it.
    static func dom(_ url: String) async throws -> String {
        let r = try await runCommand(try #require(path), ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                          "--dump-dom", url], timeout: .seconds(60))
        #expect(r.status == 0, "chromium --dump-dom: \(r.stderr)")
        return r.stdout
    }

    static func screenshot(_ url: String, to file: String) async throws {
        let r = try await runCommand(try #require(path), ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                          "--window-size=1280,900", "--screenshot=\(file)", url], timeout: .seconds(60))
        #expect(r.status == 0, "chromium --screenshot: \(r.stderr)")
    }
}

/// Issue 17: the status page (`GET /` of the control API), loaded in a real headless browser.
@Suite("status page", .serialized)
struct StatusPageTests {
    @Test(.enabled(if: Chromium.path != nil, "needs chromium (Debian package chromium)"))
    func browserShowsEndpointsGoingDownWithTheOverride() async throws {
        let setup = try DrillSetup()
        try await setup.withServer { server in
            let url = setup.control + "/"
            // Seven answers into iad (api.drill.test answers iad) for the per-minute table.
            for _ in 0..<7 {
                let r = try await Dig.query("api.drill.test", "A", port: setup.dnsPort)
                #expect(r.answer.map(\.rdata) == ["198.51.100.10"], "\(r.raw)")
            }
            let before = try await Chromium.dom(url)
            // Decisions per datacenter over the last minutes: the seven are in iad's row
            // (in the current minute, or split with the one before at a minute boundary).
            #expect(StatusPageTests.decisionCells(before, "iad").count == 10, "\(before)")
            #expect(StatusPageTests.decisionCells(before, "iad").reduce(0, +) >= 7, "\(before)")
            #expect(before.contains("<td class=\"current\">"), "\(before)")
            #expect(before.contains("<title>Meridian status</title>"), "\(before)")
            #expect(before.contains("id=\"endpoint-iad-1\" data-state=\"up\""), "\(before)")
            #expect(before.contains("id=\"dc-iad\" data-state=\"up\""), "\(before)")
            #expect(before.contains("id=\"name-api.drill.test.\""), "\(before)")
            #expect(!before.contains("src=\"http") && !before.contains("href=\"http"), "no external assets")
            let set = try await runCommand("/usr/bin/curl", ["-fsS", "-X", "POST", "-H", "Content-Type: application/json", "-d",
                                                              #"{"target": "endpoint:iad-1", "state": "down", "reason": "page <test>"}"#,
                                                              setup.control + "/override"], timeout: .seconds(10))
            #expect(set.status == 0, "\(set.combined)")
            let after = try await Chromium.dom(url)
            #expect(after.contains("id=\"endpoint-iad-1\" data-state=\"down\""), "\(after)")
            #expect(after.contains("id=\"dc-iad\" data-state=\"down\""), "\(after)")
            #expect(after.contains("id=\"override-endpoint:iad-1\" data-state=\"down\""), "\(after)")
            #expect(after.contains("page &lt;test&gt;"), "the reason, escaped: \(after)")
            // The timeline of the last hour has the override.
            #expect(after.contains("<td>override endpoint:iad-1</td><td class=\"down\">down</td><td>page &lt;test&gt;</td>"), "\(after)")
            let shot = setup.folder.appendingPathComponent("status.png").path
            try await Chromium.screenshot(url, to: shot)
            let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
            #expect(size > 5000, "a screenshot was taken (\(size) bytes)")
            if let keep = ProcessInfo.processInfo.environment["MERIDIAN_STATUS_SCREENSHOT"] {
                try? FileManager.default.removeItem(atPath: keep)
                try FileManager.default.copyItem(atPath: shot, toPath: keep)
            }
            _ = server
        }
    }

    /// The numbers of a datacenter's row in the decisions-per-minute table, oldest first.
    static func decisionCells(_ html: String, _ dc: String) -> [Int] {
        guard let start = html.range(of: "<tr id=\"decisions-\(dc)\">"),
              let end = html.range(of: "</tr>", range: start.upperBound..<html.endIndex) else { return [] }
        let row = html[start.upperBound..<end.lowerBound]
        return row.components(separatedBy: "</td>").dropFirst().compactMap { cell in
            cell.split(separator: ">").last.flatMap { Int($0) }
        }
    }

    /// Without a browser: the same page over plain HTTP, with the token rule of the API.
    @Test func pageNeedsTheTokenAndIsHTML() async throws {
        let setup = try DrillSetup(token: "s3cret")
        try await setup.withServer { _ in
            let denied = try HTTP.request("GET", port: setup.controlPort, path: "/")
            #expect(denied.status == 401)
            let ok = try HTTP.request("GET", port: setup.controlPort, path: "/", headers: ["Authorization": "Bearer s3cret"])
            #expect(ok.status == 200 && ok.headers["content-type"]?.hasPrefix("text/html") == true)
            #expect(ok.text.contains("<meta http-equiv=\"refresh\""), "\(ok.text)")
            #expect(ok.text.contains("id=\"endpoint-ams-1\" data-state=\"up\""), "\(ok.text)")
        }
    }
}
