import Config
import Foundation
import Testing
import Yams

/// deploy/ cannot be exercised here (no Docker engine, no cluster, no systemd as PID 1), so
/// these tests check what can be checked: the manifests parse, and every file, command and
/// port they name exists in the repository and agrees with the rest.
private let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private func text(_ path: String) throws -> String { try String(contentsOf: repo.appendingPathComponent(path), encoding: .utf8) }

@Test func kubernetesManifestsParse() throws {
    let docs = try Array(Yams.load_all(yaml: try text("deploy/kubernetes/meridian.yaml")))
    let kinds = docs.compactMap { ($0 as? [String: Any])?["kind"] as? String }
    #expect(Set(kinds) == ["ConfigMap", "Secret", "Deployment", "Service"], "\(kinds)")
    let deployment = try #require(docs.compactMap { $0 as? [String: Any] }.first { $0["kind"] as? String == "Deployment" })
    let spec = try #require(((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
    #expect(spec["shareProcessNamespace"] as? Bool == true, "the reload sidecar signals meridian across containers")
    let containers = try #require(spec["containers"] as? [[String: Any]])
    let meridian = try #require(containers.first { $0["name"] as? String == "meridian" })
    #expect((meridian["args"] as? [String])?.prefix(1) == ["serve"])
    #expect(containers.contains { $0["name"] as? String == "reloader" })
    // The ConfigMap's embedded config loads through Meridian's own loader (every rule
    // `meridian check` applies to the YAML), mounted where the Deployment mounts it.
    let cm = try #require(docs.compactMap { $0 as? [String: Any] }.first { $0["kind"] as? String == "ConfigMap" })
    let embedded = try #require((cm["data"] as? [String: String])?["meridian.yaml"])
    do {
        let model = try ConfigLoader.load(yaml: embedded, file: "deploy/kubernetes/meridian.yaml (ConfigMap meridian.yaml)",
                                          baseDirectory: "/etc/meridian")
        #expect(model.server.listen == ["0.0.0.0:5353", "[::]:5353"], "the Service and container ports are 5353")
        #expect(model.server.controlTokenFile == "/etc/meridian-secret/control-token", "the Secret's mount path")
    } catch {
        Issue.record("the ConfigMap's meridian.yaml does not load:\n\(error)")
    }
}

@Test func systemdUnitRunsCommandsThatExist() throws {
    let unit = try text("deploy/systemd/meridian.service")
    for key in ["ExecStart=/usr/local/bin/meridian serve", "ExecStartPre=/usr/local/bin/meridian check",
                "ExecReload=/bin/kill -HUP $MAINPID", "Type=notify", "NotifyAccess=main", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                "ProtectSystem=strict", "User=meridian", "StateDirectory=meridian"] {
        #expect(unit.contains(key), "\(key)")
    }
}

@Test func dockerfileCopiesWhatExists() throws {
    let file = try text("deploy/container/Dockerfile")
    var copied: [String] = []
    for line in file.split(separator: "\n") where line.hasPrefix("COPY ") && !line.contains("--from=") {
        let parts = line.split(separator: " ").map(String.init)
        copied += parts.dropFirst().dropLast()
    }
    #expect(!copied.isEmpty)
    for p in copied { #expect(FileManager.default.fileExists(atPath: repo.appendingPathComponent(p).path), "COPY \(p)") }
    #expect(file.contains("USER "), "runs as non-root")
    #expect(file.contains("FROM swift:"), "built on the official Swift image")
}

/// deploy/fleet: the Meridian configuration loads, and its etcd endpoints are exactly the
/// client URLs of the etcd cluster the member file describes (its peers, on port 2379).
@Test func fleetExampleNamesTheEtcdMembers() throws {
    // zones/example.com.zone as the repository's zones/ folder has it.
    let model = try ConfigLoader.load(yaml: try text("deploy/fleet/meridian.yaml"), file: "deploy/fleet/meridian.yaml",
                                      baseDirectory: repo.path)
    let fleet = try #require(model.server.fleet)
    let etcd = try #require(try Yams.load(yaml: try text("deploy/fleet/etcd-ams.conf.yml")) as? [String: Any])
    let cluster = try #require(etcd["initial-cluster"] as? String)
    let peers = cluster.split(separator: ",").compactMap { $0.split(separator: "=").last.map(String.init) }
    #expect(peers.count == 3, "three members: one region lost keeps a quorum")
    #expect(fleet.endpoints.map(\.description) == peers.map { $0.replacingOccurrences(of: ":2380", with: ":2379") })
    #expect((etcd["advertise-client-urls"] as? String).map { fleet.endpoints.map(\.description).contains($0) } == true)
}
