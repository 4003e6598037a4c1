import Foundation
import Testing
import TorusTestSupport
@testable import TorusTLS

/// Python client: echo over TLS, optionally with a client certificate; prints the
/// outcome on one line ("echo ok TLSv1.3" or "refused <reason>").
private let pythonClient = """
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 4:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
try:
    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10), server_hostname='localhost')
    s.sendall(b'demo over tls')
    got = s.recv(100)
    print('echo', 'ok' if got == b'demo over tls' else 'BAD %r' % got, s.version(), flush=True)
    s.close()
except (ssl.SSLError, OSError) as e:
    print('refused', type(e).__name__, flush=True)
"""

extension TLSTests {
    /// The torus-echo demo with its TLS options, against Python's `ssl`.
    @Suite struct EchoDemo {
        @Test func tlsAndMutualTLSFromTheCommandLine() async throws {
            let certs = try await TestCertificates.get()
            let server = try ChildProcess(BuiltProducts.path("torus-echo"),
                                          ["--port", "0", "--threads", "1",
                                           "--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key"),
                                           "--tls-ca", certs.caFile, "--tls-client-auth", "required"])
            let port = try #require(await server.listeningPort())
            let (status, withCertificate) = await runPython(pythonClient, ["\(port)", certs.caFile,
                                                                           certs.path("client.pem"), certs.path("client.key")])
            #expect(status == 0)
            #expect(withCertificate.contains("echo ok TLSv1.3"), "\(withCertificate)")
            let (_, without) = await runPython(pythonClient, ["\(port)", certs.caFile])
            #expect(without.contains("refused") || without.contains("BAD b''"), "\(without)")
            // The demo prints its ledger at exit: quiescent.
            #expect(await server.stop() == 0)
            #expect(server.text.contains("ledger: quiescent"), "\(server.text)")
        }

        @Test func mismatchedOptionsAreRefused() async throws {
            let server = try ChildProcess(BuiltProducts.path("torus-echo"), ["--port", "0", "--tls-key", "/nonexistent"])
            #expect(await server.wait(timeout: .seconds(20)) != 0)
            #expect(server.text.contains("--tls-cert and --tls-key go together"))
        }
    }
}
