import Foundation
import TorusTestSupport
import Testing
@testable import TorusTLS

/// A blocking loopback TCP socket carrying one engine's ciphertext: the test's
/// stand-in for the ring until the connection integration exists.
final class SocketBridge {
    let fd: Int32
    let engine: TLSEngine
    var received: [UInt8] = []
    private(set) var transportEnded = false

    init(fd: Int32, engine: TLSEngine) {
        self.fd = fd
        self.engine = engine
    }

    deinit { close(fd) }

    /// Sends whatever ciphertext the engine has.
    func flush() {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while engine.pendingCiphertext > 0 {
            let n = buffer.withUnsafeMutableBytes { engine.takeCiphertext(into: $0) }
            if n == 0 { return }
            sendAll(Array(buffer[0..<n]))
        }
    }

    func sendAll(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Moves bytes both ways until `done` holds, the transport ends, or `timeout`.
    @discardableResult
    func run(timeout: Duration = .seconds(10), until done: (SocketBridge) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while ContinuousClock.now < deadline {
            drain()
            flush()
            if done(self) { return true }
            if transportEnded { return done(self) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.withUnsafeBytes { engine.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            } else {
                transportEnded = true
                engine.feedEOF()
            }
        }
        drain()
        flush()
        return done(self)
    }

    private func drain() {
        var plaintext = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let result = plaintext.withUnsafeMutableBytes { b in
                Result { () throws(TLSError) -> TLSReadResult in try engine.readPlaintext(into: b) }
            }
            guard case .success(.bytes(let n)) = result, n > 0 else { return }
            received.append(contentsOf: plaintext[0..<n])
        }
    }

    /// A connected client socket to 127.0.0.1:`port`.
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard fd >= 0, r == 0 else {
            close(fd)
            throw CertificateError(message: "connect to \(port): errno \(errno)")
        }
        return fd
    }

    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7f00_0001).bigEndian)
        return address
    }
}

/// A listening loopback socket on an ephemeral port.
final class Listener {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = SocketBridge.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else {
            close(fd)
            throw CertificateError(message: "listen: errno \(errno)")
        }
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }

    /// Accepts one connection, waiting at most `timeout`.
    func accept(timeout: Duration = .seconds(10)) throws -> Int32 {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000)
        guard poll(&pfd, 1, ms) > 0 else { throw CertificateError(message: "no connection within \(timeout)") }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw CertificateError(message: "accept: errno \(errno)") }
        return client
    }
}

/// What `openssl s_server -rev` is sent and must answer: `count` lines of `length`
/// lowercase letters, and the same lines reversed (it reverses each line it reads).
func reversedLines(count: Int, length: Int) -> (sent: [UInt8], expected: [UInt8]) {
    var sent: [UInt8] = []
    var expected: [UInt8] = []
    for i in 0..<count {
        let line = testBytes(length, seed: UInt64(i + 1)).map { UInt8(ascii: "a") + $0 % 26 }
        sent += line + [UInt8(ascii: "\n")]
        expected += line.reversed() + [UInt8(ascii: "\n")]
    }
    return (sent, expected)
}
