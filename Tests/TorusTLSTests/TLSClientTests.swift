import Foundation
import Glibc
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusTLS
import TorusWebSocket

extension TLSTests {
    /// `https://` in `HTTPClient` and `wss://` in `WebSocketClient`: against Torus
    /// servers with TLS and against `openssl s_server`, and every certificate the
    /// client must refuse, refused with a typed error naming why.
    @Suite struct TLSClients {
        /// A client context trusting the test CA, offering ALPN `alpn`.
        static func trustingTestCA(_ certs: TestCertificates, alpn: [String] = ["http/1.1"]) throws -> TLSContext {
            try TLSContext(TLSConfiguration(role: .client(TLSConfiguration.Client(trustRoots: .caFile(certs.caFile))),
                                            alpn: alpn))
        }

        /// An HTTPS server on `loop` answering `/json` and echoing `POST /echo`, on the
        /// certificate `name` of the test set.
        static func httpsServer(on loop: EventLoop, _ certs: TestCertificates, certificate name: String) throws -> HTTPServer {
            var router = HTTPRouter()
            router.get("/json") { request in
                .text(#"{"over":"\#(request.tlsSession.map { "\($0.version)" } ?? "plaintext")"}"#)
            }
            router.post("/echo") { request in
                HTTPServerResponse(body: .bytes(try await request.body.collect(upTo: 4 << 20)))
            }
            var configuration = HTTPServerConfiguration()
            let files = certs.files(name)
            configuration.tls = try TLSContext(.server(chainPath: files.chainPath, keyPath: files.keyPath,
                                                       alpn: ["http/1.1"]))
            return try HTTPServer.start(on: [loop], address: try .tcp("127.0.0.1", 0), router: router,
                                        configuration: configuration)
        }

        /// The `HTTPClientError` a request to `url` failed with (nil: it succeeded).
        static func failure(_ client: HTTPClient, _ url: String) async -> HTTPClientError? {
            do {
                let response = try await client.get(url)
                _ = try await response.body.collect(upTo: 1 << 20)
                return nil
            } catch let error as HTTPClientError {
                return error
            } catch {
                return .requestBodyFailed("unexpected \(error)")
            }
        }

        /// Expects the request to `url` to fail with `expected`, naming what it got.
        static func expectFailure(_ client: HTTPClient, _ url: String, _ expected: HTTPClientError?,
                                  sourceLocation: SourceLocation = #_sourceLocation) async {
            let failure = await failure(client, url)
            #expect(failure == expected, "\(url): \(failure.map { "\($0)" } ?? "no error")",
                    sourceLocation: sourceLocation)
        }

        @Test func httpClientSpeaksHTTPSAndRefusesBadCertificates() async throws {
            let certs = try await TestCertificates.get()
            try await withGroup(loops: 2) { group in
                let good = try Self.httpsServer(on: group.loops[0], certs, certificate: "server")
                let wrongHost = try Self.httpsServer(on: group.loops[0], certs, certificate: "other")
                let expired = try Self.httpsServer(on: group.loops[0], certs, certificate: "expired")
                let rogue = try Self.httpsServer(on: group.loops[0], certs, certificate: "rogue")
                var configuration = HTTPClientConfiguration()
                configuration.tls = try Self.trustingTestCA(certs)
                let client = HTTPClient(loop: group.loops[1], configuration: configuration)
                let port = good.address.port ?? 0

                // Two requests on one kept-alive TLS connection.
                for _ in 0..<2 {
                    let response = try await client.get("https://localhost:\(port)/json")
                    #expect(response.status.code == 200)
                    #expect(try await response.body.collect(upTo: 1 << 20) == Array(#"{"over":"tls13"}"#.utf8))
                }
                #expect(client.connectionCounts(scheme: .https, host: "localhost", port: port) == (idle: 1, open: 1))
                // 1 MiB up and back.
                let payload = testBytes(1 << 20, seed: 7)
                let echoed = try await client.post("https://localhost:\(port)/echo", body: payload)
                #expect(try await echoed.body.collect(upTo: 2 << 20) == payload)
                // By address: the certificate names IP:127.0.0.1 too.
                await Self.expectFailure(client, "https://127.0.0.1:\(port)/json", nil)

                // What a client must refuse, each with its reason.
                await Self.expectFailure(client, "https://localhost:\(wrongHost.address.port ?? 0)/json",
                                         .tls(.certificateVerifyFailed(.hostnameMismatch)))
                await Self.expectFailure(client, "https://localhost:\(expired.address.port ?? 0)/json",
                                         .tls(.certificateVerifyFailed(.expired)))
                await Self.expectFailure(client, "https://localhost:\(rogue.address.port ?? 0)/json",
                                         .tls(.certificateVerifyFailed(.unknownCA)))
                // The default context trusts the system's roots only: the test CA is unknown.
                let defaults = HTTPClient(loop: group.loops[1])
                await Self.expectFailure(defaults, "https://localhost:\(port)/json",
                                         .tls(.certificateVerifyFailed(.unknownCA)))
                // Plain http to the TLS port: the server's bare 400, read as a response.
                let plain = try await client.get("http://localhost:\(port)/json")
                #expect(plain.status.code == 400)
                _ = try? await plain.body.collect(upTo: 1 << 20)

                await defaults.shutdown()
                await client.shutdown()
                for server in [good, wrongHost, expired, rogue] { await server.shutdown(grace: .seconds(1)) }
            }
        }

        @Test func httpClientAgainstOpenSSLServer() async throws {
            let certs = try await TestCertificates.get()
            let port = try freeLoopbackPort()
            let server = try ChildProcess("/usr/bin/openssl",
                                          ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", certs.path("server.pem"),
                                           "-key", certs.path("server.key"), "-www", "-alpn", "http/1.1", "-quiet"],
                                          input: true)
            try await waitUntilAccepting(port: port)
            try await withLoop { loop in
                var configuration = HTTPClientConfiguration()
                configuration.tls = try Self.trustingTestCA(certs)
                let client = HTTPClient(loop: loop, configuration: configuration)
                // s_server -www answers HTTP/1.0 with its status page and closes.
                let response = try await client.get("https://localhost:\(port)/")
                #expect(response.status.code == 200)
                let page = String(decoding: try await response.body.collect(upTo: 1 << 20), as: UTF8.self)
                #expect(page.contains("Ciphers supported in s_server binary"), "\(page.prefix(300))")
                #expect(page.contains("TLSv1.3"), "\(page.prefix(300))")
                await client.shutdown()
            }
            _ = await server.stop()
        }

        @Test func webSocketClientSpeaksWSS() async throws {
            let certs = try await TestCertificates.get()
            try await withGroup(loops: 2) { group in
                var router = HTTPRouter()
                router.webSocket("/echo", configuration: WebSocketServerConfiguration(deflate: PerMessageDeflateConfiguration())) { ws in
                    ws.onMessageBytes = { ws, kind, bytes in ws.send(bytes, as: kind) }
                }
                var configuration = HTTPServerConfiguration()
                configuration.tls = try TLSContext(certs.server(alpn: ["http/1.1"]))
                let server = try HTTPServer.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0),
                                                  router: router, configuration: configuration)
                let port = server.address.port ?? 0

                var client = WebSocketClientConfiguration(deflate: PerMessageDeflateConfiguration())
                client.tls = try Self.trustingTestCA(certs, alpn: [])
                let ws = try await WebSocketClient.connect(to: "wss://localhost:\(port)/echo", on: group.loops[1],
                                                           configuration: client)
                try await ws.send(text: "über TLS")
                #expect(try await ws.nextMessage() == .text("über TLS"))
                let big = testBytes(1 << 20, seed: 3)
                try await ws.send(binary: big)
                #expect(try await ws.nextMessage() == .binary(big))
                await ws.close()

                // An unknown CA (the default context: system roots only) is the TLS error.
                do {
                    let refused = try await WebSocketClient.connect(to: "wss://localhost:\(port)/echo", on: group.loops[1])
                    await refused.close()
                    Issue.record("a certificate from an unknown CA was accepted")
                } catch let error as TLSError {
                    #expect(error == .certificateVerifyFailed(.unknownCA))
                }
                // A certificate for another name likewise (other.test, asked for localhost).
                let wrongHost = try Self.httpsServer(on: group.loops[0], certs, certificate: "other")
                do {
                    let refused = try await WebSocketClient.connect(
                        to: "wss://localhost:\(wrongHost.address.port ?? 0)/echo", on: group.loops[1], configuration: client)
                    await refused.close()
                    Issue.record("a certificate for another host was accepted")
                } catch let error as TLSError {
                    #expect(error == .certificateVerifyFailed(.hostnameMismatch))
                }
                await wrongHost.shutdown(grace: .seconds(1))
                await server.shutdown(grace: .seconds(1))
            }
        }
    }
}

/// A loopback port nobody listens on now (bound, read, released).
func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw CertificateError(message: "socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Bool in
            bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
        }
    }
    guard bound else { throw CertificateError(message: "bind: errno \(errno)") }
    return UInt16(bigEndian: address.sin_port)
}

/// Waits (bounded) until something accepts on 127.0.0.1:`port`.
func waitUntilAccepting(port: UInt16, timeout: Duration = .seconds(20)) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        close(fd)
        if connected { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw CertificateError(message: "nothing accepts on port \(port)")
}
