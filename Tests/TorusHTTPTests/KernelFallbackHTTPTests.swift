import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// HTTP round trips with curl against a server whose loops run every kernel
/// fallback (plain ring setup, single-shot accept, single-shot receive).
@Suite("HTTP with the kernel fallbacks")
struct KernelFallbackHTTPTests {
    @Test("curl: keep-alive requests, a 2 MB upload echoed byte-exact, static files")
    func curlWithEveryFallback() async throws {
        var configuration = EventLoop.Configuration()
        configuration.fallbacks = .all
        try await withStaticRoot { root in
            try await withGroup(loops: 2, configuration) { group in
                for loop in group.loops {
                    #expect(loop.kernelFeatures.accept == .singleShot)
                    #expect(loop.kernelFeatures.receive == .singleShot)
                    #expect(loop.kernelFeatures.setupFlags.isEmpty)
                }
                let server = try HTTPServer.start(on: group, address: try .tcp("127.0.0.1", 0),
                                                  router: serverTestRouter(root: root))
                let port = try #require(server.address.port)
                let base = "http://127.0.0.1:\(port)"
                // Several URLs on one curl: one connection, several requests on it.
                let (s1, plain) = try await run("/usr/bin/curl", ["-s", "-S", "--max-time", "20", "-v",
                                                                  base + "/plaintext", base + "/json", base + "/hello/3"])
                #expect(s1 == 0, "\(plain)")
                #expect(plain.contains("Hello, World!") && plain.contains(#"{"message":"Hello, World!"}"#)
                        && plain.contains("hello 3"), "\(plain)")
                #expect(plain.contains("Re-using existing connection") || plain.contains("Reusing existing connection"))

                let dir = NSTemporaryDirectory() + "torus-kernel-\(UUID().uuidString)"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: dir) }
                let payload = testBytes(2_000_000, seed: 13)
                try Data(payload).write(to: URL(fileURLWithPath: dir + "/in"))
                let (s2, _) = try await run("/usr/bin/curl", ["-s", "-S", "--max-time", "20", "--data-binary",
                                                              "@" + dir + "/in", "-o", dir + "/out", base + "/echo"])
                #expect(s2 == 0)
                #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out")) == Data(payload))

                let (s3, _) = try await run("/usr/bin/curl", ["-s", "-S", "--max-time", "20", "-o", dir + "/file",
                                                              base + "/static/data.bin"])
                #expect(s3 == 0)
                #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/file")) == Data(testBytes(100_000, seed: 11)))

                await server.shutdown(grace: .seconds(5))
                #expect(await server.connectionCount() == 0)
            }
        }
    }
}
