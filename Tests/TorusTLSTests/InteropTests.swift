import Foundation
import Testing
import TorusTestSupport
@testable import TorusTLS

/// What a run against an OpenSSL peer observed (gathered on the run's own thread,
/// checked by the test).
struct PeerRun: Sendable {
    var failure: String?
    var states: [String: String] = [:]
    var info: TLSSessionInfo?
    var received: [String: String] = [:]
    var flags: [String: Bool] = [:]
    var exitStatus: Int32?
    var peerOutput = ""

    /// Runs `body` on its own thread; a thrown error becomes `failure`.
    static func on(_ body: @escaping @Sendable (inout PeerRun) throws -> Void) async -> PeerRun {
        await onOwnThread {
            var run = PeerRun()
            do { try body(&run) } catch { run.failure = "\(error)" }
            return run
        }
    }
}

extension TLSTests {
    /// The engine against OpenSSL's own command-line peers, over real loopback TCP.
    @Suite struct Interop {
        @Test(arguments: ["-tls1_2", "-tls1_3"])
        func clientEngineAgainstOpenSSLServer(versionFlag: String) async throws {
            let certs = try await TestCertificates.get()
            let run = await PeerRun.on { run in
                let server = try ChildProcess("/usr/bin/openssl",
                    ["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", versionFlag, "-rev",
                     "-cert", "server.pem", "-key", "server.key", "-alpn", "http/1.1"],
                    directory: certs.directory, input: true)
                server.waitFor { $0.contains("ACCEPT") }
                guard let line = server.text.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }),
                      let port = line.split(separator: ":").last.flatMap({ UInt16($0) }) else {
                    run.failure = "no ACCEPT line: \(server.text)"
                    return
                }
                let engine = try TLSEngine(context: TLSContext(certs.client(alpn: ["http/1.1"])))
                let bridge = SocketBridge(fd: try SocketBridge.connect(port: port), engine: engine)
                run.flags["established"] = bridge.run { $0.engine.state.isEstablished }
                run.info = engine.state.info

                try engine.write(Array("hello torus\n".utf8))
                bridge.run { $0.received.count >= 12 }
                run.received["line"] = String(decoding: bridge.received, as: UTF8.self)
                // 1000 lines of 1000 bytes (1 MB) come back reversed, byte for byte
                // (s_server reverses each line it reads).
                let (sent, expected) = reversedLines(count: 1000, length: 1000)
                bridge.received = []
                try engine.write(sent)
                bridge.run(timeout: .seconds(30)) { $0.received.count >= expected.count }
                run.flags["bulk"] = bridge.received == expected
                // "CLOSE" makes s_server send close_notify; the engine answers it.
                try engine.write(Array("CLOSE\n".utf8))
                run.flags["closed"] = bridge.run { $0.engine.state == .closed }
                run.exitStatus = server.waitForExit()
                run.peerOutput = server.text
            }
            #expect(run.failure == nil)
            #expect(run.flags["established"] == true)
            let info = try #require(run.info)
            #expect(info.version == (versionFlag == "-tls1_3" ? .tls13 : .tls12))
            #expect(info.alpn == "http/1.1")
            #expect(info.peerSubject == "CN=localhost,O=Torus")
            #expect(run.received["line"] == "surot olleh\n")
            #expect(run.flags["bulk"] == true)
            #expect(run.flags["closed"] == true)
            #expect(run.exitStatus == 0, "\(run.peerOutput)")
            expectNothingLive()
        }

        @Test func serverEngineAgainstOpenSSLClientWithMutualTLS() async throws {
            let certs = try await TestCertificates.get()
            let run = await PeerRun.on { run in
                let listener = try Listener()
                let context = try TLSContext(certs.server(alpn: ["http/1.1"],
                                                          clientAuthentication: .required(caFile: certs.caFile)))
                let client = try ChildProcess("/usr/bin/openssl",
                    ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-servername", "localhost",
                     "-CAfile", "ca.pem", "-verify_return_error", "-verify_hostname", "localhost",
                     "-alpn", "http/1.1", "-cert", "client.pem", "-key", "client.key", "-quiet"],
                    directory: certs.directory, input: true)
                let bridge = SocketBridge(fd: try listener.accept(), engine: try TLSEngine(context: context))
                run.flags["established"] = bridge.run { $0.engine.state.isEstablished }
                run.info = bridge.engine.state.info
                client.send("ping\n")
                bridge.run { $0.received.count >= 5 }
                run.received["server"] = String(decoding: bridge.received, as: UTF8.self)
                try bridge.engine.write(Array("pong\n".utf8))
                bridge.flush()
                run.flags["pong"] = client.waitFor { $0.contains("pong") }
                bridge.engine.close()
                bridge.flush()
                run.flags["closed"] = bridge.run { $0.engine.state == .closed }
                run.flags["exited"] = client.waitForExit() != nil
                run.peerOutput = client.text
            }
            #expect(run.failure == nil)
            #expect(run.flags["established"] == true, "\(run.peerOutput)")
            let info = try #require(run.info)
            #expect(info.peerSubject == "CN=client-1,O=Torus")
            #expect(info.alpn == "http/1.1")
            #expect(info.serverName == "localhost")
            #expect(run.received["server"] == "ping\n")
            #expect(run.flags["pong"] == true)
            #expect(run.flags["closed"] == true)
            #expect(run.flags["exited"] == true)
            expectNothingLive()
        }

        @Test func openSSLClientWithoutCertificateIsRefused() async throws {
            let certs = try await TestCertificates.get()
            let run = await PeerRun.on { run in
                let listener = try Listener()
                let context = try TLSContext(certs.server(clientAuthentication: .required(caFile: certs.caFile)))
                let client = try ChildProcess("/usr/bin/openssl",
                    ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-servername", "localhost",
                     "-CAfile", "ca.pem", "-verify_return_error", "-quiet"],
                    directory: certs.directory, input: true)
                let bridge = SocketBridge(fd: try listener.accept(), engine: try TLSEngine(context: context))
                bridge.run { $0.engine.state.error != nil }
                run.states["server"] = "\(bridge.engine.state)"
                run.flags["refused"] = bridge.engine.state == .failed(.peerCertificateRequired)
                bridge.flush() // the alert
                client.closeInput()
                run.exitStatus = client.waitForExit()
                run.peerOutput = client.text
            }
            #expect(run.failure == nil)
            #expect(run.flags["refused"] == true, "\(run.states)")
            #expect(run.exitStatus.map { $0 != 0 } == true)
            #expect(run.peerOutput.contains("alert"), "\(run.peerOutput)")
            expectNothingLive()
        }

        /// `R` on s_client's input asks for a TLS 1.2 renegotiation; the engine refuses it.
        @Test func openSSLClientRenegotiationIsRefused() async throws {
            let certs = try await TestCertificates.get()
            let run = await PeerRun.on { run in
                let listener = try Listener()
                let context = try TLSContext(certs.server(max: .tls12))
                let client = try ChildProcess("/usr/bin/openssl",
                    ["s_client", "-connect", "127.0.0.1:\(listener.port)", "-servername", "localhost",
                     "-CAfile", "ca.pem", "-verify_return_error", "-tls1_2"],
                    directory: certs.directory, input: true)
                let bridge = SocketBridge(fd: try listener.accept(), engine: try TLSEngine(context: context))
                run.flags["established"] = bridge.run { $0.engine.state.isEstablished }
                client.waitFor { $0.contains("Verify return code") }
                client.send("R\n")
                bridge.run { $0.engine.state.error != nil }
                run.states["server"] = "\(bridge.engine.state)"
                run.flags["refused"] = bridge.engine.state == .failed(.renegotiationRefused)
                client.closeInput()
                run.exitStatus = client.waitForExit()
                run.peerOutput = client.text
            }
            #expect(run.failure == nil)
            #expect(run.flags["established"] == true)
            #expect(run.flags["refused"] == true, "\(run.states) \(run.peerOutput.suffix(500))")
            #expect(run.peerOutput.contains("RENEGOTIATING"))
            expectNothingLive()
        }

        @Test func curlSpeakingPlaintextHTTPGetsAnAnswer() async throws {
            let certs = try await TestCertificates.get()
            let run = await PeerRun.on { run in
                let listener = try Listener()
                let context = try TLSContext(certs.server())
                let curl = try ChildProcess("/usr/bin/curl", ["-s", "-i", "--max-time", "10",
                                                             "http://127.0.0.1:\(listener.port)/"],
                                           directory: certs.directory, input: true)
                let bridge = SocketBridge(fd: try listener.accept(), engine: try TLSEngine(context: context))
                bridge.run { $0.engine.state.error != nil }
                run.flags["detected"] = bridge.engine.state == .failed(.plaintextHTTP)
                bridge.sendAll(TLSEngine.plaintextHTTPResponse)
                shutdown(bridge.fd, Int32(SHUT_WR))
                run.exitStatus = curl.waitForExit()
                run.peerOutput = curl.text
            }
            #expect(run.failure == nil)
            #expect(run.flags["detected"] == true)
            #expect(run.exitStatus == 0)
            #expect(run.peerOutput.hasPrefix("HTTP/1.1 400"))
            #expect(run.peerOutput.contains("This port speaks TLS"))
            expectNothingLive()
        }
    }
}
