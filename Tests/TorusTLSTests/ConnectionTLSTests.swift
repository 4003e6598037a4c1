import Foundation
import Testing
import Torus
import TorusTestSupport
@testable import TorusTLS

/// Python client: for each size, a TLS connection (verified against the test CA)
/// that sends that many random bytes while reading the echo, then compares.
private let pythonEcho = """
import os, select, socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
for n in [int(x) for x in sys.argv[3].split(',')]:
    data = os.urandom(n)
    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10), server_hostname='localhost')
    version = s.version()
    s.setblocking(False)
    got, sent, deadline = bytearray(), 0, time.time() + 60
    while len(got) < n and time.time() < deadline:
        if sent < n:
            try:
                sent += s.send(data[sent:sent + 65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        try:
            b = s.recv(262144)
            if not b:
                break
            got += b
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            select.select([s], [s] if sent < n else [], [], 0.5)
    print(n, version, 'ok' if bytes(got) == data else 'BAD got %d' % len(got), flush=True)
    s.setblocking(True)
    try:
        s.unwrap()
    except (ssl.SSLError, OSError):
        pass
    s.close()
"""

extension TLSTests {
    /// TLS on the ring: Torus connections with a TLS transform against real peers.
    @Suite struct OnConnections {
        @Test(arguments: ["-tls1_2", "-tls1_3"])
        func openSSLClientEcho(versionFlag: String) async throws {
            let certs = try await TestCertificates.get()
            let ends = Locked<[String]>([])
            let ledger = try await withGroup(loops: 1) { group in
                let server = try startTLSEcho(on: group, certs.server(), ends: ends)
                defer { server.close() }
                let port = try #require(server.address.port)
                let (echoed, text) = await onOwnThread { () -> (Bool, String) in
                    guard let client = try? ChildProcess("/usr/bin/openssl",
                        ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost", versionFlag,
                         "-CAfile", "ca.pem", "-verify_return_error", "-brief"],
                        directory: certs.directory, input: true) else { return (false, "no openssl") }
                    client.waitFor { $0.contains("Protocol version") }
                    client.send("torus over tls \(versionFlag)\n")
                    let echoed = client.waitFor { $0.contains("torus over tls \(versionFlag)\n") }
                    client.closeInput()
                    _ = client.waitForExit()
                    return (echoed, client.text)
                }
                #expect(echoed, "\(text)")
                #expect(text.contains(versionFlag == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"), "\(text)")
                #expect(await eventually { ends.current.count == 1 })
            }
            #expect(ledger[.tlsPlaintext].pool >= 1, "plaintext went through the TLS pool")
            expectNothingLive()
        }

        @Test func pythonClientEchoesEverySize() async throws {
            let certs = try await TestCertificates.get()
            let ends = Locked<[String]>([])
            let sizes = [0, 1, 1000, 16384, 16385, 100_000, 1 << 20, 4 << 20]
            try await withGroup(loops: 1) { group in
                let server = try startTLSEcho(on: group, certs.server(), ends: ends)
                defer { server.close() }
                let port = try #require(server.address.port)
                let (status, text) = await runPython(pythonEcho, ["\(port)", certs.caFile,
                                                                  sizes.map(String.init).joined(separator: ",")])
                #expect(status == 0, "\(text)")
                for size in sizes {
                    #expect(text.contains("\(size) TLSv1.3 ok"), "\(size): \(text)")
                }
                #expect(await eventually { ends.current.count == sizes.count })
            }
            expectNothingLive()
        }

        @Test func torusClientsAgainstTorusServer() async throws {
            let certs = try await TestCertificates.get()
            let ends = Locked<[String]>([])
            let greeting = Array("welcome\n".utf8)
            try await withGroup(loops: 1) { group in
                let server = try startTLSEcho(on: group, certs.server(), ends: ends, greeting: greeting)
                defer { server.close() }
                let port = try #require(server.address.port)
                let client = try TLSContext(certs.client())
                let loop = group.loops[0]
                try await withThrowingTaskGroup(of: Bool.self) { tasks in
                    for i in 0..<24 {
                        tasks.addTask {
                            let payload = testBytes(1000 + i * 7919, seed: UInt64(i + 1))
                            let back = try await torusTLSRound(on: loop, port: port, context: client,
                                                               greeting: greeting.count, payload: payload)
                            return back == greeting + payload
                        }
                    }
                    var exact = 0
                    for try await ok in tasks where ok { exact += 1 }
                    #expect(exact == 24)
                }
                #expect(await eventually { ends.current.count == 24 })
                // The clients close gracefully: close_notify, never a failure.
                #expect(ends.current.allSatisfy { !$0.contains("handshake") && !$0.contains("record") }, "\(ends.current)")
            }
            #expect(await eventually { TLSResources.liveEngines == 0 })
            expectNothingLive()
        }

        @Test func torusClientAgainstOpenSSLServer() async throws {
            let certs = try await TestCertificates.get()
            try await withGroup(loops: 1) { group in
                let server = try ChildProcess("/usr/bin/openssl",
                    ["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev",
                     "-cert", "server.pem", "-key", "server.key"],
                    directory: certs.directory, input: true)
                let accepting = await onOwnThread { server.waitFor { $0.contains("ACCEPT") } }
                #expect(accepting)
                let line = server.text.split(separator: "\n").first { $0.hasPrefix("ACCEPT") }
                let port = try #require(line.flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } })
                let connection = try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: group.loops[0],
                                                                   tls: try TLSContext(certs.client()))
                let (sent, expected) = reversedLines(count: 200, length: 500)
                try await connection.write(sent)
                let back = try await connection.read(exactly: expected.count)
                #expect(back == expected)
                let session = try await group.loops[0].run { connection.connection.tlsSession }
                #expect(session?.peerSubject == "CN=localhost,O=Torus")
                await connection.close()
                _ = await onOwnThread { server.waitForExit(timeout: .seconds(5)) }
            }
            #expect(await eventually { TLSResources.liveEngines == 0 })
            expectNothingLive()
        }

        @Test func mutualTLSRequiredRefusesAClientWithoutCertificate() async throws {
            let certs = try await TestCertificates.get()
            let ends = Locked<[String]>([])
            let subjects = Locked<[String]>([])
            try await withGroup(loops: 1) { group in
                let server = try startTLSEcho(on: group, certs.server(clientAuthentication: .required(caFile: certs.caFile)),
                                              ends: ends, subjects: subjects)
                defer { server.close() }
                let port = try #require(server.address.port)
                let loop = group.loops[0]
                // Without a certificate: refused (TLS 1.3 lets the client finish first;
                // its first read then fails or ends).
                let bare = try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: loop,
                                                             tls: try TLSContext(certs.client()))
                try? await bare.write(Array("hello".utf8))
                let refused: Bool
                do { refused = try await bare.read() == nil } catch { refused = true }
                #expect(refused)
                await bare.close()
                #expect(await eventually { ends.current.contains("\(TLSError.peerCertificateRequired)") }, "\(ends.current)")
                // With one: served, and the server sees who it is.
                let back = try await torusTLSRound(on: loop, port: port,
                                                   context: try TLSContext(certs.client(certificate: "client")),
                                                   greeting: 0, payload: Array("ping".utf8))
                #expect(back == Array("ping".utf8))
                #expect(subjects.current == ["CN=client-1,O=Torus"])
            }
            #expect(await eventually { TLSResources.liveEngines == 0 })
            expectNothingLive()
        }

        /// Bad input on a real socket: each case ends the connection (never a hang),
        /// a fresh client is served right after, and every buffer comes back.
        @Test(arguments: ["garbage", "plaintextHTTP", "stallMidHandshake", "resetMidHandshake", "truncatedThenFIN"])
        func badInput(_ scenario: String) async throws {
            let certs = try await TestCertificates.get()
            let hello = try clientHello(certs)
            let ends = Locked<[String]>([])
            var configuration = certs.server()
            configuration.handshakeTimeout = .milliseconds(600)
            let ledger = try await withGroup(loops: 1) { group in
                let server = try startTLSEcho(on: group, configuration, ends: ends)
                defer { server.close() }
                let port = try #require(server.address.port)
                let started = ContinuousClock.now
                let (bytes, closed) = await onOwnThread { () -> ([UInt8], Bool) in
                    guard let peer = try? RawPeer(port: port) else { return ([], false) }
                    switch scenario {
                    case "garbage":
                        peer.send([0x16, 0x03, 0x01, 0xff, 0xff] + testBytes(600))
                    case "plaintextHTTP":
                        peer.send(Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
                    case "stallMidHandshake":
                        peer.send(Array(hello.prefix(hello.count / 2)))
                    case "resetMidHandshake":
                        peer.send(Array(hello.prefix(hello.count / 2)))
                        usleep(100_000)
                        peer.reset()
                        return ([], true)
                    default:  // truncatedThenFIN
                        peer.send(Array(hello.prefix(hello.count - 7)))
                        peer.shutdownWriting()
                    }
                    let result = peer.readUntilClosed()
                    return (result.bytes, result.closed)
                }
                #expect(closed, "the server left the connection hanging")
                #expect(await eventually { ends.current.count == 1 })
                let end = ends.current.first ?? ""
                switch scenario {
                case "garbage":
                    #expect(end.contains("malformed") || end.contains("record"), "\(end)")
                case "plaintextHTTP":
                    #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 400"))
                    #expect(end == "\(TLSError.plaintextHTTP)")
                case "stallMidHandshake":
                    #expect(end == "\(TLSError.handshakeTimeout)")
                    #expect(ContinuousClock.now - started >= .milliseconds(500))
                case "resetMidHandshake":
                    #expect(!end.isEmpty && end != "orderly", "\(end)")
                default:
                    #expect(end == "\(TLSError.unexpectedEOF)", "\(end)")
                }
                // The server keeps serving everyone else.
                let back = try await torusTLSRound(on: group.loops[0], port: port,
                                                   context: try TLSContext(certs.client()),
                                                   greeting: 0, payload: testBytes(50_000))
                #expect(back == testBytes(50_000))
            }
            #expect(ledger[.tlsPlaintext].application == 0)
            #expect(await eventually { TLSResources.liveEngines == 0 })
            expectNothingLive()
        }

        /// Bad records after the handshake, from a client engine on a blocking socket:
        /// the server sends its alert and closes with the named error, then serves a
        /// fresh client.
        @Test(arguments: ["badMAC", "oversizeRecord", "renegotiation"])
        func badRecordsAfterTheHandshake(_ scenario: String) async throws {
            let certs = try await TestCertificates.get()
            let ends = Locked<[String]>([])
            let expected: TLSError = switch scenario {
            case "badMAC": .badRecordMAC
            case "oversizeRecord": .recordOverflow
            default: .renegotiationRefused
            }
            try await withGroup(loops: 1) { group in
                let server = try startTLSEcho(on: group, certs.server(max: scenario == "renegotiation" ? .tls12 : .tls13),
                                              ends: ends)
                defer { server.close() }
                let port = try #require(server.address.port)
                let (established, ended, clientState) = await onOwnThread { () -> (Bool, Bool, String) in
                    do {
                        let bridge = SocketBridge(fd: try SocketBridge.connect(port: port),
                                                  engine: try TLSEngine(context: TLSContext(certs.client())))
                        let established = bridge.run { $0.engine.state.isEstablished }
                        switch scenario {
                        case "badMAC":
                            try bridge.engine.write(Array("hello".utf8))
                            var ciphertext = bridge.engine.takeAllCiphertext()
                            ciphertext[ciphertext.count - 1] ^= 0x01
                            bridge.sendAll(ciphertext)
                        case "oversizeRecord":
                            // An application-data record announcing 18433 bytes.
                            bridge.sendAll([0x17, 0x03, 0x03, 0x48, 0x01] + testBytes(200))
                        default:
                            _ = bridge.engine.requestRenegotiationForTesting()
                            bridge.flush()
                        }
                        let ended = bridge.run { $0.transportEnded }
                        return (established, ended, "\(bridge.engine.state)")
                    } catch {
                        return (false, false, "\(error)")
                    }
                }
                #expect(established)
                #expect(ended, "the server left the connection open: \(clientState)")
                #expect(await eventually { ends.current.count == 1 })
                #expect(ends.current == ["\(expected)"])
                let back = try await torusTLSRound(on: group.loops[0], port: port,
                                                   context: try TLSContext(certs.client()),
                                                   greeting: 0, payload: testBytes(20_000))
                #expect(back == testBytes(20_000))
            }
            #expect(await eventually { TLSResources.liveEngines == 0 })
            expectNothingLive()
        }

        /// The async face: `Server.start(tls:serve:)` gives each task the plaintext side.
        @Test func asyncServeFaceWithTLS() async throws {
            let certs = try await TestCertificates.get()
            try await withGroup(loops: 1) { group in
                let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0),
                                              tls: try TLSContext(certs.server())) { connection in
                    // Written before the handshake completes: held until it does.
                    try? await connection.write(Array("hi\n".utf8))
                    do {
                        for try await chunk in connection.inbound { try await connection.write(chunk) }
                    } catch {}
                    await connection.close()
                }
                defer { server.close() }
                let port = try #require(server.address.port)
                let payload = testBytes(300_000, seed: 7)
                let back = try await torusTLSRound(on: group.loops[0], port: port, context: try TLSContext(certs.client()),
                                                   greeting: 3, payload: payload)
                #expect(back == Array("hi\n".utf8) + payload)
            }
            #expect(await eventually { TLSResources.liveEngines == 0 })
            expectNothingLive()
        }
    }
}

/// A handler that answers each delivery with many small writes, one large one and
/// more small ones (what an echo of pipelined messages or pipelined HTTP responses
/// looks like), then closes gracefully after the last delivery it was told to expect.
private final class ChattyHandler: ConnectionHandler {
    static func answer() -> [[UInt8]] {
        var writes: [[UInt8]] = (0..<200).map { Array(String(format: "line %03d\n", $0).utf8) }
        writes.append(testBytes(20_000, seed: 7))
        writes += (0..<50).map { Array(String(format: "tail %03d\n", $0).utf8) }
        return writes
    }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        for write in Self.answer() { connection.send(write) }
        connection.closeAfterWriting()
    }
}

/// Python client that reads the server's raw records (through a MemoryBIO) and
/// counts the application-data records after the handshake, then prints the
/// plaintext in hex.
private let pythonRecordCounter = """
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname='localhost')
s = socket.create_connection(('127.0.0.1', port), timeout=10)
def pump():
    data = out.read()
    if data:
        s.sendall(data)
while True:
    try:
        obj.do_handshake()
        break
    except ssl.SSLWantReadError:
        pump()
        inc.write(s.recv(65536))
pump()
obj.write(b'go\\n')
pump()
raw = bytearray()
while True:
    b = s.recv(65536)
    if not b:
        break
    raw += b
records, i = 0, 0
while i + 5 <= len(raw):
    kind, length = raw[i], int.from_bytes(raw[i + 3:i + 5], 'big')
    if kind == 23:
        records += 1
    i += 5 + length
inc.write(bytes(raw))
inc.write_eof()
plain = bytearray()
while True:
    try:
        chunk = obj.read(65536)
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
    if not chunk:
        break
    plain += chunk
print('records', records, 'bytes', len(plain), 'hex', plain.hex(), flush=True)
"""

extension TLSTests.OnConnections {
    /// What a handler sends while a record is delivered to it is gathered and encrypted
    /// together: 251 writes come as a handful of records (the session tickets of TLS
    /// 1.3, the gathered small writes, the large one split at 16 KiB, close_notify),
    /// not one record each, and the peer reads every byte in order.
    @Test func writesDuringADeliveryShareRecords() async throws {
        let certs = try await TestCertificates.get()
        let expected = ChattyHandler.answer().flatMap { $0 }
        try await withGroup(loops: 1) { group in
            let context = try TLSContext(certs.server())
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0), tls: context) { _ in
                ChattyHandler()
            }
            defer { server.close() }
            let port = try #require(server.address.port)
            let (status, text) = await runPython(pythonRecordCounter, ["\(port)", certs.caFile])
            #expect(status == 0, "\(text)")
            let fields = text.split(whereSeparator: \.isWhitespace)
            let records = fields.firstIndex(of: "records").flatMap { Int(fields[$0 + 1]) } ?? -1
            #expect(records > 0 && records <= 10, "\(text)")
            #expect(text.contains("bytes \(expected.count) "), "\(text)")
            let hex = expected.map { String(format: "%02x", $0) }.joined()
            #expect(text.contains("hex \(hex)"), "records \(records), \(text.count) characters of output")
        }
        expectNothingLive()
    }
}

extension TLSTests {
    /// A TLS connection keeps OpenSSL's record buffers while its peer keeps sending
    /// and releases them once the peer has been quiet for `TLSTransform.bufferHold`.
    @Suite struct BufferHold {
        /// Echoes, and keeps its server-side connection for the test to inspect.
        final class KeepingEcho: ConnectionHandler, @unchecked Sendable {
            let connections = Locked<[Connection]>([])
            func connected(_ connection: Connection) { connections.withLock { $0.append(connection) } }
            func received(_ bytes: ReceivedBytes, from connection: Connection) { connection.send(bytes) }
            func closed(_ connection: Connection, error: (any Error)?) {}
        }

        /// The server transform's buffer state, read on its loop.
        static func buffers(of connection: Connection) async throws -> String {
            try await connection.loop.run {
                guard let transform = connection.installedTransform as? TLSTransform else { return "no transform" }
                return "\(transform.bufferState)"
            }
        }

        @Test func heldWhileBusyReleasedWhenQuiet() async throws {
            let certs = try await TestCertificates.get()
            let handler = KeepingEcho()
            try await withGroup(loops: 1) { group in
                let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0),
                                              tls: try TLSContext(certs.server())) { _ in handler }
                defer { server.close() }
                let port = try #require(server.address.port)
                let client = try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: group.loops[0],
                                                               tls: try TLSContext(certs.client()))
                let start = ContinuousClock.now
                // Busy: a message every 100 ms for longer than the hold.
                for i in 0..<15 {
                    let message = Array("message \(i)".utf8)
                    try await client.write(message)
                    #expect(try await client.read(exactly: message.count) == message)
                    try await Task.sleep(for: .milliseconds(100))
                }
                let connection = try #require(handler.connections.current.first)
                #expect(ContinuousClock.now - start > .nanoseconds(Int64(TLSTransform.bufferHold)))
                #expect(try await Self.buffers(of: connection) == "held", "still busy: buffers kept")
                // Quiet for longer than the hold (plus the wheel's 250 ms resolution).
                try await Task.sleep(for: .nanoseconds(Int64(TLSTransform.bufferHold)) + .milliseconds(600))
                #expect(try await Self.buffers(of: connection) == "released")
                // Traffic again: held again, and the echo still works.
                try await client.write(Array("again".utf8))
                #expect(try await client.read(exactly: 5) == Array("again".utf8))
                #expect(try await Self.buffers(of: connection) == "held")
                await client.close()
            }
            handler.connections.withLock { $0.removeAll() }
            expectNothingLive()
        }
    }
}
