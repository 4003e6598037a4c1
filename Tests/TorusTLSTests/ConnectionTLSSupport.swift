import Foundation
import Testing
import Torus
import TorusTestSupport
@testable import TorusTLS

/// A TLS echo handler for a Torus server: optionally greets once the handshake is
/// done, echoes every plaintext byte, and records how each connection ended.
final class TLSEchoHandler: ConnectionHandler {
    let ends: Locked<[String]>
    let greeting: [UInt8]
    let subjects: Locked<[String]>

    init(ends: Locked<[String]>, subjects: Locked<[String]> = Locked([]), greeting: [UInt8] = []) {
        self.ends = ends
        self.subjects = subjects
        self.greeting = greeting
    }

    func connected(_ connection: Connection) {
        // Told only once the handshake completed.
        let subject = connection.tlsSession?.peerSubject ?? "none"
        subjects.withLock { $0.append(subject) }
        if !greeting.isEmpty { connection.send(greeting) }
    }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
        if !connection.isWritable { connection.pauseReading() }
    }

    func writable(_ connection: Connection) { connection.resumeReading() }

    func closed(_ connection: Connection, error: (any Error)?) {
        ends.withLock { $0.append(error.map { "\($0)" } ?? "orderly") }
    }
}

/// Starts a Torus TLS echo server on `group` at an ephemeral loopback port.
func startTLSEcho(on group: EventLoopGroup, _ configuration: TLSConfiguration, ends: Locked<[String]>,
                  subjects: Locked<[String]> = Locked([]), greeting: [UInt8] = []) throws -> Server {
    let context = try TLSContext(configuration)
    return try Server.start(on: group, address: try .tcp("127.0.0.1", 0), tls: context) { _ in
        TLSEchoHandler(ends: ends, subjects: subjects, greeting: greeting)
    }
}

/// One Torus TLS client round: connect, read the greeting, echo `payload`, close.
/// Returns the bytes that came back (greeting + echo).
func torusTLSRound(on loop: EventLoop, port: UInt16, context: TLSContext, greeting: Int,
                   payload: [UInt8]) async throws -> [UInt8] {
    let connection = try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: loop, tls: context)
    var back = try await connection.read(exactly: greeting)
    // Written in pieces, read as they come back (the echo never outruns the reader).
    var offset = 0
    while offset < payload.count {
        let end = min(payload.count, offset + 100_000)
        try await connection.write(Array(payload[offset..<end]))
        back += try await connection.read(exactly: end - offset)
        offset = end
    }
    await connection.close()
    return back
}

/// Runs a Python 3 script with arguments to completion on a thread of its own; its
/// output, or nil when it did not finish in time.
func runPython(_ script: String, _ arguments: [String], timeout: Duration = .seconds(60)) async -> (Int32?, String) {
    await onOwnThread {
        do {
            let p = try ChildProcess("/usr/bin/env", ["python3", "-c", script] + arguments, directory: "/tmp", input: true)
            p.closeInput()
            let status = p.waitForExit(timeout: timeout)
            return (status, p.text)
        } catch {
            return (nil, "\(error)")
        }
    }
}

/// A raw TCP socket to the loopback port with a receive timeout, for bad input.
final class RawPeer: @unchecked Sendable {
    let fd: Int32

    init(port: UInt16) throws {
        fd = try SocketBridge.connect(port: port)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func shutdownWriting() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Aborts with an RST (SO_LINGER 0).
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Reads until the server closes (EOF or reset) or the receive timeout: what
    /// arrived, and whether the server ended the connection.
    func readUntilClosed() -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                out += buffer[0..<n]
                continue
            }
            if n == 0 || errno == ECONNRESET { return (out, true) }
            return (out, false)  // timed out: the server left it hanging
        }
    }
}

/// A real ClientHello (the first flight of a client engine for localhost).
func clientHello(_ certs: TestCertificates) throws -> [UInt8] {
    let engine = try TLSEngine(context: TLSContext(certs.client()))
    try engine.advanceHandshake()
    var out = [UInt8](repeating: 0, count: engine.pendingCiphertext)
    let n = out.withUnsafeMutableBytes { engine.takeCiphertext(into: $0) }
    return Array(out[0..<n])
}
