import Foundation
import MetricsTestKit
import Testing
import Torus
import TorusTestSupport

@Suite("Ledger export")
struct LedgerTests {
    @Test("a snapshot is exported through swift-metrics, as Prometheus text and as JSON")
    func export() async throws {
        try await withGroup(loops: 1) { group in
            let loop = group.loops[0]
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let client = try await AsyncConnection.connect(to: server.address, on: loop)
            try await client.write("ping")
            _ = try await client.read(exactly: 4)
            let live = await loop.ledgerSnapshot()

            let metrics = TestMetrics()
            live.report(factory: metrics)
            // Two connections (both ends on this loop) each keep a multishot recv armed.
            let recvInFlight = try metrics.expectGauge("torus_operations_in_flight", [("op", "recv")])
            #expect(recvInFlight.lastValue == 2)
            #expect(try metrics.expectGauge("torus_connections").lastValue == 2)
            #expect(try metrics.expectGauge("torus_buffers", [("pool", "received"), ("owner", "pool")]).lastValue
                    == Double(live[.received].pool))

            // Both sockets hold a direct descriptor slot once installed (none on a kernel without them).
            #expect(try metrics.expectGauge("torus_direct_descriptors").lastValue == Double(live.directDescriptors))

            let text = live.prometheusText()
            #expect(text.contains(#"torus_operations_in_flight{op="recv"} 2"#))
            #expect(text.contains("torus_connections 2"))
            #expect(text.contains("torus_direct_descriptors \(live.directDescriptors)"))
            #expect(text.contains("torus_plain_descriptor_fallbacks_total \(live.plainDescriptorFallbacks)"))

            let json = try JSONEncoder().encode(live)
            let decoded = try JSONDecoder().decode(LedgerSnapshot.self, from: json)
            #expect(decoded == live)

            await client.close()
            server.close()
        }
    }
}
