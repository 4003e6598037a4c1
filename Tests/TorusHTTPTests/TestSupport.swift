import TorusHTTP

/// An owned copy of a parsed head, for comparisons.
struct HeadSummary: Equatable, CustomStringConvertible {
    var method: String
    var target: String
    var version: HTTPVersion
    var headers: [String]
    var keepAlive: Bool
    var expectContinue: Bool
    var isUpgrade: Bool
    var framing: HTTPBodyFraming

    init(_ head: RequestHead) {
        method = head.methodString
        target = head.target
        version = head.version
        headers = (0..<head.headerCount).map { "\(head.headerName(at: $0)): \(head.headerValue(at: $0))" }
        keepAlive = head.keepAlive
        expectContinue = head.expectContinue
        isUpgrade = head.isUpgrade
        framing = head.bodyFraming
    }

    var description: String { "\(method) \(target) \(version) \(headers) ka=\(keepAlive) \(framing)" }
}

/// An owned event; consecutive body pieces are merged so that different splits compare equal.
enum OwnedEvent: Equatable {
    case head(HeadSummary)
    case body([UInt8])
    case end
}

struct ParseOutcome: Equatable {
    var events: [OwnedEvent] = []
    var error: HTTPParseError?
    var consumed = 0

    var heads: [HeadSummary] {
        events.compactMap { if case .head(let h) = $0 { return h } else { return nil } }
    }
    var bodies: [[UInt8]] {
        events.compactMap { if case .body(let b) = $0 { return b } else { return nil } }
    }
    var endCount: Int { events.filter { $0 == .end }.count }
}

extension ParseOutcome {
    mutating func record(_ event: HTTPRequestParser.Event) {
        switch event {
        case .head(let head):
            events.append(.head(HeadSummary(head)))
        case .body(let bytes):
            precondition(!bytes.isEmpty, "empty body event")
            if case .body(let previous)? = events.last {
                events[events.count - 1] = .body(previous + Array(bytes))
            } else {
                events.append(.body(Array(bytes)))
            }
        case .end:
            events.append(.end)
        }
    }
}

/// Feeds `bytes` to a fresh parser in pieces ending at `cuts` (sorted offsets). Each piece
/// is copied into its own buffer which is scribbled over after the call, to catch any
/// pointer kept into the input.
func parsePieces(_ bytes: [UInt8], cuts: [Int] = [], limits: HTTPLimits = .default) -> ParseOutcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = ParseOutcome()
    var start = 0
    for end in cuts + [bytes.count] where end >= start {
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: max(end - start, 1), alignment: 1)
        defer { piece.deallocate() }
        let slice = UnsafeMutableRawBufferPointer(rebasing: piece[0..<(end - start)])
        bytes[start..<end].withUnsafeBytes { slice.copyMemory(from: $0) }
        do {
            outcome.consumed += try parser.parse(UnsafeRawBufferPointer(slice)) { event in
                outcome.record(event)
                return .proceed
            }
        } catch {
            outcome.error = error
            outcome.consumed = -1  // not comparable across splits once failed
            return outcome
        }
        for k in slice.indices { slice[k] = 0xEE }
        start = end
    }
    return outcome
}

func parse(_ text: String, limits: HTTPLimits = .default) -> ParseOutcome {
    parsePieces(Array(text.utf8), limits: limits)
}

/// Deterministic pseudo-random generator (xorshift64*).
struct XorShift: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

func fnv1a(_ bytes: UnsafeRawBufferPointer, _ hash: inout UInt64) {
    for b in bytes {
        hash = (hash ^ UInt64(b)) &* 0x100_0000_01B3
    }
}

extension Array where Element == UInt8 {
    var string: String { String(decoding: self, as: UTF8.self) }
}
