import Foundation
import Testing
import TorusTestSupport
@testable import TorusTLS

extension TLSTests {
    @Suite struct Transfer {
        @Test(arguments: [0, 1, 16383, 16384, 16385, 1 << 20, 16 << 20])
        func bytesArriveExactlyBothWays(size: Int) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(certs.server()))
                pair.chunk = 4096 + 7 // ciphertext crosses record boundaries
                pair.handshake()
                let up = testBytes(size, seed: 1)
                let down = testBytes(size, seed: 2)
                // Written in slices, as a connection bounded by its outbound chunks would.
                let slice = 64 * 1024
                var offset = 0
                repeat {
                    let end = min(offset + slice, size)
                    try pair.client.write(Array(up[offset..<end]))
                    try pair.server.write(Array(down[offset..<end]))
                    pair.pump()
                    offset = end
                } while offset < size
                #expect(pair.serverReceived.count == size)
                #expect(pair.clientReceived.count == size)
                #expect(pair.serverReceived == up)
                #expect(pair.clientReceived == down)
                // Idle again: no buffer kept by either side.
                pair.client.releaseBuffers()
                pair.server.releaseBuffers()
                #expect(pair.client.bufferCapacity == 0)
                #expect(pair.server.bufferCapacity == 0)
                // And still usable afterwards.
                try pair.client.write(Array("after".utf8))
                pair.pump()
                #expect(pair.serverReceived.suffix(5) == Array("after".utf8))
            }
        }

        @Test(arguments: [true, false])
        func closeNotifyEitherWay(clientCloses: Bool) async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(certs.server()))
                pair.handshake()
                let (closer, peer) = clientCloses ? (pair.client, pair.server) : (pair.server, pair.client)
                try closer.write(Array("last words".utf8))
                closer.close()
                #expect(closer.state == .closing)
                #expect(closer.pendingCiphertext > 0)
                #expect(throws: TLSError.notEstablished) { try closer.write(Array("more".utf8)) }
                pair.pump()
                let received = clientCloses ? pair.serverReceived : pair.clientReceived
                #expect(received == Array("last words".utf8))
                #expect(peer.state == .closed)
                #expect(closer.state == .closed)
                #expect(closer.pendingCiphertext == 0 && peer.pendingCiphertext == 0)
            }
        }

        @Test func closerAcceptsATransportCloseInsteadOfTheAnswer() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(certs.server()))
                pair.handshake()
                pair.client.close()
                _ = pair.client.takeAllCiphertext()
                pair.client.feedEOF()
                #expect(pair.client.readError() == nil)
                #expect(pair.client.state == .closed)
            }
        }

        @Test func closingDuringTheHandshakeSendsNothing() async throws {
            let certs = try await TestCertificates.get()
            try withoutLeaks {
                let pair = try EnginePair(client: TLSContext(certs.client()), server: TLSContext(certs.server()))
                pair.drive(pair.client, into: &pair.clientReceived)
                _ = pair.move(from: pair.client, to: pair.server)
                pair.drive(pair.server, into: &pair.serverReceived)
                #expect(pair.server.state == .handshaking)
                _ = pair.server.takeAllCiphertext()
                pair.server.close()
                #expect(pair.server.state == .closed)
                #expect(pair.server.pendingCiphertext == 0)
            }
        }
    }
}
