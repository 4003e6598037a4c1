import Foundation
import Torus

/// The hub under test: a child this process started (and will stop), or a process
/// it attached to by PID.
final class HubProcess: @unchecked Sendable {
    let pid: Int32
    let httpAddress: SocketAddress
    let routerAddress: SocketAddress
    private let process: Process?
    private let box: CaptureBox

    /// Starts `path` with ports chosen by the kernel and waits for both
    /// "listening on" lines (HTTP first, then routers).
    init(launch path: String, arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--router-port", "0", "--http-port", "0"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        self.process = process
        var lines: [String] = []
        let box = CaptureBox()
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { box.append(data) }
        }
        try process.run()
        pid = process.processIdentifier
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            lines = String(decoding: box.data, as: UTF8.self).split(separator: "\n")
                .filter { $0.hasPrefix("listening on ") }.map(String.init)
            if lines.count >= 2 || !process.isRunning { break }
            usleep(20_000)
        }
        guard lines.count >= 2, let http = Self.address(lines[0]), let router = Self.address(lines[1]) else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw SoakError("hub did not start: \(String(decoding: box.data, as: UTF8.self))")
        }
        httpAddress = http
        routerAddress = router
        self.box = box
    }

    /// Attaches to a running hub.
    init(attach pid: Int32, http: SocketAddress, router: SocketAddress) {
        self.pid = pid
        httpAddress = http
        routerAddress = router
        process = nil
        box = CaptureBox()
    }

    var launched: Bool { process != nil }
    var output: String { String(decoding: box.data, as: UTF8.self) }

    /// VmRSS and RssAnon of the hub in KiB (0 when gone), from /proc/PID/status.
    var resident: (total: Int, anon: Int) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
        var total = 0
        var anon = 0
        for line in status.split(separator: "\n") {
            let value = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            if line.hasPrefix("VmRSS:") { total = value }
            if line.hasPrefix("RssAnon:") { anon = value }
        }
        return (total, anon)
    }

    /// SIGTERM, then wait (bounded) for the exit; returns the status (nil: killed).
    func stop(timeout: TimeInterval = 30) -> Int32? {
        guard let process else { return nil }
        if process.isRunning { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        usleep(100_000)  // let the pipe drain
        return process.terminationStatus
    }

    static func address(_ line: String) -> SocketAddress? {
        let spec = line.replacingOccurrences(of: "listening on ", with: "")
        return parse(hostPort: spec)
    }

    static func parse(hostPort spec: String) -> SocketAddress? {
        var s = spec
        if let r = s.range(of: "://") { s = String(s[r.upperBound...]) }
        if let slash = s.firstIndex(of: "/") { s = String(s[..<slash]) }
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
        return try? SocketAddress.tcp(host, port)
    }
}

final class CaptureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes = Data()
    func append(_ d: Data) { lock.lock(); bytes.append(d); lock.unlock() }
    var data: Data { lock.lock(); defer { lock.unlock() }; return bytes }
}

struct SoakError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
