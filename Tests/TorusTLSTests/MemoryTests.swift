import COpenSSL
import Foundation
import Synchronization
import Testing
import TorusTestSupport
@testable import TorusTLS

/// OpenSSL's heap, counted exactly: the test process routes OpenSSL's allocations
/// through counting wrappers (`CRYPTO_set_mem_functions`), which is only possible
/// before OpenSSL's first allocation in the process; when something came first
/// the memory test is skipped.
enum OpenSSLHeap {
    static let liveBytes = Atomic<Int>(0)
    /// Allocations made (malloc and realloc from nothing), ever.
    static let allocations = Atomic<Int>(0)

    /// Each block carries its requested size in a 16-byte header.
    static let header = 16

    static let isCounting: Bool = {
        CRYPTO_set_mem_functions(
            { size, _, _ in
                guard let raw = malloc(size + OpenSSLHeap.header) else { return nil }
                raw.storeBytes(of: size, as: Int.self)
                OpenSSLHeap.liveBytes.add(size, ordering: .relaxed)
                OpenSSLHeap.allocations.add(1, ordering: .relaxed)
                return raw + OpenSSLHeap.header
            },
            { pointer, size, _, _ in
                let old = pointer.map { $0 - OpenSSLHeap.header }
                let before = old.map { $0.load(as: Int.self) } ?? 0
                guard let raw = realloc(old, size + OpenSSLHeap.header) else { return nil }
                raw.storeBytes(of: size, as: Int.self)
                OpenSSLHeap.liveBytes.add(size - before, ordering: .relaxed)
                return raw + OpenSSLHeap.header
            },
            { pointer, _, _ in
                guard let pointer else { return }
                let raw = pointer - OpenSSLHeap.header
                OpenSSLHeap.liveBytes.subtract(raw.load(as: Int.self), ordering: .relaxed)
                free(raw)
            }) == 1
    }()
}

extension TLSTests {
    @Suite struct Memory {
        /// OpenSSL heap held per idle connection, server and client side, after
        /// `count` connections each handshook and (when `traffic`) moved 64 KiB both
        /// ways, then were released (``TLSEngine/releaseBuffers()``).
        static func idleFootprint(server: TLSContext, client: TLSContext, count: Int,
                                  traffic: Bool) throws -> (server: Int, client: Int) {
            let payload = testBytes(64 * 1024)
            var servers: [TLSEngine] = []
            var clients: [TLSEngine] = []
            let baseline = OpenSSLHeap.liveBytes.load(ordering: .relaxed)
            for _ in 0..<count {
                let pair = try EnginePair(client: client, server: server)
                pair.handshake()
                if traffic {
                    try pair.client.write(payload)
                    try pair.server.write(payload)
                    pair.pump()
                    #expect(pair.serverReceived.count == payload.count && pair.clientReceived.count == payload.count)
                }
                pair.client.releaseBuffers()
                pair.server.releaseBuffers()
                #expect(pair.server.bufferCapacity == 0 && pair.client.bufferCapacity == 0)
                servers.append(pair.server)
                clients.append(pair.client)
            }
            let both = OpenSSLHeap.liveBytes.load(ordering: .relaxed) - baseline
            clients.removeAll()
            let serverOnly = OpenSSLHeap.liveBytes.load(ordering: .relaxed) - baseline
            servers.removeAll()
            return (serverOnly / count, (both - serverOnly) / count)
        }

        /// A busy engine keeps its record buffers (``TLSEngine/holdBuffers(_:)``): small
        /// records both ways then cost OpenSSL no record-buffer allocation each;
        /// released again, it holds what an idle engine holds.
        @Test(.enabled(if: OpenSSLHeap.isCounting, "OpenSSL allocated before the counting hooks"))
        func heldBuffersAreNotReallocatedPerRecord() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server())
                let client = try TLSContext(certs.client())
                let pair = try EnginePair(client: client, server: server)
                pair.handshake()
                let message = testBytes(100)
                /// OpenSSL allocations for `rounds` records each way, one at a time.
                func allocations(rounds: Int) throws -> Int {
                    let before = OpenSSLHeap.allocations.load(ordering: .relaxed)
                    for _ in 0..<rounds {
                        try pair.client.write(message)
                        pair.pump()
                        try pair.server.write(message)
                        pair.pump()
                    }
                    return OpenSSLHeap.allocations.load(ordering: .relaxed) - before
                }
                _ = try allocations(rounds: 4)  // the session tickets and lazily built state
                pair.server.releaseBuffers()
                pair.client.releaseBuffers()
                let idle = OpenSSLHeap.liveBytes.load(ordering: .relaxed)
                let releasing = try allocations(rounds: 50)
                pair.server.holdBuffers(true)
                pair.client.holdBuffers(true)
                _ = try allocations(rounds: 1)  // the buffers themselves, once
                let holding = try allocations(rounds: 50)
                let held = OpenSSLHeap.liveBytes.load(ordering: .relaxed) - idle
                pair.server.holdBuffers(false)
                pair.client.holdBuffers(false)
                let after = OpenSSLHeap.liveBytes.load(ordering: .relaxed) - idle
                print("OpenSSL allocations for 100 records each way: \(releasing) releasing, \(holding) held; "
                      + "held buffers \(held) B for both ends, \(after) B after releasing")
                // A round writes a record at each end and reads it at the other. Held,
                // none of those four allocates a record buffer; what is left is OpenSSL
                // 3.0's own work per call (the reads that find nothing included).
                #expect(releasing - holding >= 4 * 50, "held: no record buffer allocated per record")
                #expect(holding * 2 < releasing)
                #expect(held >= 4 * 16 * 1024, "both ends keep a read and a write buffer")
                #expect(after <= 1024, "released: back to the idle footprint (\(after) B more)")
                #expect(pair.serverReceived.count == 105 * 100 && pair.clientReceived.count == 105 * 100)
            }
        }

        /// What OpenSSL allocates for a bare `SSL_new` (no handshake), per engine.
        static func bareEngine(_ context: TLSContext, count: Int) throws -> Int {
            var engines: [TLSEngine] = []
            let baseline = OpenSSLHeap.liveBytes.load(ordering: .relaxed)
            for _ in 0..<count { engines.append(try TLSEngine(context: context)) }
            let bytes = OpenSSLHeap.liveBytes.load(ordering: .relaxed) - baseline
            engines.removeAll()
            return bytes / count
        }

        /// An idle connection keeps no record buffers and no BIO capacity: after
        /// traffic it holds no more than a connection that only handshook. The
        /// 8 KiB target itself is out of reach with OpenSSL 3.0, whose bare `SSL`
        /// object is about 9 KiB (measured here and printed).
        @Test(.enabled(if: OpenSSLHeap.isCounting, "OpenSSL allocated before the counting hooks"),
              arguments: [TLSConfiguration.Version.tls12, .tls13])
        func idleConnectionFootprint(version: TLSConfiguration.Version) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let server = try TLSContext(certs.server(min: version, max: version))
                let client = try TLSContext(certs.client())
                // Warm-up, so lazily built tables are not counted.
                _ = try Self.idleFootprint(server: server, client: client, count: 2, traffic: true)
                let bare = try Self.bareEngine(server, count: 100)
                let quiet = try Self.idleFootprint(server: server, client: client, count: 100, traffic: false)
                let busy = try Self.idleFootprint(server: server, client: client, count: 100, traffic: true)
                print("TLS idle footprint \(version) (OpenSSL heap per connection): bare SSL_new \(bare) B; "
                      + "after handshake: server \(quiet.server) B, client \(quiet.client) B; "
                      + "after 64 KiB each way: server \(busy.server) B, client \(busy.client) B")
                #expect(busy.server <= quiet.server + 512, "traffic left \(busy.server - quiet.server) B behind")
                #expect(busy.client <= quiet.client + 512, "traffic left \(busy.client - quiet.client) B behind")
                #expect(busy.server < bare + 8 * 1024)
                withKnownIssue("OpenSSL 3.0's SSL object alone is about 9 KiB: over the 8 KiB target") {
                    #expect(busy.server <= 8 * 1024)
                }
            }
        }
    }
}
