import Foundation
import Testing
import TorusTestSupport
@testable import TorusTLS

extension TLSTests {
    /// Hostile or broken input ends in a named ``TLSError``, never a trap or a hang.
    @Suite struct BadInput {
        @Test func garbageInsteadOfAClientHello() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let context = try TLSContext(certs.server())
                let binary = try TLSEngine(context: context)
                binary.feed([0x00, 0x00, 0x00, 0x00, 0x00] + testBytes(59))
                #expect(binary.readError() == .malformedRecord(reason: "wrong version number"))
                #expect(binary.state.error == .malformedRecord(reason: "wrong version number"))
                // A handshake record whose body is garbage.
                let record = try TLSEngine(context: context)
                record.feed([0x16, 0x03, 0x01, 0x00, 0x40] + [UInt8](repeating: 0xff, count: 64))
                let error = try #require(record.readError())
                #expect(record.state == .failed(error))
                // Text that is not a request line.
                let text = try TLSEngine(context: context)
                text.feed(Array("HELLO-THERE\r\n".utf8))
                #expect(text.readError() == .malformedRecord(reason: "ASCII text instead of a TLS record"))
                // Once failed, more input is ignored and writes are refused with the same error.
                text.feed(testBytes(100))
                #expect(text.state.error == .malformedRecord(reason: "ASCII text instead of a TLS record"))
                #expect(throws: TLSError.malformedRecord(reason: "ASCII text instead of a TLS record")) {
                    try text.write([1])
                }
            }
        }

        @Test(arguments: ["GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "POST /x HTTP/1.0\r\n", "OPTIONS * HTTP/1.1\r\n", "GE"])
        func plaintextHTTPOnTheTLSPort(request: String) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSEngine(context: TLSContext(certs.server()))
                server.feed(Array(request.utf8))
                #expect(server.readError() == .plaintextHTTP)
                #expect(server.state == .failed(.plaintextHTTP))
                let answer = String(decoding: TLSEngine.plaintextHTTPResponse, as: UTF8.self)
                #expect(answer.hasPrefix("HTTP/1.1 400 "))
                let body = try #require(answer.split(separator: "\r\n\r\n", omittingEmptySubsequences: false).last)
                #expect(answer.contains("Content-Length: \(body.utf8.count)\r\n"))
            }
        }

        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func truncatedRecordThenEOF(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()),
                                          server: TLSContext(certs.server(min: version, max: version)))
                pair.handshake()
                try pair.client.write(testBytes(1000))
                let ciphertext = pair.client.takeAllCiphertext()
                pair.server.feed(Array(ciphertext.dropLast(10)))
                #expect(pair.server.readError() == nil)
                pair.server.feedEOF()
                #expect(pair.server.readError() == .unexpectedEOF)
                #expect(pair.server.state == .failed(.unexpectedEOF))
            }
        }

        @Test func peerGoneMidHandshake() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(certs.server()))
                pair.drive(pair.client, into: &pair.clientReceived)
                let hello = pair.client.takeAllCiphertext()
                pair.server.feed(Array(hello.prefix(hello.count / 2)))
                #expect(pair.server.readError() == nil)
                #expect(pair.server.state == .handshaking)
                pair.server.feedEOF()
                #expect(pair.server.readError() == .unexpectedEOF)
            }
        }

        @Test func handshakeTimeout() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                var configuration = certs.server()
                configuration.handshakeTimeout = .seconds(3)
                let pair = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(configuration))
                pair.drive(pair.client, into: &pair.clientReceived)
                pair.move(from: pair.client, to: pair.server)
                pair.drive(pair.server, into: &pair.serverReceived)
                // The client then says nothing more.
                let expiry = pair.server.handshakeExpiry
                #expect(expiry > ContinuousClock.now + .seconds(2))
                #expect(!pair.server.expireHandshake(now: expiry - .milliseconds(1)))
                #expect(pair.server.expireHandshake(now: expiry))
                #expect(pair.server.state == .failed(.handshakeTimeout))
                #expect(pair.server.readError() == .handshakeTimeout)
                // An established engine does not expire.
                let done = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(configuration))
                done.handshake()
                #expect(!done.server.expireHandshake(now: done.server.handshakeExpiry + .seconds(60)))
            }
        }

        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func oversizeRecord(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()),
                                          server: TLSContext(certs.server(min: version, max: version)))
                pair.handshake()
                // An application-data record announcing 18433 bytes (over 16 KiB + 2 KiB).
                pair.server.feed([0x17, 0x03, 0x03, 0x48, 0x01] + testBytes(200))
                #expect(pair.server.readError() == .recordOverflow)
                // The fatal alert for the peer is queued, and the peer names it.
                #expect(pair.server.pendingCiphertext > 0)
                pair.move(from: pair.server, to: pair.client)
                #expect(pair.client.readError() == .recordOverflow)
            }
        }

        @Test(arguments: [TLSConfiguration.Version.tls12, .tls13])
        func flippedMACByte(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()),
                                          server: TLSContext(certs.server(min: version, max: version)))
                pair.handshake()
                try pair.client.write(Array("hello".utf8))
                var ciphertext = pair.client.takeAllCiphertext()
                ciphertext[ciphertext.count - 1] ^= 0x01
                pair.server.feed(ciphertext)
                #expect(pair.server.readError() == .badRecordMAC)
                pair.move(from: pair.server, to: pair.client)
                #expect(pair.client.readError() == .badRecordMAC)
                #expect(pair.serverReceived.isEmpty)
            }
        }

        @Test func renegotiationIsRefused() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()),
                                          server: TLSContext(certs.server(max: .tls12)))
                pair.handshake()
                #expect(pair.client.requestRenegotiationForTesting())
                pair.pump()
                #expect(pair.server.state == .failed(.renegotiationRefused))
                #expect(pair.client.state == .failed(.renegotiationRefused))
            }
        }

        @Test func noCommonVersion() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client(min: .tls13)),
                                          server: TLSContext(certs.server(max: .tls12)))
                pair.pump()
                guard case .protocolVersion = pair.server.state.error else {
                    Issue.record("server: \(pair.server.state)")
                    return
                }
                guard case .protocolVersion = pair.client.state.error else {
                    Issue.record("client: \(pair.client.state)")
                    return
                }
            }
        }

        @Test(arguments: [("expired", "localhost", CertificateProblem.expired, 45),
                          ("server", "wrong.example", .hostnameMismatch, 42),
                          ("rogue", "localhost", .unknownCA, 48)])
        func clientNamesWhyTheServerCertificateFailed(certificate: String, serverName: String,
                                                      problem: CertificateProblem, alert: Int) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(.server(chainPath: certs.path("\(certificate).pem"),
                                                    keyPath: certs.path("\(certificate).key")))
                let pair = try EnginePair(client: TLSContext(certs.client(serverName: serverName)), server: server)
                pair.pump()
                #expect(pair.client.state == .failed(.certificateVerifyFailed(problem)))
                guard case .alertReceived(_, let code) = pair.server.state.error else {
                    Issue.record("server: \(pair.server.state)")
                    return
                }
                // 42 is bad_certificate: OpenSSL sends it for a hostname mismatch.
                #expect(code == alert)
            }
        }

        @Test func hostnameVerificationCanBeTurnedOff() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                var client = TLSConfiguration.Client(trustRoots: .caFile(certs.caFile), serverName: "wrong.example")
                client.verifyHostname = false
                let pair = try EnginePair(client: TLSContext(TLSConfiguration(role: .client(client))),
                                          server: TLSContext(certs.server()))
                pair.handshake()
                // The chain is still verified.
                let rogue = try EnginePair(client: TLSContext(TLSConfiguration(role: .client(client))),
                                           server: TLSContext(.server(chainPath: certs.path("rogue.pem"),
                                                                      keyPath: certs.path("rogue.key"))))
                rogue.pump()
                #expect(rogue.client.state == .failed(.certificateVerifyFailed(.unknownCA)))
            }
        }

        /// Every byte of the server's first flight flipped in turn (bounded): the
        /// client always ends failed with a typed error, never stuck, never trapping.
        @Test func corruptedServerFlightAlwaysFails() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server())
                let client = try TLSContext(certs.client())
                let probe = try EnginePair(client: client, server: server)
                probe.drive(probe.client, into: &probe.clientReceived)
                let hello = probe.client.takeAllCiphertext()
                probe.server.feed(hello)
                probe.drive(probe.server, into: &probe.serverReceived)
                let flightLength = probe.server.pendingCiphertext
                #expect(flightLength > 200)
                let step = max(1, flightLength / 150)
                for index in stride(from: 0, to: flightLength, by: step) {
                    let pair = try EnginePair(client: client, server: server)
                    pair.drive(pair.client, into: &pair.clientReceived)
                    pair.move(from: pair.client, to: pair.server)
                    pair.drive(pair.server, into: &pair.serverReceived)
                    var flight = pair.server.takeAllCiphertext()
                    flight[index] ^= 0x5a
                    pair.client.feed(flight)
                    pair.drive(pair.client, into: &pair.clientReceived)
                    if pair.client.state == .handshaking {
                        pair.client.feedEOF()
                        pair.drive(pair.client, into: &pair.clientReceived)
                    }
                    #expect(pair.client.state.error != nil, "byte \(index): \(pair.client.state)")
                }
            }
        }
    }
}
