import Foundation

/// A child process started by a test (a demo server, curl, a Python client), with
/// its output captured. Stopped by PID only, and always bounded in time.
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    private let output = Pipe()
    private let lock = NSLock()
    private var captured = Data()

    /// Starts `executable` with `arguments`; stdout and stderr are captured together.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.captured.append(data)
            self.lock.unlock()
        }
        try process.run()
    }

    /// Everything the process printed so far.
    public var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: captured, as: UTF8.self)
    }

    /// Waits for a line containing `marker`; returns that line.
    public func waitForLine(containing marker: String, timeout: Duration = .seconds(30)) async -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            if !process.isRunning { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return text.split(separator: "\n").first(where: { $0.contains(marker) }).map(String.init)
    }

    /// Waits for "listening on HOST:PORT" and returns the port.
    public func listeningPort(timeout: Duration = .seconds(30)) async -> UInt16? {
        guard let line = await waitForLine(containing: "listening on", timeout: timeout),
              let last = line.split(separator: ":").last else { return nil }
        return UInt16(last.trimmingCharacters(in: .whitespaces))
    }

    /// Sends `signal` and waits (bounded) for the exit; returns the exit status, or
    /// nil after killing a process that did not stop in time.
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) async -> Int32? {
        if process.isRunning { kill(process.processIdentifier, signal) }
        return await wait(timeout: timeout)
    }

    /// Waits (bounded) for the process to exit on its own.
    public func wait(timeout: Duration = .seconds(60)) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while process.isRunning && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        // Let the reader drain the pipe.
        try? await Task.sleep(for: .milliseconds(50))
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        output.fileHandleForReading.readabilityHandler = nil
    }
}

/// Paths of the package's built products (next to the test bundle).
public enum BuiltProducts {
    public static var directory: String {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // swift test runs .../debug/TorusPackageTests.xctest
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.path
    }

    public static func path(_ name: String) -> String { directory + "/" + name }

    /// The package's root folder (this file is Tests/TorusTestSupport/ChildProcess.swift).
    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    /// "debug" or "release": the configuration these tests were built in.
    public static var configuration: String {
        URL(fileURLWithPath: directory).lastPathComponent == "release" ? "release" : "debug"
    }

    /// The build folder in use (.build, or the --scratch-path given to swift test).
    public static var scratchPath: String {
        // directory = <scratch>/<triple>/<config>
        URL(fileURLWithPath: directory).deletingLastPathComponent().deletingLastPathComponent().path
    }
}
