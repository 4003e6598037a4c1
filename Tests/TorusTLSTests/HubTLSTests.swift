import Foundation
import Testing
import Torus
import TorusHub
import TorusTestSupport
@testable import TorusTLS

/// A Python `websockets` client on the hub's `/web` face over `wss://` (with the API
/// token in `?access_token=`, as a browser sends it): prints "connected" once the hub
/// confirmed the subscription, then the first event.
private let pythonWebFace = """
import asyncio, ssl, sys
import websockets
port, ca, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
async def main():
    async with websockets.connect(f'wss://localhost:{port}/web?access_token={token}', ssl=ctx, open_timeout=10) as ws:
        first = await asyncio.wait_for(ws.recv(), 20)
        print('connected', ws.transport.get_extra_info('ssl_object').version(), first, flush=True)
        while True:
            message = await asyncio.wait_for(ws.recv(), 20)
            if 'tls-event' in message:
                print('event', message, flush=True)
                return
asyncio.run(main())
"""

extension TLSTests {
    /// torus-hub with TLS on both faces: routers over TLS presenting certificates
    /// (required), the HTTP face over HTTPS and its WebSocket face over WSS.
    @Suite struct HubTLS {
        @Test func bothFacesOverTLSWithRouterCertificates() async throws {
            let certs = try await TestCertificates.get()
            let folder = NSTemporaryDirectory() + "torus-hub-tls-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let credentials = folder + "/credentials.json"
            let hub = try ChildProcess(BuiltProducts.path("torus-hub"),
                                       ["--router-port", "0", "--http-port", "0", "--threads", "2",
                                        "--credentials", credentials,
                                        "--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key"),
                                        "--router-tls-cert", certs.path("server.pem"),
                                        "--router-tls-key", certs.path("server.key"),
                                        "--router-tls-ca", certs.caFile, "--router-tls-client-auth", "required"])
            let httpPort = try #require(await hub.listeningPort(), "\(hub.text)")
            _ = await hub.waitForLine(containing: "listening on", timeout: .seconds(5))
            let listening = hub.text.split(separator: "\n").filter { $0.hasPrefix("listening on") }
            let routerPort = try #require(UInt16(listening.last?.split(separator: ":").last ?? ""))
            let secret = try #require(try HubCredentials.load(path: credentials).routers["r1"])
            let tokenLine = try #require(hub.text.split(separator: "\n").first { $0.hasPrefix("admin token: ") }, "\(hub.text)")
            let token = String(tokenLine.dropFirst("admin token: ".count))

            // The HTTP face over HTTPS: /healthz open, the API with the token only.
            let (status, health) = await HTTPS.curl(["-sS", "--cacert", certs.caFile,
                                                     "https://localhost:\(httpPort)/healthz"])
            #expect(status == 0, "\(health)")
            #expect(health.contains("ok"), "\(health)")
            let (_, refused) = await HTTPS.curl(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", certs.caFile,
                                                 "https://localhost:\(httpPort)/devices"])
            #expect(refused == "401", "\(refused)")
            let (_, devices) = await HTTPS.curl(["-sS", "--cacert", certs.caFile, "-H", "Authorization: Bearer \(token)",
                                                 "https://localhost:\(httpPort)/devices"])
            #expect(devices.hasPrefix("["), "\(devices)")

            // The /web face over WSS, and a router over TLS with its certificate.
            let web = try ChildProcess("/usr/bin/env", ["python3", "-c", pythonWebFace, "\(httpPort)", certs.caFile, token])
            let subscribed = await web.waitForLine(containing: "connected", timeout: .seconds(20))
            #expect(subscribed == #"connected TLSv1.3 {"subscribed":["*"]}"#, "\(web.text)")
            try await withLoop { loop in
                let routerContext = try TLSContext(certs.client(serverName: "localhost", certificate: "client"))
                let router = try await HubRouterClient.connect(to: try .tcp("127.0.0.1", routerPort), on: loop,
                                                               id: "r1", secret: secret, tls: routerContext)
                try await router.send(.event(Array(#"{"tls-event":1}"#.utf8)))
                #expect(await web.wait(timeout: .seconds(20)) == 0, "\(web.text)")
                #expect(web.text.contains("tls-event"), "\(web.text)")
                await router.close()

                // Without a certificate the hub refuses the router at the handshake.
                let anonymous = try TLSContext(certs.client(serverName: "localhost"))
                await #expect(throws: TLSError.self) {
                    let refused = try await HubRouterClient.connect(to: try .tcp("127.0.0.1", routerPort), on: loop,
                                                                    id: "r1", secret: secret, tls: anonymous)
                    await refused.close()
                }
                // Nor does a plaintext router get anywhere.
                await #expect(throws: (any Error).self) {
                    let refused = try await HubRouterClient.connect(to: try .tcp("127.0.0.1", routerPort), on: loop,
                                                                    id: "r1", secret: secret, timeout: .seconds(5))
                    await refused.close()
                }
            }
            #expect(await hub.stop() == 0)
            #expect(hub.text.contains("CN=client-1"), "the router's verified certificate is logged: \(hub.text)")
            #expect(hub.text.contains("ledger: quiescent"), "\(hub.text)")
        }
    }
}
