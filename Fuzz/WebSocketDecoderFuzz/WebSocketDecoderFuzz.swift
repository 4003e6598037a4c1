// libFuzzer harness for the WebSocket MessageDecoder (RFC 6455 + RFC 7692), server and
// client roles, with and without permessage-deflate. Compiled together with the
// decoder's sources (MessageDecoder, FrameHeader, FrameEncoder, Masking, Opcode,
// CloseCode, UTF8Validator, WebSocketEvent, WebSocketProtocolError,
// PerMessageDeflate{Compressor,Decompressor}) and zlib by scripts/fuzz.sh; not part of
// the SwiftPM package.
//
// Input: byte 0 selects the role (bit 0), permessage-deflate (bit 1), the peer's
// no_context_takeover (bit 2), one of four limit sets (bits 3-4) and the bomb mode
// (bits 5-6 both set, deflate only); byte 1 seeds the compressor's window bits, the
// split points, the fragment size and the masking key. The rest is the byte stream.
//
// For every input the decoder decodes (1) the whole stream, (2) the stream split at
// two points, (3) byte by byte (short inputs), and (4) through the connection's
// in-place path (`takeWholeMessage` first, then `next`, as
// WebSocketConnection.process(_:inPlace:) does), whole and split. All runs must report
// the same events and the same error (close code). Every event is checked against the
// configured limits (data messages <= maxMessageSize, control payloads <= 125, text and
// close reasons valid UTF-8), the reassembly buffer's capacity must stay <=
// maxMessageSize + 1, and the heap may not grow during one `next` call by more than
// 2 * (maxMessageSize + 1) + 256 KiB (a compression bomb fails with 1009 instead).
// The decoded events are then re-encoded with FrameEncoder (and the compressor, with
// fragmentation and an interleaved ping) and decoded again: they must round-trip.
// In bomb mode a highly compressible message of 2 KiB..512 KiB is compressed and
// decoded: it must come back exactly when within the limit, and fail with 1009 otherwise.
//
// Each piece lives in its own exact-size allocation, poisoned after the call, so
// AddressSanitizer catches reads past a piece or pointers kept into the input.

#if canImport(Glibc)
import Glibc
#endif

// MARK: Shim

/// Lives in Connection/ with the Torus-dependent code; the decoder only needs the type.
public enum WebSocketMessageKind: Sendable, Hashable {
    case text
    case binary

    var opcode: Opcode { self == .text ? .text : .binary }
}

// MARK: Heap accounting (AddressSanitizer's allocator statistics)

typealias AllocatedBytesFn = @convention(c) () -> Int
typealias MallocHook = @convention(c) (UnsafeRawPointer?, Int) -> Void
typealias FreeHook = @convention(c) (UnsafeRawPointer?) -> Void
typealias InstallHooksFn = @convention(c) (MallocHook?, FreeHook?) -> CInt

nonisolated(unsafe) let allocatedBytes: AllocatedBytesFn = {
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__sanitizer_get_current_allocated_bytes") else {
        fatalError("harness: build with -sanitize=address")
    }
    return unsafeBitCast(sym, to: AllocatedBytesFn.self)
}()
nonisolated(unsafe) var peakBytes = 0
nonisolated(unsafe) var trackPeak = false

let hooksInstalled: Bool = {
    _ = allocatedBytes()
    _ = PerMessageDeflateDecompressor.zeros.count  // a 256 KiB static, allocated once
    _ = UTF8Validator.isValidUTF8(UnsafeRawBufferPointer(start: nil, count: 0))
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__sanitizer_install_malloc_and_free_hooks") else {
        return false
    }
    let install = unsafeBitCast(sym, to: InstallHooksFn.self)
    let onMalloc: MallocHook = { _, _ in
        if trackPeak {
            let now = allocatedBytes()
            if now > peakBytes { peakBytes = now }
        }
    }
    return install(onMalloc, nil) != 0
}()

// MARK: Configuration

struct Config {
    var role: WebSocketRole
    var deflate: Bool
    var noContextTakeover: Bool
    var windowBits: Int
    var limits: MessageDecoderConfiguration
    var bomb: Bool

    static let limitSets: [MessageDecoderConfiguration] = [
        .init(maxFrameSize: 125, maxMessageSize: 64, retainedBufferCapacity: 0),
        .init(maxFrameSize: 125, maxMessageSize: 1000, retainedBufferCapacity: 256),
        .init(maxFrameSize: 4096, maxMessageSize: 4096, retainedBufferCapacity: 64 << 10),
        .init(maxFrameSize: 65536, maxMessageSize: 256 << 10, retainedBufferCapacity: 1024),
    ]

    init(_ c0: UInt8, _ c1: UInt8) {
        role = c0 & 1 == 0 ? .server : .client
        deflate = c0 & 2 != 0
        noContextTakeover = c0 & 4 != 0
        limits = Config.limitSets[Int((c0 >> 3) & 3)]
        bomb = deflate && c0 & 0x60 == 0x60
        windowBits = 8 + Int(c1 & 7)
    }

    func makeDecoder() -> MessageDecoder {
        MessageDecoder(role: role, configuration: limits,
                       decompressor: deflate ? PerMessageDeflateDecompressor(noContextTakeover: noContextTakeover) : nil)
    }

    /// Heap growth allowed during one decoder call.
    var heapBound: Int { 2 * (limits.maxMessageSize + 1) + 256 * 1024 }
}

func fail(_ message: String) -> Never {
    fatalError("websocket fuzz: \(message)")
}

// MARK: Checks

/// The limits every event must respect.
func check(_ event: WebSocketEvent, _ cfg: Config) {
    switch event {
    case .text(let b):
        if b.count > cfg.limits.maxMessageSize { fail("text message of \(b.count) bytes over the limit \(cfg.limits.maxMessageSize)") }
        if String(validating: b, as: UTF8.self) == nil { fail("text message is not valid UTF-8") }
    case .binary(let b):
        if b.count > cfg.limits.maxMessageSize { fail("binary message of \(b.count) bytes over the limit \(cfg.limits.maxMessageSize)") }
    case .ping(let b), .pong(let b):
        if b.count > 125 { fail("control payload of \(b.count) bytes") }
    case .close(let code, let reason):
        if let code, !code.isValidOnWire { fail("close code \(code.rawValue) not valid on the wire") }
        if code == nil && !reason.isEmpty { fail("close reason without a code") }
        if reason.utf8.count > 123 { fail("close reason of \(reason.utf8.count) bytes") }
    }
}

/// Decodes `wire` from the start with a fresh decoder, every event and the error.
func decodeWhole(_ wire: [UInt8], _ cfg: Config) -> Outcome {
    var decoder = cfg.makeDecoder()
    var got = Outcome()
    wire.withUnsafeBytes { w in
        var rest = w
        do throws(WebSocketProtocolError) {
            while let e = try measuredNext(&decoder, &rest, cfg) { got.events.append(e) }
        } catch {
            got.error = error
        }
    }
    return got
}

/// One `next` call, measured: the heap may not grow beyond the bound during it, and the
/// reassembly buffer stays within the message limit.
func measuredNext(_ decoder: inout MessageDecoder, _ input: inout UnsafeRawBufferPointer,
                  _ cfg: Config) throws(WebSocketProtocolError) -> WebSocketEvent? {
    let before = allocatedBytes()
    peakBytes = before
    trackPeak = true
    defer {
        trackPeak = false
        let growth = max(peakBytes, allocatedBytes()) - before
        if growth > cfg.heapBound {
            fail("heap grew by \(growth) bytes in one decoder call (bound \(cfg.heapBound), maxMessageSize \(cfg.limits.maxMessageSize))")
        }
        if decoder.bufferCapacity > cfg.limits.maxMessageSize + 1 {
            fail("reassembly buffer capacity \(decoder.bufferCapacity) over maxMessageSize + 1 = \(cfg.limits.maxMessageSize + 1)")
        }
    }
    let event = try decoder.next(&input)
    if event == nil && !input.isEmpty { fail("next returned nil with \(input.count) bytes left") }
    if let event { check(event, cfg) }
    return event
}

struct Outcome: Equatable {
    var events: [WebSocketEvent] = []
    var error: WebSocketProtocolError?

    /// Same events, same error. With permessage-deflate, where the error is found depends on
    /// how much zlib inflates per call, so 1007 (bad data / bad UTF-8) and 1009 (too big)
    /// may trade places between splits.
    func matches(_ other: Outcome, deflate: Bool) -> Bool {
        guard events == other.events else { return false }
        switch (error, other.error) {
        case (nil, nil): return true
        case (let a?, let b?):
            if a.closeCode == b.closeCode { return true }
            let loose: Set<UInt16> = [1007, 1009]
            return deflate && loose.contains(a.closeCode.rawValue) && loose.contains(b.closeCode.rawValue)
        default: return false
        }
    }
}

/// Calls `body` with each piece of `input` (ending at `cuts`) in its own allocation,
/// which is poisoned afterwards; stops when `body` returns false.
func forEachPiece(_ input: UnsafeRawBufferPointer, cuts: [Int],
                  _ body: (UnsafeMutableRawBufferPointer) -> Bool) {
    var start = 0
    for end in cuts + [input.count] where end >= start {
        let count = end - start
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 1)
        let view = UnsafeMutableRawBufferPointer(rebasing: piece[0..<count])
        if count > 0 { view.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[start..<end])) }
        let more = body(view)
        memset(piece.baseAddress!, 0xEE, max(count, 1))
        piece.deallocate()
        if !more { return }
        start = end
    }
}

/// Decodes `input` in pieces with `next`.
func run(_ input: UnsafeRawBufferPointer, cuts: [Int], _ cfg: Config) -> Outcome {
    var decoder = cfg.makeDecoder()
    var outcome = Outcome()
    forEachPiece(input, cuts: cuts) { piece in
        var rest = UnsafeRawBufferPointer(piece)
        do throws(WebSocketProtocolError) {
            while let event = try measuredNext(&decoder, &rest, cfg) { outcome.events.append(event) }
        } catch {
            outcome.error = error
            // Every later call rethrows the same error.
            var more = UnsafeRawBufferPointer(piece)
            do throws(WebSocketProtocolError) {
                _ = try decoder.next(&more)
                fail("decoder accepted input after failing with \(error)")
            } catch let again {
                if again != error { fail("second error \(again) differs from \(error)") }
            }
            return false
        }
        return true
    }
    return outcome
}

/// Decodes `input` in pieces the way WebSocketConnection.process(_:inPlace: true) does:
/// whole messages in place while the decoder offers them, `next` for the rest.
func runInPlace(_ input: UnsafeRawBufferPointer, cuts: [Int], _ cfg: Config) -> Outcome {
    var decoder = cfg.makeDecoder()
    var outcome = Outcome()
    var closed = false
    forEachPiece(input, cuts: cuts) { piece in
        var input = UnsafeRawBufferPointer(piece)
        while true {
            if !input.isEmpty {
                var rest = UnsafeMutableRawBufferPointer(mutating: input)
                while true {
                    let before = Array(rest)
                    guard let (kind, payload) = decoder.takeWholeMessage(&rest) else {
                        if !before.elementsEqual(rest) { fail("takeWholeMessage returned nil but changed its input") }
                        break
                    }
                    let bytes = Array(payload)
                    let event: WebSocketEvent = kind == .text ? .text(bytes) : .binary(bytes)
                    check(event, cfg)
                    if let p = payload.baseAddress, let r = rest.baseAddress {
                        if p + payload.count != UnsafeRawPointer(r) || p < UnsafeRawPointer(piece.baseAddress!) {
                            fail("in-place payload is not inside the input, just before the rest")
                        }
                    }
                    outcome.events.append(event)
                }
                input = UnsafeRawBufferPointer(rest)
            }
            let event: WebSocketEvent?
            do throws(WebSocketProtocolError) {
                event = try measuredNext(&decoder, &input, cfg)
            } catch {
                outcome.error = error
                return false
            }
            guard let event else { return true }
            outcome.events.append(event)
            if case .close = event {
                closed = true
                return false
            }
        }
    }
    _ = closed
    return outcome
}

// MARK: Round trip through FrameEncoder (and the compressor)

struct Seed {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 17
    }
}

/// Re-encodes `events` as the peer would send them and decodes them again.
func roundTrip(_ events: [WebSocketEvent], _ cfg: Config, seed: inout Seed) {
    guard !events.isEmpty else { return }
    let peer: WebSocketRole = cfg.role == .server ? .client : .server
    let encoder = FrameEncoder(role: peer, fixedMaskingKey: MaskingKey(rawValue: UInt32(truncatingIfNeeded: seed.next())))
    let compressor = cfg.deflate
        ? PerMessageDeflateCompressor(windowBits: cfg.windowBits, noContextTakeover: cfg.noContextTakeover)
        : nil
    var wire: [UInt8] = []
    var expected: [WebSocketEvent] = []
    for event in events {
        switch event {
        case .text(let b), .binary(let b):
            let opcode: Opcode = { if case .text = event { return .text } else { return .binary } }()
            var payload = b
            var rsv1 = false
            if let compressor, seed.next() % 4 != 0 {
                payload = compressor.compress(b)
                rsv1 = true
            }
            let fragment = max(1, min(cfg.limits.maxFrameSize, 1 + Int(seed.next() % UInt64(max(payload.count, 1)))))
            let pingBetween = seed.next() % 3 == 0
            var offset = 0
            repeat {
                let end = min(payload.count, offset + fragment)
                payload[offset..<end].withUnsafeBytes { p in
                    encoder.encodeFrame(opcode: offset == 0 ? opcode : .continuation, fin: end == payload.count,
                                        rsv1: offset == 0 && rsv1, payload: p, into: &wire)
                }
                if offset == 0 && end < payload.count && pingBetween {
                    encoder.encodePing([0x70, 0x69], into: &wire)
                    expected.append(.ping([0x70, 0x69]))
                }
                offset = end
            } while offset < payload.count
            expected.append(event)
        case .ping(let p):
            encoder.encodePing(p, into: &wire)
            expected.append(event)
        case .pong(let p):
            encoder.encodePong(p, into: &wire)
            expected.append(event)
        case .close(let code, let reason):
            encoder.encodeClose(code: code, reason: reason, into: &wire)
            expected.append(event)
        }
    }
    let got = decodeWhole(wire, cfg)
    if got.error != nil || got.events != expected {
        fail("round trip mismatch (deflate \(cfg.deflate), window \(cfg.windowBits)):\nexpected \(expected)\ngot \(got)")
    }
}

// MARK: Compression bombs

/// Compresses a large, highly compressible message, sends it in one frame (or several)
/// and checks the decoder returns it exactly when it fits and fails with 1009 otherwise,
/// within the heap bound.
func bomb(_ pattern: UnsafeRawBufferPointer, _ c1: UInt8, _ cfg: Config) {
    let size = (Int(c1) + 1) * 2048
    var message = [UInt8](repeating: 0, count: size)
    if !pattern.isEmpty {
        for i in 0..<size { message[i] = pattern[i % pattern.count] }
    }
    let compressed = PerMessageDeflateCompressor(windowBits: cfg.windowBits).compress(message)
    let peer: WebSocketRole = cfg.role == .server ? .client : .server
    let encoder = FrameEncoder(role: peer, fixedMaskingKey: MaskingKey(rawValue: 0x1234_5678 &* UInt32(c1)))
    var wire: [UInt8] = []
    let fragment = max(1, min(cfg.limits.maxFrameSize, compressed.count))
    var offset = 0
    repeat {
        let end = min(compressed.count, offset + fragment)
        encoder.encodeFrame(opcode: offset == 0 ? .binary : .continuation, fin: end == compressed.count,
                            rsv1: offset == 0, payload: Array(compressed[offset..<end]), into: &wire)
        offset = end
    } while offset < compressed.count
    let got = decodeWhole(wire, cfg)
    if size > cfg.limits.maxMessageSize {
        guard got.events.isEmpty, got.error?.closeCode == .messageTooBig else {
            fail("bomb of \(size) bytes (\(compressed.count) compressed) over the limit \(cfg.limits.maxMessageSize) gave \(got.events.map { "\($0)".prefix(40) }), \(String(describing: got.error))")
        }
    } else {
        guard got.error == nil, got.events == [.binary(message)] else {
            fail("message of \(size) bytes within the limit \(cfg.limits.maxMessageSize) did not decode: \(String(describing: got.error))")
        }
    }
}

// MARK: Entry point

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    _ = hooksInstalled
    let all = UnsafeRawBufferPointer(start: data, count: size)
    let cfg = Config(all[0], all[1])
    let input = UnsafeRawBufferPointer(rebasing: all[2...])

    if cfg.bomb {
        bomb(UnsafeRawBufferPointer(rebasing: input.prefix(16)), all[1], cfg)
        return 0
    }

    let whole = run(input, cuts: [], cfg)

    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in all { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let n = input.count
    let a = Int(h % UInt64(n + 1)), b = Int((h >> 32) % UInt64(n + 1))
    let cuts = [min(a, b), max(a, b)]
    let split = run(input, cuts: cuts, cfg)
    if !split.matches(whole, deflate: cfg.deflate) {
        fail("split mismatch at \(cuts):\nwhole \(whole)\nsplit \(split)")
    }
    if n <= 512 {
        let bytewise = run(input, cuts: Array(0..<n), cfg)
        if !bytewise.matches(whole, deflate: cfg.deflate) { fail("byte-by-byte mismatch:\nwhole \(whole)\nbytes \(bytewise)") }
    }
    let inPlace = runInPlace(input, cuts: [], cfg)
    if !inPlace.matches(whole, deflate: cfg.deflate) { fail("in-place mismatch:\nwhole \(whole)\nin place \(inPlace)") }
    let inPlaceSplit = runInPlace(input, cuts: cuts, cfg)
    if !inPlaceSplit.matches(whole, deflate: cfg.deflate) {
        fail("in-place split mismatch at \(cuts):\nwhole \(whole)\nin place \(inPlaceSplit)")
    }

    var seed = Seed(state: h)
    roundTrip(whole.events, cfg, seed: &seed)
    return 0
}
