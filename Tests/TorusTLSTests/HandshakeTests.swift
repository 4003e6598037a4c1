import Foundation
import Testing
import TorusTestSupport
@testable import TorusTLS

extension TLSTests {
    @Suite struct Handshake {
        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func handshakeNegotiatesVersionALPNAndVerifiesServer(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(alpn: ["h2", "http/1.1"], min: version, max: version))
                let client = try TLSContext(certs.client(alpn: ["http/1.1"]))
                let pair = try EnginePair(client: client, server: server)
                pair.handshake()
                let c = try #require(pair.client.state.info)
                let s = try #require(pair.server.state.info)
                #expect(c.version == version && s.version == version)
                #expect(c.alpn == "http/1.1" && s.alpn == "http/1.1")
                #expect(c.peerSubject == "CN=localhost,O=Torus")
                #expect(s.peerSubject == nil)
                #expect(s.serverName == "localhost")
                #expect(c.cipher == s.cipher && !c.cipher.isEmpty)
                #expect(!c.sessionReused)
            }
        }

        @Test func alpnWithoutCommonProtocolIsRefused() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client(alpn: ["h2"])),
                                          server: TLSContext(certs.server(alpn: ["http/1.1"])))
                pair.pump()
                #expect(pair.server.state == .failed(.noApplicationProtocol))
                #expect(pair.client.state == .failed(.noApplicationProtocol))
            }
        }

        @Test func sniPicksTheCertificateForTheName() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(sni: ["Other.Test": "other"]))
                let client = try TLSContext(certs.client())
                let other = try EnginePair(client: client, server: server, serverName: "other.test")
                other.handshake()
                #expect(other.client.state.info?.peerSubject == "CN=other.test,O=Torus")
                #expect(other.server.state.info?.serverName == "other.test")
                let plain = try EnginePair(client: client, server: server, serverName: "localhost")
                plain.handshake()
                #expect(plain.client.state.info?.peerSubject == "CN=localhost,O=Torus")
            }
        }

        @Test func mutualTLSRequiredGivesTheVerifiedSubject() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(clientAuthentication: .required(caFile: certs.caFile)))
                let pair = try EnginePair(client: TLSContext(certs.client(certificate: "client")), server: server)
                pair.handshake()
                #expect(pair.server.state.info?.peerSubject == "CN=client-1,O=Torus")
            }
        }

        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func mutualTLSRequiredRefusesAClientWithoutCertificate(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(clientAuthentication: .required(caFile: certs.caFile),
                                                         min: version, max: version))
                let pair = try EnginePair(client: TLSContext(certs.client()), server: server)
                pair.pump()
                #expect(pair.server.state == .failed(.peerCertificateRequired))
                // TLS 1.3 names it (certificate_required, 116); TLS 1.2 says handshake_failure (40).
                let code = version == .tls13 ? 116 : 40
                guard case .alertReceived(_, code) = pair.client.state.error else {
                    Issue.record("client: \(pair.client.state)")
                    return
                }
            }
        }

        @Test func mutualTLSOptionalAcceptsBothAndRefusesAnUntrustedCertificate() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(clientAuthentication: .optional(caFile: certs.caFile)))
                let anonymous = try EnginePair(client: TLSContext(certs.client()), server: server)
                anonymous.handshake()
                #expect(anonymous.server.state.info?.peerSubject == nil)
                let known = try EnginePair(client: TLSContext(certs.client(certificate: "client")), server: server)
                known.handshake()
                #expect(known.server.state.info?.peerSubject == "CN=client-1,O=Torus")
                let rogue = try EnginePair(client: TLSContext(certs.client(certificate: "rogue-client")),
                                           server: server)
                rogue.pump()
                #expect(rogue.server.state == .failed(.certificateVerifyFailed(.unknownCA)))
                #expect(rogue.client.state == .failed(.alertReceived(description: "unknown ca", code: 48)))
            }
        }

        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func ticketsResumeTheSession(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(min: version, max: version))
                let client = try TLSContext(certs.client())
                let first = try EnginePair(client: client, server: server)
                first.handshake()
                // TLS 1.3 tickets come after the handshake: read a reply to receive them.
                try first.server.write(Array("hello".utf8))
                first.pump()
                #expect(first.clientReceived == Array("hello".utf8))
                let session = try #require(first.client.resumableSession())
                let second = try EnginePair(client: client, server: server, session: session)
                second.handshake()
                #expect(second.client.state.info?.sessionReused == true)
                #expect(second.server.state.info?.sessionReused == true)
                // Without the session: a full handshake.
                let third = try EnginePair(client: client, server: server)
                third.handshake()
                #expect(third.server.state.info?.sessionReused == false)
                // With tickets, neither side keeps sessions per connection.
                #expect(server.cachedSessions == 0)
                #expect(client.cachedSessions == 0)
            }
        }

        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func ticketsOff(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(min: version, max: version, tickets: false))
                let client = try TLSContext(certs.client())
                let first = try EnginePair(client: client, server: server)
                first.handshake()
                try first.server.write(Array("x".utf8))
                first.pump()
                if version == .tls13 {
                    #expect(first.client.resumableSession() == nil)
                }
                // TLS 1.2 resumes by session id from the server's cache instead.
                if version == .tls12, let session = first.client.resumableSession() {
                    let second = try EnginePair(client: client, server: server, session: session)
                    second.handshake()
                    #expect(second.server.state.info?.sessionReused == true)
                    #expect(server.cachedSessions == 1)
                } else if version == .tls12 {
                    Issue.record("TLS 1.2 without tickets gave no resumable session")
                }
            }
        }

        @Test func reloadServesTheNewCertificateAndKeepsLiveConnections() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let dir = certs.path("reload-\(UInt32.random(in: 0...UInt32.max))")
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: dir) }
                func install(_ name: String) throws {
                    for ext in ["pem", "key"] {
                        let data = try Data(contentsOf: URL(fileURLWithPath: certs.path("\(name).\(ext)")))
                        try data.write(to: URL(fileURLWithPath: "\(dir)/live.\(ext)"), options: .atomic)
                    }
                }
                try install("server")
                let server = try TLSContext(.server(chainPath: "\(dir)/live.pem", keyPath: "\(dir)/live.key"))
                let client = try TLSContext(certs.client())
                let live = try EnginePair(client: client, server: server)
                live.handshake()
                #expect(live.client.state.info?.peerSubject == "CN=localhost,O=Torus")

                try install("renewed")
                try server.reload()
                let fresh = try EnginePair(client: client, server: server)
                fresh.handshake()
                #expect(fresh.client.state.info?.peerSubject == "CN=localhost,O=Torus Renewed")

                // The connection made before the reload still carries data both ways.
                let payload = testBytes(100_000)
                try live.client.write(payload)
                try live.server.write(payload)
                live.pump()
                #expect(live.serverReceived == payload)
                #expect(live.clientReceived == payload)

                // A reload that cannot read its files keeps the current certificate.
                try FileManager.default.removeItem(atPath: "\(dir)/live.key")
                #expect(throws: TLSError.self) { try server.reload() }
                let after = try EnginePair(client: client, server: server)
                after.handshake()
                #expect(after.client.state.info?.peerSubject == "CN=localhost,O=Torus Renewed")
            }
        }

        @Test func configurationErrorsNameTheFile() async throws {
            let certs = try await TestCertificates.get()
            withoutLeaks {
                #expect {
                    try TLSContext(.server(chainPath: certs.path("missing.pem"), keyPath: certs.path("server.key")))
                } throws: { error in
                    guard case .configuration(let text) = error as? TLSError else { return false }
                    return text.contains("missing.pem")
                }
                #expect(throws: TLSError.self) {
                    try TLSContext(.server(chainPath: certs.path("server.pem"), keyPath: certs.path("other.key")))
                }
                #expect(throws: TLSError.configuration("ALPN protocol name must be 1...255 bytes: \"\"")) {
                    try TLSContext(certs.server(alpn: [""]))
                }
                // Hostname verification needs a name.
                var noName = TLSConfiguration.Client(trustRoots: .caFile(certs.caFile))
                noName.serverName = nil
                let context = try? TLSContext(TLSConfiguration(role: .client(noName)))
                #expect(context != nil)
                if let context {
                    #expect(throws: TLSError.self) { try TLSEngine(context: context) }
                }
            }
        }
    }
}
