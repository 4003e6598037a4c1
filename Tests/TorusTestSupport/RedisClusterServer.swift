import Foundation
import Glibc
import Testing
import Torus

/// A three-master Redis Cluster of the test's own: three `redis-server`s with
/// cluster mode on free loopback ports (and cluster bus ports), joined by
/// `redis-cli --cluster create`, no persistence, its node files in a temporary
/// directory. `stop()` kills exactly the processes it started and removes the
/// directory. Suites that need one skip where `redis-server` or `redis-cli` is not
/// installed (never under CI).
public final class RedisClusterServer: @unchecked Sendable {
    public struct Node {
        public let process: ChildProcess
        public let port: UInt16
        public var address: SocketAddress { .ipv4(host: "127.0.0.1", port: port) }
    }

    public private(set) var nodes: [Node] = []
    public let directory: String
    public var addresses: [SocketAddress] { nodes.map(\.address) }

    public static var isInstalled: Bool {
        func installed(_ name: String) -> Bool {
            ["/usr/bin/", "/usr/local/bin/"].contains { FileManager.default.isExecutableFile(atPath: $0 + name) }
        }
        return installed("redis-server") && installed("redis-cli")
    }

    public static var suitesRun: Bool { isInstalled || ProcessInfo.processInfo.environment["CI"] == "true" }
    public static let skipped: Comment =
        "redis-server or redis-cli is not installed (scripts/setup-deps.sh installs them; under CI their absence fails)"

    /// Starts the three nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok`.
    public init() async throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("torus-redis-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            var attempts = 0
            while nodes.count < 3 {
                attempts += 1
                let port = try RedisServer.freePort()
                var bus = try RedisServer.freePort()
                while bus == port { bus = try RedisServer.freePort() }
                let process = try ChildProcess("/usr/bin/env", [
                    "redis-server", "--port", "\(port)", "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                    "--cluster-port", "\(bus)", "--cluster-config-file", "\(directory)/nodes-\(port).conf",
                    "--cluster-require-full-coverage", "no", "--cluster-node-timeout", "5000",
                    "--save", "", "--appendonly", "no", "--dir", directory,
                ])
                guard await process.waitForLine(containing: "Ready to accept connections", timeout: .seconds(20)) != nil else {
                    _ = await process.stop(signal: SIGKILL)
                    // A port taken between the check and the bind (as in RedisServer): another.
                    if attempts < 8, process.text.contains("Address already in use") { continue }
                    throw RedisTestError("redis-server (cluster node) did not start: \(process.text)")
                }
                nodes.append(Node(process: process, port: port))
            }
            let create = try await cli(["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" }
                                       + ["--cluster-replicas", "0", "--cluster-yes"], timeout: .seconds(30))
            guard create.contains("All 16384 slots covered") else { throw RedisTestError("cluster create failed: \(create)") }
            for node in nodes {
                guard await waitUntil({ try await self.cli(port: node.port, ["CLUSTER", "INFO"]).contains("cluster_state:ok") }) else {
                    throw RedisTestError("the cluster did not become ok")
                }
            }
        } catch {
            await stop()
            throw error
        }
    }

    /// `redis-cli` with `arguments`; its output.
    public func cli(_ arguments: [String], timeout: Duration = .seconds(10)) async throws -> String {
        let child = try ChildProcess("/usr/bin/env", ["redis-cli"] + arguments)
        _ = await child.wait(timeout: timeout)
        return child.text
    }

    /// One command on the node at `port`, through `redis-cli`; its output.
    public func cli(port: UInt16, _ arguments: [String]) async throws -> String {
        try await cli(["-h", "127.0.0.1", "-p", "\(port)"] + arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The node id of the node at `port`.
    public func id(of port: UInt16) async throws -> String {
        try await cli(port: port, ["CLUSTER", "MYID"])
    }

    /// The port of the node serving `slot`, as `CLUSTER NODES` on `asking` (or the
    /// first running node) shows it.
    public func port(serving slot: Int, asking: UInt16? = nil) async throws -> UInt16 {
        guard let port = asking ?? nodes.first(where: { $0.process.isRunning })?.port else {
            throw RedisTestError("no node is running")
        }
        for line in try await cli(port: port, ["CLUSTER", "NODES"]).split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 8, let endpoint = fields[1].split(separator: "@").first,
                  let portText = endpoint.split(separator: ":").last, let owner = UInt16(portText) else { continue }
            for range in fields[8...] where !range.hasPrefix("[") {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                if let low = bounds.first, let high = bounds.last, (low...high).contains(slot) { return owner }
            }
        }
        throw RedisTestError("no node serves slot \(slot)")
    }

    /// Moves `slot` (and its keys) from the node at `source` to the node at `target`,
    /// as a resharding does: IMPORTING/MIGRATING, MIGRATE the keys, SETSLOT NODE on
    /// every master.
    public func move(slot: Int, from source: UInt16, to target: UInt16) async throws {
        let sourceID = try await id(of: source)
        let targetID = try await id(of: target)
        _ = try await cli(port: target, ["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", sourceID])
        _ = try await cli(port: source, ["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", targetID])
        let keys = try await cli(port: source, ["CLUSTER", "GETKEYSINSLOT", "\(slot)", "1000"])
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        if !keys.isEmpty {
            let migrated = try await cli(port: source, ["MIGRATE", "127.0.0.1", "\(target)", "", "0", "5000", "KEYS"] + keys)
            guard migrated.contains("OK") else { throw RedisTestError("MIGRATE: \(migrated)") }
        }
        for node in nodes where node.process.isRunning {
            _ = try await cli(port: node.port, ["CLUSTER", "SETSLOT", "\(slot)", "NODE", targetID])
        }
    }

    /// The node's `total_reads_processed` (INFO stats): how many reads it made of
    /// its clients' sockets (the read of this INFO command included).
    public func reads(port: UInt16) async throws -> Int {
        let info = try await cli(port: port, ["INFO", "stats"])
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("total_reads_processed:") }),
              let count = Int(line.dropFirst("total_reads_processed:".count)) else {
            throw RedisTestError("no total_reads_processed in INFO stats")
        }
        return count
    }

    /// Kills the node at `port` (SIGKILL) and waits for its exit.
    public func kill(port: UInt16) async {
        guard let node = nodes.first(where: { $0.port == port }) else { return }
        _ = await node.process.stop(signal: SIGKILL, timeout: .seconds(10))
    }

    /// Stops every node this started (by PID) and removes the directory.
    public func stop() async {
        for node in nodes { _ = await node.process.stop(signal: SIGKILL, timeout: .seconds(10)) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func waitUntil(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}
