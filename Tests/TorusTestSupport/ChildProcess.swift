import CChildProcess
import Foundation


/// A child process started by a test (a demo server, curl, openssl, a Python client),
/// with its output captured. Stopped by PID only, and every wait is bounded.
///
/// Started with `posix_spawn`, not Foundation's `Process`: `Process.run()` overflowed a
/// heap buffer (found under ASan in `findMaximumOpenFromProcSelfFD`) and crashed in a
/// `memcpy` when the test process held many descriptors, as these tests do. The child
/// gets none of the parent's descriptors but its standard input, output and error.
public final class ChildProcess: Sendable {
    /// The child's process id.
    public let pid: pid_t

    private struct State {
        var captured: [UInt8] = []
        var outputEnded = false
        /// The raw `waitpid` status, once the child was reaped.
        var status: Int32?
    }

    private let state = Locked(State())
    /// The write end of the child's standard input (-1: it reads /dev/null).
    private let input: Locked<Int32>

    /// Starts `executable` with `arguments`; its stdout and stderr are captured
    /// together. `environment` adds to (or replaces entries of) this process's;
    /// `directory` is the working directory; with `input`, `send` writes to its stdin.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                directory: String? = nil, input: Bool = false) throws {
        var outputPipe: [Int32] = [-1, -1]
        guard torus_pipe_cloexec(&outputPipe) == 0 else { throw SpawnError(executable: executable, errno: errno) }
        var inputPipe: [Int32] = [-1, -1]
        if input, torus_pipe_cloexec(&inputPipe) != 0 {
            let e = errno
            Glibc.close(outputPipe[0])
            Glibc.close(outputPipe[1])
            throw SpawnError(executable: executable, errno: e)
        }
        var env = ProcessInfo.processInfo.environment
        if let environment { env.merge(environment) { $1 } }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let error = torus_spawn(executable, argv, envp, directory, inputPipe[0], outputPipe[1], &child)
        Glibc.close(outputPipe[1])
        if inputPipe[0] >= 0 { Glibc.close(inputPipe[0]) }
        guard error == 0 else {
            Glibc.close(outputPipe[0])
            if inputPipe[1] >= 0 { Glibc.close(inputPipe[1]) }
            throw SpawnError(executable: executable, errno: error)
        }
        pid = child
        self.input = Locked(inputPipe[1])
        let reader = outputPipe[0]
        let thread = Thread { [state] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                state.withLock { $0.captured += buffer[0..<n] }
            }
            Glibc.close(reader)
            state.withLock { $0.outputEnded = true }
        }
        thread.name = "child-output-\(child)"
        thread.start()
    }

    /// Everything the process printed so far.
    public var text: String {
        state.withLock { String(decoding: $0.captured, as: UTF8.self) }
    }

    /// True until the child has exited (and was reaped).
    public var isRunning: Bool { reap(blocking: false) == nil }

    /// The exit status, when the child exited normally.
    public var exitStatus: Int32? {
        guard let status = reap(blocking: false), status & 0x7F == 0 else { return nil }
        return (status >> 8) & 0xFF
    }

    /// The signal that ended the child, when one did.
    public var terminationSignal: Int32? {
        guard let status = reap(blocking: false), status & 0x7F != 0, status & 0x7F != 0x7F else { return nil }
        return status & 0x7F
    }

    /// Reaps the child if it has exited; returns its raw wait status.
    private func reap(blocking: Bool) -> Int32? {
        state.withLock { s in
            if let status = s.status { return status }
            var status: Int32 = 0
            var r: pid_t
            repeat { r = waitpid(pid, &status, blocking ? 0 : WNOHANG) } while r < 0 && errno == EINTR
            if r < 0 && errno == ECHILD {
                s.status = 127 << 8  // reaped elsewhere: gone, status unknown
                return s.status
            }
            guard r == pid else { return nil }
            s.status = status
            return status
        }
    }

    /// Writes `text` to the child's standard input (started with `input: true`).
    public func send(_ text: String) {
        input.withLock { fd in
            guard fd >= 0 else { return }
            var bytes = Array(text.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                bytes = bytes.dropFirst(n)
            }
        }
    }

    /// Closes the child's standard input (it reads end of file).
    public func closeInput() {
        input.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    /// Waits for a line containing `marker`; returns that line.
    public func waitForLine(containing marker: String, timeout: Duration = .seconds(30)) async -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            if !isRunning { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return text.split(separator: "\n").first(where: { $0.contains(marker) }).map(String.init)
    }

    /// Waits (polling, bounded, blocking the calling thread) until `condition` holds
    /// on the output.
    @discardableResult
    public func waitFor(timeout: Duration = .seconds(10), _ condition: (String) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(text) { return true }
            usleep(10_000)
        }
        return condition(text)
    }

    /// Waits for "listening on HOST:PORT" and returns the port.
    public func listeningPort(timeout: Duration = .seconds(30)) async -> UInt16? {
        guard let line = await waitForLine(containing: "listening on", timeout: timeout),
              let last = line.split(separator: ":").last else { return nil }
        return UInt16(last.trimmingCharacters(in: .whitespaces))
    }

    /// Sends `signal` and waits (bounded) for the exit; returns the exit status, or
    /// nil after killing a process that did not stop in time (or one a signal ended).
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) async -> Int32? {
        if isRunning { kill(pid, signal) }
        return await wait(timeout: timeout)
    }

    /// Waits (bounded) for the process to exit on its own; returns its exit status,
    /// or nil after killing it at the timeout (or when a signal ended it).
    public func wait(timeout: Duration = .seconds(60)) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while isRunning && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return await finish()
    }

    /// `wait` for callers that are not async: blocks the calling thread (bounded).
    public func waitForExit(timeout: Duration = .seconds(60)) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if isRunning { killAndReap() }
        drainOutput()
        return exitStatus
    }

    private func finish() async -> Int32? {
        if isRunning { killAndReap() }
        // The output ends when the child (and anything that inherited its output) is gone.
        let deadline = ContinuousClock.now + .seconds(2)
        while !state.withLock({ $0.outputEnded }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return exitStatus
    }

    private func drainOutput() {
        let deadline = ContinuousClock.now + .seconds(2)
        while !state.withLock({ $0.outputEnded }) && ContinuousClock.now < deadline { usleep(5_000) }
    }

    private func killAndReap() {
        kill(pid, SIGKILL)
        _ = reap(blocking: true)
    }

    /// Runs `executable` to its end (bounded by `timeout`); returns its exit status
    /// (nil: killed at the timeout or ended by a signal) and everything it printed.
    public static func run(_ executable: String, _ arguments: [String], directory: String? = nil,
                           timeout: Duration = .seconds(60)) throws -> (status: Int32?, output: String) {
        let child = try ChildProcess(executable, arguments, directory: directory)
        let status = child.waitForExit(timeout: timeout)
        return (status, child.text)
    }

    deinit {
        closeInput()
        if isRunning { killAndReap() }
    }
}

/// A child process could not be started.
public struct SpawnError: Error, CustomStringConvertible {
    public let executable: String
    public let errno: Int32
    public var description: String { "cannot start \(executable): \(String(cString: strerror(errno)))" }
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


extension ChildProcess {
    /// The child's user + system CPU seconds so far (fields 14 and 15 of
    /// /proc/PID/stat); 0 when it cannot be read.
    public var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
