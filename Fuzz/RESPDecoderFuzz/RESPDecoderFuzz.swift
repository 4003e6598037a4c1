// libFuzzer harness for TorusRedis's RESP decoder (RESPDecoder, RESPValue in
// Sources/TorusRedis). Compiled together with those files by scripts/fuzz.sh; not
// part of the SwiftPM package.
//
// Input: byte 0 selects the decoder's limits (bytes: 64, 1 KiB or 64 KiB; depth: 2,
// 8 or 64); the rest is the byte stream a server sent. The decoder is fed (1) the
// whole stream, (2) the stream split at two points, (3) byte by byte (short inputs).
// Every run must give the same values and the same error, the bytes buffered must
// stay within the limit plus the piece being fed, and a clean run must hold exactly
// the bytes after the last value. Every decoded value is encoded again (by the
// harness's own encoder, written from the RESP3 specification) and must decode to
// itself.
//
// Each piece lives in its own exact-size allocation, poisoned after the call, so
// AddressSanitizer catches reads past a piece or pointers kept into the input.

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    fatalError("RESP fuzz: \(message)")
}

struct Outcome: Equatable {
    var values: [RESPValue] = []
    var error: RESPError?

    static func == (a: Outcome, b: Outcome) -> Bool {
        a.error == b.error && a.values.count == b.values.count && zip(a.values, b.values).allSatisfy(same)
    }
}

/// Equality that takes NaN to equal NaN (a double reply may be nan).
func same(_ a: RESPValue, _ b: RESPValue) -> Bool {
    switch (a, b) {
    case (.double(let x), .double(let y)): return x == y || (x.isNaN && y.isNaN)
    case (.array(let x), .array(let y)), (.set(let x), .set(let y)), (.push(let x), .push(let y)):
        return x.count == y.count && zip(x, y).allSatisfy(same)
    case (.map(let x), .map(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { same($0.key, $1.key) && same($0.value, $1.value) }
    default: return a == b
    }
}

func run(_ input: UnsafeRawBufferPointer, cuts: [Int], maxBytes: Int, maxDepth: Int) -> (Outcome, buffered: Int) {
    var decoder = RESPDecoder(maxBytes: maxBytes, maxDepth: maxDepth)
    var outcome = Outcome()
    var start = 0
    for end in cuts + [input.count] where end >= start {
        let count = end - start
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 1)
        if count > 0 { piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[start..<end])) }
        decoder.feed(UnsafeRawBufferPointer(rebasing: piece[0..<count]))
        memset(piece.baseAddress!, 0xEE, max(count, 1))
        piece.deallocate()
        do throws(RESPError) {
            while let value = try decoder.next() { outcome.values.append(value) }
        } catch {
            outcome.error = error
            return (outcome, decoder.buffered)
        }
        if decoder.buffered > decoder.maxBytes + count { fail("buffered \(decoder.buffered) bytes with a limit of \(decoder.maxBytes)") }
        start = end
    }
    return (outcome, decoder.buffered)
}

// MARK: The harness's encoder (RESP3)

func encode(_ value: RESPValue, into out: inout [UInt8]) {
    func line(_ type: Character, _ text: String) { out += Array("\(type)\(text)\r\n".utf8) }
    func blob(_ type: Character, _ bytes: [UInt8]) { line(type, String(bytes.count)); out += bytes; out += [13, 10] }
    switch value {
    case .simpleString(let s): line("+", s)
    case .error(let s):
        if s.utf8.contains(13) || s.utf8.contains(10) { blob("!", Array(s.utf8)) } else { line("-", s) }
    case .integer(let n): line(":", String(n))
    case .bulkString(let b): blob("$", b)
    case .null: line("_", "")
    case .array(let a): line("*", String(a.count)); for v in a { encode(v, into: &out) }
    case .double(let d): line(",", d.isNaN ? "nan" : d == .infinity ? "inf" : d == -.infinity ? "-inf" : "\(d)")
    case .boolean(let b): line("#", b ? "t" : "f")
    case .bigNumber(let s): line("(", s)
    case .verbatim(let format, let text): blob("=", Array(format.utf8) + [UInt8(ascii: ":")] + text)
    case .map(let pairs): line("%", String(pairs.count)); for p in pairs { encode(p.key, into: &out); encode(p.value, into: &out) }
    case .set(let a): line("~", String(a.count)); for v in a { encode(v, into: &out) }
    case .push(let a): line(">", String(a.count)); for v in a { encode(v, into: &out) }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let all = UnsafeRawBufferPointer(start: data, count: size)
    let maxBytes = [64, 1024, 64 << 10, 64 << 10][Int(all[0] & 3)]
    let maxDepth = [2, 8, 64, 64][Int((all[0] >> 2) & 3)]
    let input = UnsafeRawBufferPointer(rebasing: all[1...])
    let n = input.count

    let (whole, buffered) = run(input, cuts: [], maxBytes: maxBytes, maxDepth: maxDepth)
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in all { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let a = Int(h % UInt64(n + 1)), b = Int((h >> 32) % UInt64(n + 1))
    let (split, splitBuffered) = run(input, cuts: [min(a, b), max(a, b)], maxBytes: maxBytes, maxDepth: maxDepth)
    // A limit may be met earlier or later depending on what was buffered when it was
    // checked (tooLarge), but values decoded before it must agree.
    let comparable = { (o: Outcome) -> Outcome in
        var o = o
        if case .tooLarge? = o.error { o.error = nil }
        return o
    }
    if whole.error.map({ if case .tooLarge = $0 { return false } else { return true } }) ?? true,
       split.error.map({ if case .tooLarge = $0 { return false } else { return true } }) ?? true {
        if split != whole { fail("split mismatch at \(min(a, b)),\(max(a, b)):\nwhole \(whole)\nsplit \(split)") }
        if whole.error == nil && splitBuffered != buffered { fail("split holds \(splitBuffered), whole \(buffered)") }
    } else {
        let w = comparable(whole), s = comparable(split)
        let k = min(w.values.count, s.values.count)
        if !zip(w.values.prefix(k), s.values.prefix(k)).allSatisfy(same) { fail("values before a limit differ") }
    }
    if n <= 256 && whole.error == nil {
        let (bytewise, bytewiseBuffered) = run(input, cuts: Array(0..<n), maxBytes: maxBytes, maxDepth: maxDepth)
        if bytewise != whole { fail("byte-by-byte mismatch:\nwhole \(whole)\nbytes \(bytewise)") }
        if bytewiseBuffered != buffered { fail("byte-by-byte holds \(bytewiseBuffered), whole \(buffered)") }
    }
    // Round trip through the harness's encoder.
    for value in whole.values {
        var encoded: [UInt8] = []
        encode(value, into: &encoded)
        var decoder = RESPDecoder(maxBytes: max(maxBytes, encoded.count + 64), maxDepth: 64)
        decoder.feed(encoded)
        do throws(RESPError) {
            guard let again = try decoder.next(), same(again, value), decoder.buffered == 0 else {
                fail("\(value) does not round-trip through \(encoded)")
            }
        } catch {
            fail("\(value) encodes to bytes that do not decode: \(error)")
        }
    }
    return 0
}
