import Testing
@testable import TorusWebSocket

/// Inputs found by the libFuzzer targets (Fuzz/README.md), kept as unit tests.
@Suite struct FuzzRegressionTests {
    /// Fuzz/WebSocketDecoderFuzz round trip: an empty message compressed after another one
    /// with context takeover tripped the compressor's `00 00 ff ff` precondition (zlib
    /// emits nothing for a second sync flush in a row), crashing the process.
    @Test(arguments: [8, 10, 15])
    func emptyMessageAfterAnotherWithContextTakeover(windowBits: Int) throws {
        let c = PerMessageDeflateCompressor(windowBits: windowBits)
        let d = PerMessageDeflateDecompressor()
        let messages: [[UInt8]] = [Array("Hello".utf8), [], [], Array("Hello".utf8), []]
        for m in messages {
            let z = c.compress(m)
            #expect(!z.isEmpty)
            #expect(try d.decompress(z, limit: 1 << 20) == m)
        }
    }

    /// The same through the wire: the fuzzer's input was "Hello" then an empty compressed
    /// text message from a server; both must decode and re-encode.
    @Test func emptyCompressedMessageRoundTrip() throws {
        var decoder = MessageDecoder(role: .client, decompressor: PerMessageDeflateDecompressor())
        let events = try decoder.decode([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0xC1, 0x00])
        #expect(events == [.text(Array("Hello".utf8)), .text([])])

        let compressor = PerMessageDeflateCompressor(windowBits: 10)
        let encoder = FrameEncoder(role: .server)
        var wire: [UInt8] = []
        for case .text(let m) in events {
            encoder.encodeFrame(opcode: .text, rsv1: true, payload: compressor.compress(m), into: &wire)
        }
        var again = MessageDecoder(role: .client, decompressor: PerMessageDeflateDecompressor())
        #expect(try again.decode(wire) == events)
    }
}
