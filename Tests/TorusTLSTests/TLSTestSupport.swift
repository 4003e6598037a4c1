import Foundation
import TorusTestSupport
import Synchronization
import Testing
@testable import TorusTLS

/// Every TorusTLS test lives in this suite (extensions in the other files), run one
/// at a time so that each can check the process-wide OpenSSL object counts.
@Suite(.serialized) struct TLSTests {}

/// Runs `body`, then expects every `SSL*`, `SSL_CTX*` and `SSL_SESSION*` it made to
/// be freed (the engines and contexts it created are out of scope by then).
func withoutLeaks(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) rethrows {
    let before = (TLSResources.liveContexts, TLSResources.liveEngines, TLSResources.liveSessions)
    try body()
    #expect(TLSResources.liveEngines == before.1, "SSL* leaked", sourceLocation: sourceLocation)
    #expect(TLSResources.liveContexts == before.0, "SSL_CTX* leaked", sourceLocation: sourceLocation)
    #expect(TLSResources.liveSessions == before.2, "SSL_SESSION* leaked", sourceLocation: sourceLocation)
    #expect(before == (0, 0, 0), "objects live before the test", sourceLocation: sourceLocation)
}

/// Runs `body` on a thread of its own and returns its result: blocking work (child
/// processes, blocking sockets) stays off the Swift concurrency pool, which other
/// suites share. Engines made in `body` live and die on that thread.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// Expects no `SSL*`, `SSL_CTX*` or `SSL_SESSION*` alive (after work done elsewhere).
func expectNothingLive(sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(TLSResources.liveEngines == 0, "SSL* leaked", sourceLocation: sourceLocation)
    #expect(TLSResources.liveContexts == 0, "SSL_CTX* leaked", sourceLocation: sourceLocation)
    #expect(TLSResources.liveSessions == 0, "SSL_SESSION* leaked", sourceLocation: sourceLocation)
}

/// Runs the openssl CLI to completion; throws with its output when it fails.
@discardableResult
func openssl(_ arguments: [String], in directory: String) throws -> String {
    let (status, text) = try ChildProcess.run("/usr/bin/openssl", arguments, directory: directory)
    guard status == 0 else {
        throw CertificateError(message: "openssl \(arguments.joined(separator: " ")): \(text)")
    }
    return text
}

struct CertificateError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Certificates made once per test run with `openssl req` into a temporary folder:
/// a CA, a server certificate for localhost (SAN DNS:localhost, IP:127.0.0.1), one
/// for other.test (SNI), an expired one for localhost, a client certificate, and a
/// second, untrusted CA with a localhost certificate of its own.
final class TestCertificates: Sendable {
    let directory: String

    private static let cache = Mutex<Result<TestCertificates, CertificateError>?>(nil)
    private static let madeDirectory = Mutex<String?>(nil)

    /// The certificates, made on first use on a thread of their own (the openssl
    /// processes are waited for there, not on a Swift concurrency thread).
    static func get() async throws -> TestCertificates {
        if let made = cache.withLock({ $0 }) { return try made.get() }
        let made = await onOwnThread { () -> Result<TestCertificates, CertificateError> in
            do { return .success(try TestCertificates()) } catch let error as CertificateError {
                return .failure(error)
            } catch {
                return .failure(CertificateError(message: "\(error)"))
            }
        }
        cache.withLock { if $0 == nil { $0 = made } }
        return try made.get()
    }

    private init() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("torus-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        directory = dir
        // The test keys go away with the test process.
        Self.madeDirectory.withLock { $0 = dir }
        atexit {
            if let dir = TestCertificates.madeDirectory.withLock({ $0 }) {
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "rogue-ca"] {
            try openssl(["req", "-x509"] + ec + ["-keyout", "\(ca).key", "-out", "\(ca).pem", "-days", "2",
                                                 "-subj", "/CN=Torus Test \(ca)"], in: dir)
        }
        try leaf("server", ca: "ca", subject: "/O=Torus/CN=localhost", san: "DNS:localhost,IP:127.0.0.1")
        try leaf("other", ca: "ca", subject: "/O=Torus/CN=other.test", san: "DNS:other.test")
        try leaf("renewed", ca: "ca", subject: "/O=Torus Renewed/CN=localhost", san: "DNS:localhost")
        try leaf("expired", ca: "ca", subject: "/O=Torus/CN=localhost", san: "DNS:localhost", days: -1)
        try leaf("rogue", ca: "rogue-ca", subject: "/O=Rogue/CN=localhost", san: "DNS:localhost")
        try leaf("client", ca: "ca", subject: "/O=Torus/CN=client-1", san: "DNS:client-1", clientAuth: true)
        try leaf("rogue-client", ca: "rogue-ca", subject: "/O=Rogue/CN=client-2", san: "DNS:client-2",
                 clientAuth: true)
    }

    private func leaf(_ name: String, ca: String, subject: String, san: String, days: Int = 2,
                      clientAuth: Bool = false) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", subject], in: directory)
        var ext = "subjectAltName=\(san)\nbasicConstraints=CA:FALSE\n"
        ext += clientAuth ? "extendedKeyUsage=clientAuth\n" : "extendedKeyUsage=serverAuth\n"
        try ext.write(toFile: directory + "/\(name).ext", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key",
                     "-CAcreateserial", "-out", "\(name).pem", "-days", "\(days)", "-extfile", "\(name).ext"],
                    in: directory)
    }

    func path(_ file: String) -> String { directory + "/" + file }
    var caFile: String { path("ca.pem") }
    func files(_ name: String) -> TLSConfiguration.CertificateFiles {
        TLSConfiguration.CertificateFiles(chainPath: path("\(name).pem"), keyPath: path("\(name).key"))
    }

    /// A server configuration on the localhost certificate.
    func server(alpn: [String] = [], clientAuthentication: TLSConfiguration.ClientAuthentication = .none,
                min: TLSConfiguration.Version = .tls12, max: TLSConfiguration.Version = .tls13,
                sni: [String: String] = [:], tickets: Bool = true) -> TLSConfiguration {
        var server = TLSConfiguration.Server(certificate: files("server"), clientAuthentication: clientAuthentication,
                                             sessionTickets: tickets)
        server.sniCertificates = sni.mapValues { files($0) }
        return TLSConfiguration(role: .server(server), alpn: alpn, minimumVersion: min, maximumVersion: max)
    }

    /// A client configuration trusting the test CA, verifying `serverName`.
    func client(serverName: String = "localhost", alpn: [String] = [], certificate: String? = nil,
                min: TLSConfiguration.Version = .tls12, max: TLSConfiguration.Version = .tls13) -> TLSConfiguration {
        let client = TLSConfiguration.Client(trustRoots: .caFile(caFile), serverName: serverName,
                                             certificate: certificate.map { files($0) })
        return TLSConfiguration(role: .client(client), alpn: alpn, minimumVersion: min, maximumVersion: max)
    }
}

/// A client and a server engine joined by an in-memory wire: ciphertext taken from
/// one is fed to the other, in chunks of `chunk` bytes.
final class EnginePair {
    let client: TLSEngine
    let server: TLSEngine
    var clientReceived: [UInt8] = []
    var serverReceived: [UInt8] = []
    var chunk = 16 * 1024

    init(client: TLSEngine, server: TLSEngine) {
        self.client = client
        self.server = server
    }

    convenience init(client: TLSContext, server: TLSContext, serverName: String? = nil,
                     session: TLSSession? = nil) throws {
        self.init(client: try TLSEngine(context: client, serverName: serverName, resuming: session),
                  server: try TLSEngine(context: server))
    }

    /// Moves every pending ciphertext byte from `from` to `to`; returns how many.
    @discardableResult
    func move(from: TLSEngine, to: TLSEngine) -> Int {
        var moved = 0
        var buffer = [UInt8](repeating: 0, count: chunk)
        while from.pendingCiphertext > 0 {
            let n = buffer.withUnsafeMutableBytes { from.takeCiphertext(into: $0) }
            if n == 0 { break }
            buffer.withUnsafeBytes { to.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            moved += n
        }
        return moved
    }

    /// Reads all the plaintext `engine` can produce now (driving its handshake).
    func drive(_ engine: TLSEngine, into received: inout [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let result = buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(TLSError) -> TLSReadResult in try engine.readPlaintext(into: bytes) }
            }
            guard case .success(.bytes(let n)) = result, n > 0 else { return }
            received.append(contentsOf: buffer[0..<n])
        }
    }

    /// Exchanges ciphertext until neither side has anything more to say.
    func pump(rounds: Int = 1000) {
        drive(client, into: &clientReceived)
        for _ in 0..<rounds {
            let moved = move(from: client, to: server) + move(from: server, to: client)
            drive(server, into: &serverReceived)
            drive(client, into: &clientReceived)
            if moved == 0 && client.pendingCiphertext == 0 && server.pendingCiphertext == 0 { return }
        }
    }

    /// Handshakes; expects both sides established.
    func handshake(sourceLocation: SourceLocation = #_sourceLocation) {
        pump()
        #expect(client.state.isEstablished, "client \(client.state)", sourceLocation: sourceLocation)
        #expect(server.state.isEstablished, "server \(server.state)", sourceLocation: sourceLocation)
    }
}

extension TLSEngineState {
    var isEstablished: Bool {
        if case .established = self { return true }
        return false
    }
    var info: TLSSessionInfo? {
        if case .established(let info) = self { return info }
        return nil
    }
    var error: TLSError? {
        if case .failed(let error) = self { return error }
        return nil
    }
}

extension TLSEngine {
    /// Writes `bytes` as plaintext.
    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in try writePlaintext(raw) }
    }

    /// Takes every pending ciphertext byte.
    func takeAllCiphertext() -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { takeCiphertext(into: $0) }
            if n == 0 { return out }
            out.append(contentsOf: buffer[0..<n])
        }
    }

    func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Reads once; returns the error thrown, if any.
    func readError() -> TLSError? {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        do {
            while true {
                let result = try buffer.withUnsafeMutableBytes { b in try readPlaintext(into: b) }
                guard case .bytes(let n) = result, n > 0 else { return nil }
            }
        } catch let error as TLSError {
            return error
        } catch {
            return .handshakeFailure(reason: "not a TLSError: \(error)")
        }
    }
}

