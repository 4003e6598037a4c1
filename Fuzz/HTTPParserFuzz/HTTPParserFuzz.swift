// libFuzzer harness for HTTPRequestParser and HTTPResponseParser. Compiled together
// with Sources/TorusHTTP/Parser/*.swift against swift-http-types by
// scripts/fuzz-http.sh; not part of the SwiftPM package.
//
// For every input the request parser parses (1) the whole buffer, (2) the buffer split
// at two positions derived from the input, (3) byte by byte for short inputs, and (4)
// the whole buffer pausing after every event and resuming with a copy of the unconsumed
// rest; the response parser parses (1) to (3), then the end of input. All runs of a
// parser must report identical events (bodies merged) and the identical error; any
// mismatch crashes. Each piece lives in its own exact-size allocation, which is poisoned after
// the call, so AddressSanitizer catches reads past a piece or pointers kept into input.

#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes

struct OwnedHead: Equatable {
    var method: [UInt8]
    var target: [UInt8]
    var path: [UInt8]
    var query: [UInt8]?
    var fields: [[UInt8]]
    var version: HTTPVersion
    var keepAlive: Bool
    var expectContinue: Bool
    var isUpgrade: Bool
    var framing: HTTPBodyFraming
    var form: RequestTargetForm

    init(_ h: RequestHead) {
        method = Array(h.methodString.utf8)
        target = Array(h.target.utf8)
        path = h.withPathBytes { Array($0) }
        query = h.query.map { Array($0.utf8) }
        var f: [[UInt8]] = []
        h.forEachHeader { name, value in f.append(Array(name) + [0] + Array(value)) }
        fields = f
        version = h.version
        keepAlive = h.keepAlive
        expectContinue = h.expectContinue
        isUpgrade = h.isUpgrade
        framing = h.bodyFraming
        form = h.targetForm
        // Invariants of a validated head.
        precondition(h.headerCount == f.count)
        precondition(!method.isEmpty && !target.isEmpty)
        if case .contentLength(let n) = framing { precondition(n > 0) }
    }
}

enum OwnedEvent: Equatable {
    case head(OwnedHead)
    case body([UInt8])
    case end
}

struct Outcome: Equatable {
    var events: [OwnedEvent] = []
    var error: HTTPParseError?

    mutating func record(_ event: HTTPRequestParser.Event) {
        switch event {
        case .head(let h):
            events.append(.head(OwnedHead(h)))
        case .body(let b):
            precondition(!b.isEmpty, "empty body event")
            if case .body(let prev)? = events.last {
                events[events.count - 1] = .body(prev + Array(b))
            } else {
                events.append(.body(Array(b)))
            }
        case .end:
            events.append(.end)
        }
    }
}

/// Feeds `input` to `parse` in pieces ending at `cuts`, each copied into its own
/// allocation that is poisoned after the call; returns the error that stopped it.
func feedPieces(_ input: UnsafeRawBufferPointer, cuts: [Int],
                _ parse: (UnsafeRawBufferPointer) throws(HTTPParseError) -> Void) -> HTTPParseError? {
    var start = 0
    for end in cuts + [input.count] where end >= start {
        let count = end - start
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
        if count > 0 { piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[start..<end])) }
        defer {
            if count > 0 { memset(piece.baseAddress!, 0xEE, count) }
            piece.deallocate()
        }
        do {
            try parse(UnsafeRawBufferPointer(piece))
        } catch {
            return error
        }
        start = end
    }
    return nil
}

/// Parses `input` as requests in pieces ending at `cuts`.
func run(_ input: UnsafeRawBufferPointer, cuts: [Int], limits: HTTPLimits) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = Outcome()
    outcome.error = feedPieces(input, cuts: cuts) { piece throws(HTTPParseError) in
        let consumed = try parser.parse(piece) { event in
            outcome.record(event)
            return .proceed
        }
        precondition(consumed == piece.count || parser.isClosed, "short consume without pause")
    }
    if let error = outcome.error { precondition(parser.error == error) }
    return outcome
}

/// What the response parser reported, in an owned, comparable form.
struct ResponseOutcome: Equatable {
    enum Event: Equatable {
        case informational(String)
        case head(String)
        case body([UInt8])
        case end([String])
    }

    var events: [Event] = []
    var error: HTTPParseError?

    static func describe(_ h: HTTPResponseHead) -> String {
        let fields = h.headerFields.map { "\($0.name.rawName): \($0.value)" }.joined(separator: "|")
        return "\(h.version) \(h.status.code) \(h.status.reasonPhrase) ka=\(h.keepAlive) \(h.framing) \(fields)"
    }

    mutating func record(_ event: HTTPResponseParser.Event) {
        switch event {
        case .informational(let h):
            events.append(.informational(Self.describe(h)))
        case .head(let h):
            if case .contentLength(let n) = h.framing { precondition(n >= 0) }
            events.append(.head(Self.describe(h)))
        case .body(let b):
            precondition(!b.isEmpty, "empty body event")
            if case .body(let prev)? = events.last {
                events[events.count - 1] = .body(prev + Array(b))
            } else {
                events.append(.body(Array(b)))
            }
        case .end(let trailers):
            events.append(.end(trailers.map { "\($0.name.rawName): \($0.value)" }))
        }
    }
}

/// Parses `input` as responses in pieces ending at `cuts`, then the end of input.
func runResponses(_ input: UnsafeRawBufferPointer, cuts: [Int], limits: HTTPLimits) -> ResponseOutcome {
    var parser = HTTPResponseParser(limits: limits)
    var outcome = ResponseOutcome()
    outcome.error = feedPieces(input, cuts: cuts) { piece throws(HTTPParseError) in
        let consumed = try parser.parse(piece) { event in
            outcome.record(event)
            return .proceed
        }
        precondition(consumed == piece.count || parser.isClosed, "short consume without pause")
    }
    if outcome.error == nil {
        do {
            try parser.finish { event in
                outcome.record(event)
                return .proceed
            }
        } catch {
            outcome.error = error
        }
    }
    if let error = outcome.error { precondition(parser.error == error) }
    return outcome
}

/// Parses `input` pausing after every event, resuming with a fresh copy of the rest.
func runPausing(_ input: UnsafeRawBufferPointer, limits: HTTPLimits) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = Outcome()
    var rest = Array(input)
    var guardCount = 0
    while true {
        guardCount += 1
        precondition(guardCount < 1_000_000, "no progress")
        var events = 0
        let consumed: Int
        do {
            consumed = try rest.withUnsafeBytes { buffer in
                try parser.parse(buffer) { event in
                    outcome.record(event)
                    events += 1
                    return .pause
                }
            }
        } catch let error as HTTPParseError {
            outcome.error = error
            return outcome
        } catch {
            fatalError("unexpected error \(error)")
        }
        precondition(consumed <= rest.count)
        rest.removeFirst(consumed)
        if events == 0 && (consumed == 0 || rest.isEmpty) { return outcome }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size > 0 else { return 0 }
    // Alternate between default limits and tiny ones (to exercise the limit paths).
    let limits = input[0] & 1 == 0
        ? HTTPLimits.default
        : HTTPLimits(maxHeadBytes: 300, maxHeaderCount: 6, maxTargetLength: 40, maxMethodLength: 8,
                     maxBodyBytes: 200, maxChunkLineLength: 24)

    let whole = run(input, cuts: [], limits: limits)

    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in input { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let a = Int(h % UInt64(size + 1))
    let b = Int((h >> 32) % UInt64(size + 1))
    let split = run(input, cuts: [min(a, b), max(a, b)], limits: limits)
    if split != whole {
        fatalError("split mismatch at \(min(a, b)),\(max(a, b)):\nwhole \(whole)\nsplit \(split)")
    }
    if size <= 512 {
        let bytewise = run(input, cuts: Array(0..<size), limits: limits)
        if bytewise != whole { fatalError("byte-by-byte mismatch:\nwhole \(whole)\nbytes \(bytewise)") }
    }
    let paused = runPausing(input, limits: limits)
    if paused != whole { fatalError("pause/resume mismatch:\nwhole \(whole)\npaused \(paused)") }

    let responseLimits = input[0] & 1 == 0
        ? HTTPLimits.response
        : HTTPLimits(maxHeadBytes: 300, maxHeaderCount: 6, maxBodyBytes: 200, maxChunkLineLength: 24)
    let wholeResponses = runResponses(input, cuts: [], limits: responseLimits)
    let splitResponses = runResponses(input, cuts: [min(a, b), max(a, b)], limits: responseLimits)
    if splitResponses != wholeResponses {
        fatalError("response split mismatch at \(min(a, b)),\(max(a, b)):\nwhole \(wholeResponses)\nsplit \(splitResponses)")
    }
    if size <= 512 {
        let bytewise = runResponses(input, cuts: Array(0..<size), limits: responseLimits)
        if bytewise != wholeResponses {
            fatalError("response byte-by-byte mismatch:\nwhole \(wholeResponses)\nbytes \(bytewise)")
        }
    }
    return 0
}
