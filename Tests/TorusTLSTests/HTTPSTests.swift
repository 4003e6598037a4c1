import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusTLS

/// Python client for the pipelined and bad-input cases: prints one line per check.
/// `pipelined`: three GETs in one TLS write, every answer read back in order.
/// `plaintext`: a plain HTTP request to the TLS port gets a bare 400 in clear (as
/// nginx answers it) and the close, never a hang.
private let pythonHTTPSClient = """
import socket, ssl, sys, time
mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == 'pipelined':
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(['http/1.1'])
    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10), server_hostname='localhost')
    req = b'GET /plaintext HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n'
    s.sendall(req * 3)
    got = b''
    while got.count(b'Hello, World!') < 3:
        part = s.recv(65536)
        if not part: break
        got += part
    print('pipelined', got.count(b'HTTP/1.1 200'), got.count(b'Hello, World!'), s.selected_alpn_protocol(), s.version(), flush=True)
    s.close()
elif mode == 'plaintext':
    s = socket.create_connection(('127.0.0.1', port), timeout=15)
    s.sendall(b'GET /plaintext HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n')
    start = time.monotonic()
    got = b''
    try:
        while True:
            part = s.recv(65536)
            if not part: break
            got += part
        print('plaintext closed after %.1f s, answer: %r' % (time.monotonic() - start, got.split(b'\\r\\n')[0]), flush=True)
    except ConnectionResetError:
        print('plaintext closed after %.1f s (reset), answer: %r' % (time.monotonic() - start, got.split(b'\\r\\n')[0]), flush=True)
    except socket.timeout:
        print('plaintext HUNG', flush=True)
"""

/// Python `websockets` over `wss://`: echo of 0 B to 16 MiB, binary and text, with
/// and without permessage-deflate; one line per connection.
private let pythonWSSClient = """
import asyncio, os, ssl, sys
import websockets
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
async def main():
    for compression in (None, 'deflate'):
        async with websockets.connect(f'wss://localhost:{port}/', ssl=ctx, compression=compression,
                                      max_size=None, open_timeout=10) as ws:
            checked = 0
            for size in (0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20):
                data = os.urandom(size)
                await ws.send(data)
                back = await ws.recv()
                assert back == data, (compression, size, len(back))
                text = 'ü' * (size // 2)
                await ws.send(text)
                assert await ws.recv() == text, (compression, size)
                checked += 2
            tls = ws.transport.get_extra_info('ssl_object').version()
            ext = ws.response.headers.get('Sec-WebSocket-Extensions', 'none')
            print('wss ok', compression or 'plain', checked, tls, ext, flush=True)
asyncio.run(main())
"""

extension TLSTests {
    /// HTTPS and WSS: the torus-http and torus-ws demos with `--tls-cert` against curl,
    /// Python's `ssl` and the `websockets` client, and `HTTPServer` with a TLS context
    /// in process.
    @Suite struct HTTPS {
        /// Runs curl to its end on a thread of its own.
        static func curl(_ arguments: [String]) async -> (Int32?, String) {
            await onOwnThread {
                do {
                    let (status, output) = try ChildProcess.run("/usr/bin/curl", arguments, directory: "/tmp",
                                                                timeout: .seconds(120))
                    return (status, output)
                } catch {
                    return (nil, "\(error)")
                }
            }
        }

        @Test func httpsDemoAgainstCurlAndPython() async throws {
            let certs = try await TestCertificates.get()
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("torus-https-\(getpid())").path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: root) }
            // 10 MiB up (chunked) and back down (chunked: the echo streams).
            var generator = SystemRandomNumberGenerator()
            let upload = (0..<(10 << 20)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            try Data(upload).write(to: URL(fileURLWithPath: root + "/up.bin"))

            let server = try ChildProcess(BuiltProducts.path("torus-http"),
                                          ["--port", "0", "--threads", "2", "--root", root,
                                           "--max-body-bytes", "\(16 << 20)",
                                           "--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key")])
            let port = try #require(await server.listeningPort())
            let base = "https://localhost:\(port)"

            // Keep-alive: two requests on one connection, ALPN http/1.1.
            let (status, keepAlive) = await Self.curl(["-sS", "-v", "--cacert", certs.caFile,
                                                       "\(base)/plaintext", "\(base)/json"])
            #expect(status == 0, "\(keepAlive)")
            #expect(keepAlive.contains("Hello, World!") && keepAlive.contains(#"{"message":"Hello, World!"}"#))
            #expect(keepAlive.contains("ALPN: server accepted http/1.1"), "\(keepAlive)")
            #expect(keepAlive.contains("Re-using existing connection"), "\(keepAlive)")
            #expect(keepAlive.contains("SSL connection using TLSv1.3"), "\(keepAlive)")

            // 10 MiB chunked up, echoed back chunked, byte for byte.
            let (upStatus, upload10) = await Self.curl(["-sS", "--cacert", certs.caFile, "-D", root + "/headers",
                                                        "-H", "Transfer-Encoding: chunked",
                                                        "-H", "Content-Type: application/octet-stream",
                                                        "--data-binary", "@" + root + "/up.bin",
                                                        "-o", root + "/down.bin", "\(base)/echo"])
            #expect(upStatus == 0, "\(upload10)")
            let down = try Data(contentsOf: URL(fileURLWithPath: root + "/down.bin"))
            #expect(down.count == upload.count && Array(down) == upload)
            let headers = (try? String(contentsOfFile: root + "/headers", encoding: .utf8)) ?? ""
            #expect(headers.lowercased().contains("transfer-encoding: chunked"), "\(headers)")

            // Three requests in one TLS write, answered in order.
            let (_, pipelined) = await runPython(pythonHTTPSClient, ["pipelined", "\(port)", certs.caFile])
            #expect(pipelined.contains("pipelined 3 3 http/1.1 TLSv1.3"), "\(pipelined)")

            // Plaintext HTTP on the TLS port: a bare 400 and the close, at once.
            let (_, plain) = await runPython(pythonHTTPSClient, ["plaintext", "\(port)", certs.caFile])
            #expect(plain.contains("plaintext closed after 0.") && plain.contains("answer: b'HTTP/1.1 400 Bad Request'"),
                    "\(plain)")

            // An untrusted client (no CA given) is refused by curl; the server goes on.
            let (refusedStatus, refused) = await Self.curl(["-sS", "\(base)/plaintext"])
            #expect(refusedStatus != 0, "\(refused)")
            let (againStatus, again) = await Self.curl(["-sS", "--cacert", certs.caFile, "\(base)/plaintext"])
            #expect(againStatus == 0 && again.contains("Hello, World!"), "\(again)")

            #expect(await server.stop() == 0)
            #expect(server.text.contains("ledger: quiescent"), "\(server.text)")
        }

        @Test func wssDemoAgainstPythonWebsockets() async throws {
            let certs = try await TestCertificates.get()
            let server = try ChildProcess(BuiltProducts.path("torus-ws"),
                                          ["--port", "0", "--threads", "2",
                                           "--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key")])
            let port = try #require(await server.listeningPort())
            let (status, output) = await runPython(pythonWSSClient, ["\(port)", certs.caFile], timeout: .seconds(120))
            #expect(status == 0, "\(output)")
            #expect(output.contains("wss ok plain 16 TLSv1.3 none"), "\(output)")
            #expect(output.contains("wss ok deflate 16 TLSv1.3 permessage-deflate"), "\(output)")
            #expect(await server.stop() == 0)
            #expect(server.text.contains("ledger: quiescent"), "\(server.text)")
        }

        @Test func httpServerWithATLSContextInProcess() async throws {
            let certs = try await TestCertificates.get()
            let serverContext = try TLSContext(certs.server(alpn: ["http/1.1"]))
            let clientContext = try TLSContext(certs.client(alpn: ["http/1.1"]))
            try await withGroup(loops: 2) { group in
                var router = HTTPRouter()
                router.get("/who") { request in
                    .text("over \(request.tlsSession.map { "\($0.version)" } ?? "plaintext"), "
                          + "alpn \(request.tlsSession?.alpn ?? "none")")
                }
                var configuration = HTTPServerConfiguration()
                configuration.tls = serverContext
                let server = try HTTPServer.start(on: group, address: try .tcp("127.0.0.1", 0), router: router,
                                                  configuration: configuration)
                let reply = try await group.loops[1].run {
                    let connection = try await AsyncConnection.connect(to: server.address, on: group.loops[1],
                                                                       tls: clientContext)
                    try await connection.write("GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    var all: [UInt8] = []
                    while let part = try await connection.read() { all += part }
                    await connection.close()
                    return String(decoding: all, as: UTF8.self)
                }
                #expect(reply.hasPrefix("HTTP/1.1 200"), "\(reply)")
                #expect(reply.hasSuffix("over tls13, alpn http/1.1"), "\(reply)")
                await server.shutdown(grace: .seconds(2))
            }
        }
    }
}
