import Foundation
import Glibc
import Testing
import Torus

/// A `redis-server` of the test's own on a free loopback port (no persistence),
/// stopped by `stop()`. Tests that need one skip with a clear message when
/// `redis-server` is not installed (`scripts/setup-deps.sh` installs it; CI never
/// skips: `.ci/run` calls that script).
public final class RedisServer: @unchecked Sendable {
    public let process: ChildProcess
    public let port: UInt16
    public var address: SocketAddress { .ipv4(host: "127.0.0.1", port: port) }

    public static var isInstalled: Bool {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Whether the suites that need a server run: where it is installed, and always
    /// under CI (where its absence then fails them).
    public static var suitesRun: Bool { isInstalled || ProcessInfo.processInfo.environment["CI"] == "true" }
    public static let skipped: Comment = "redis-server is not installed (scripts/setup-deps.sh installs it; under CI its absence fails)"

    /// Starts one; `arguments` are extra configuration (`--requirepass`, …).
    /// Without `port`, a free one; when another process takes it between the check and
    /// redis-server's bind (the parallel suite opens many connections, whose ephemeral
    /// ports come from the same range), another port is tried, up to five times.
    public init(_ arguments: [String] = [], port: UInt16? = nil) async throws {
        var attempt = 0
        while true {
            attempt += 1
            let chosen = try port ?? Self.freePort()
            let started = try ChildProcess("/usr/bin/env", ["redis-server", "--port", "\(chosen)", "--bind", "127.0.0.1",
                                                            "--save", "", "--appendonly", "no",
                                                            "--enable-debug-command", "yes"] + arguments)
            if await started.waitForLine(containing: "Ready to accept connections", timeout: .seconds(20)) != nil {
                self.port = chosen
                process = started
                return
            }
            _ = await started.stop(signal: SIGKILL)
            guard port == nil, attempt < 5, started.text.contains("Address already in use") else {
                throw RedisTestError("redis-server did not start: \(started.text)")
            }
        }
    }

    public func stop(signal: Int32 = SIGTERM) async {
        _ = await process.stop(signal: signal)
    }

    /// A port nothing listens on right now (bound, read, released).
    public static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RedisTestError("socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw RedisTestError("bind: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }
}

public struct RedisTestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
