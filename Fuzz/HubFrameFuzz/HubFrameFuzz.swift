// libFuzzer harness for the torus-hub router protocol's frame decoder (HubFrameDecoder
// and HubFrame.decode in Sources/TorusHub/HubFrame.swift). Compiled together with that
// one file by scripts/fuzz.sh; not part of the SwiftPM package.
//
// Input: byte 0 selects the frame limit (1, 5, 64 bytes or the default 1 MiB); the rest
// is the byte stream. The decoder is fed (1) the whole stream, (2) the stream split at
// two points, (3) byte by byte (short inputs), and (4) the whole stream with the
// callback stopping after k frames. Every run must agree with a small independent
// reference parser written from the protocol description (same frames, same error),
// the decoder may never buffer more than one partial frame (< 4 + limit bytes), and
// after a clean run it must hold exactly the unconsumed tail. Every decoded frame must
// round-trip: encoding it reproduces the bytes it was decoded from (except a BYE or
// REFUSED whose reason was not UTF-8: decoding replaces bad bytes with U+FFFD), and decoding the
// encoding gives the frame back.
//
// Each piece lives in its own exact-size allocation, poisoned after the call, so
// AddressSanitizer catches reads past a piece or pointers kept into the input.

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    fatalError("hub fuzz: \(message)")
}

let frameLimits = [1, 5, 64, HubFrame.defaultMaxFrame]

struct Outcome: Equatable {
    var frames: [HubFrame] = []
    var error: HubProtocolError?
}

// MARK: Reference parser (from the protocol description, not from the decoder)

struct Reference {
    var outcome = Outcome()
    /// Byte ranges (length prefix included) of the frames decoded.
    var ranges: [Range<Int>] = []
    /// Bytes before the unconsumed tail.
    var consumed = 0
}

func referenceParse(_ s: [UInt8], maxFrame: Int) -> Reference {
    var r = Reference()
    var i = 0
    while s.count - i >= 4 {
        let length = Int(s[i]) << 24 | Int(s[i + 1]) << 16 | Int(s[i + 2]) << 8 | Int(s[i + 3])
        if length == 0 { r.outcome.error = .emptyFrame; return r }
        if length > maxFrame { r.outcome.error = .frameTooLarge(length); return r }
        if s.count - i - 4 < length { break }
        let type = s[i + 4]
        let payload = Array(s[(i + 5)..<(i + 4 + length)])
        func be32(_ p: [UInt8]) -> UInt32 { UInt32(p[0]) << 24 | UInt32(p[1]) << 16 | UInt32(p[2]) << 8 | UInt32(p[3]) }
        let frame: HubFrame
        switch type {
        case 1:
            // A leading byte below 0x20 is the version (2 or more); none: version 1.
            var version: UInt8 = 1
            var id = payload
            if let first = payload.first, first < 0x20 {
                guard first >= 2 else { r.outcome.error = .badPayload(.hello); return r }
                version = first
                id = Array(payload.dropFirst())
            }
            let ok = (1...64).contains(id.count) && id.allSatisfy { b in
                switch b {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                     UInt8(ascii: "-"), UInt8(ascii: ":"): return true
                default: return false
                }
            }
            guard ok else { r.outcome.error = .invalidID; return r }
            frame = .hello(id: String(decoding: id, as: UTF8.self), version: version)
        case 2:
            guard payload.count == 4 || payload.count == 36 else { r.outcome.error = .badPayload(.welcome); return r }
            frame = .welcome(heartbeatTimeoutMs: be32(payload), nonce: Array(payload[4...]))
        case 8:
            if payload.count == 32 {
                frame = .auth(proof: payload)
            } else if payload.count == 33, payload[32] == 1 {
                frame = .auth(proof: Array(payload[..<32]), confirm: false)
            } else {
                r.outcome.error = .badPayload(.auth)
                return r
            }
        case 9:
            guard payload.isEmpty else { r.outcome.error = .badPayload(.authOK); return r }
            frame = .authOK
        case 10:
            frame = .refused(reason: String(decoding: payload, as: UTF8.self))
        case 3:
            guard payload.isEmpty else { r.outcome.error = .badPayload(.heartbeat); return r }
            frame = .heartbeat
        case 4:
            frame = .event(payload)
        case 5, 6:
            guard payload.count >= 4 else { r.outcome.error = .badPayload(type == 5 ? .command : .reply); return r }
            let body = Array(payload[4...])
            frame = type == 5 ? .command(requestID: be32(payload), body: body) : .reply(requestID: be32(payload), body: body)
        case 7:
            frame = .bye(reason: String(decoding: payload, as: UTF8.self))
        default:
            r.outcome.error = .unknownType(type)
            return r
        }
        r.outcome.frames.append(frame)
        r.ranges.append(i..<(i + 4 + length))
        i += 4 + length
    }
    r.consumed = i
    return r
}

// MARK: Runs of the decoder

/// Feeds `input` in pieces ending at `cuts`, each in its own allocation poisoned after
/// the call; the callback stops after `stopAfter` frames.
func run(_ input: UnsafeRawBufferPointer, cuts: [Int], maxFrame: Int, stopAfter: Int = .max) -> (Outcome, buffered: Int) {
    var decoder = HubFrameDecoder(maxFrame: maxFrame)
    var outcome = Outcome()
    var start = 0
    for end in cuts + [input.count] where end >= start {
        let count = end - start
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 1)
        if count > 0 { piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[start..<end])) }
        defer {
            memset(piece.baseAddress!, 0xEE, max(count, 1))
            piece.deallocate()
        }
        do throws(HubProtocolError) {
            try decoder.feed(UnsafeRawBufferPointer(rebasing: piece[0..<count])) { frame in
                outcome.frames.append(frame)
                return outcome.frames.count < stopAfter
            }
        } catch {
            outcome.error = error
            return (outcome, decoder.bufferedBytes)
        }
        if decoder.bufferedBytes >= HubFrame.headerSize + maxFrame {
            fail("buffered \(decoder.bufferedBytes) bytes with a frame limit of \(maxFrame)")
        }
        if outcome.frames.count >= stopAfter { break }
        start = end
    }
    return (outcome, decoder.bufferedBytes)
}

// MARK: Entry point

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let all = UnsafeRawBufferPointer(start: data, count: size)
    let maxFrame = frameLimits[Int(all[0] & 3)]
    let input = UnsafeRawBufferPointer(rebasing: all[1...])
    let bytes = Array(input)
    let n = bytes.count

    let reference = referenceParse(bytes, maxFrame: maxFrame)
    let (whole, buffered) = run(input, cuts: [], maxFrame: maxFrame)
    if whole != reference.outcome {
        fail("decoder disagrees with the reference:\ndecoder   \(whole)\nreference \(reference.outcome)")
    }
    if whole.error == nil && buffered != n - reference.consumed {
        fail("holds \(buffered) bytes, the unconsumed tail is \(n - reference.consumed)")
    }

    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in all { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let a = Int(h % UInt64(n + 1)), b = Int((h >> 32) % UInt64(n + 1))
    let (split, splitBuffered) = run(input, cuts: [min(a, b), max(a, b)], maxFrame: maxFrame)
    if split != whole { fail("split mismatch at \(min(a, b)),\(max(a, b)):\nwhole \(whole)\nsplit \(split)") }
    if split.error == nil && splitBuffered != buffered { fail("split run holds \(splitBuffered) bytes, whole \(buffered)") }
    if n <= 512 {
        let (bytewise, bytewiseBuffered) = run(input, cuts: Array(0..<n), maxFrame: maxFrame)
        if bytewise != whole { fail("byte-by-byte mismatch:\nwhole \(whole)\nbytes \(bytewise)") }
        if bytewise.error == nil && bytewiseBuffered != buffered { fail("byte-by-byte run holds \(bytewiseBuffered) bytes, whole \(buffered)") }
    }
    if !whole.frames.isEmpty {
        let k = 1 + Int((h >> 20) % UInt64(whole.frames.count))
        let (stopped, _) = run(input, cuts: [min(a, b), max(a, b)], maxFrame: maxFrame, stopAfter: k)
        if stopped.frames != Array(whole.frames.prefix(k)) || (stopped.error != nil && stopped.error != whole.error) {
            fail("stopping after \(k) frames: got \(stopped), whole \(whole)")
        }
    }

    // Round trip of every frame decoded.
    for (frame, range) in zip(whole.frames, reference.ranges) {
        let encoded = frame.encoded
        if encoded != Array(bytes[range]) {
            let payload = Array(bytes[(range.lowerBound + 5)..<range.upperBound])
            let isText: Bool
            switch frame {
            case .bye, .refused: isText = true
            default: isText = false
            }
            guard isText, String(validating: payload, as: UTF8.self) == nil else {
                fail("\(frame) encodes to \(encoded), decoded from \(Array(bytes[range]))")
            }
        }
        var decoder = HubFrameDecoder(maxFrame: HubFrame.defaultMaxFrame)
        var again: [HubFrame] = []
        encoded.withUnsafeBytes { e in
            do throws(HubProtocolError) {
                try decoder.feed(e) { again.append($0); return true }
            } catch {
                fail("\(frame) does not decode from its own encoding: \(error)")
            }
        }
        if again != [frame] || decoder.bufferedBytes != 0 { fail("\(frame) round-trips to \(again)") }
    }
    return 0
}
