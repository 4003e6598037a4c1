import Foundation
import Testing
@testable import TorusHTTP
import TorusTestSupport

// The request parser against `LegacyRequestParser` (ReferenceParser/: the parser before
// the one-pass head parser): for every input below, fed whole, in three random splits,
// byte by byte and pausing after every event, with the default and with tiny limits,
// both must report the same events (each head compared field by field, down to its
// storage bytes and offsets), consume the same number of bytes and stop with the same
// error. Pure parsing: no event loop, so no ledger is involved.

/// Everything a parsed head holds, owned, so two parsers' heads compare exactly.
struct ExactHead: Equatable, CustomStringConvertible {
    var storage: [UInt8]
    var spans: [[Int32]]
    var offsets: [Int32]
    var method: HTTPMethodKind
    var version: HTTPVersion
    var targetForm: RequestTargetForm
    var keepAlive: Bool
    var expectContinue: Bool
    var isUpgrade: Bool
    var bodyFraming: HTTPBodyFraming

    init(_ h: RequestHead) {
        storage = h.storage
        spans = h.spans.map { [$0.nameStart, $0.nameEnd, $0.valueStart, $0.valueEnd] }
        offsets = [
            h.methodEnd, h.targetStart, h.targetEnd, h.pathStart, h.pathEnd, h.queryStart,
            h.authorityStart, h.authorityEnd, h.hostIndex,
        ]
        method = h.method
        version = h.version
        targetForm = h.targetForm
        keepAlive = h.keepAlive
        expectContinue = h.expectContinue
        isUpgrade = h.isUpgrade
        bodyFraming = h.bodyFraming
    }

    var description: String {
        "\(String(decoding: storage, as: UTF8.self).debugDescription) spans \(spans) offsets \(offsets) "
            + "\(method) \(version) \(targetForm) ka=\(keepAlive) ec=\(expectContinue) up=\(isUpgrade) \(bodyFraming)"
    }
}

/// The events, bytes consumed and error of one run.
struct ExactOutcome: Equatable {
    enum Event: Equatable {
        case head(ExactHead)
        case body([UInt8])
        case end
    }

    var events: [Event] = []
    var consumed = 0
    var error: HTTPParseError?

    mutating func record(_ event: HTTPRequestParser.Event) {
        switch event {
        case .head(let h):
            events.append(.head(ExactHead(h)))
        case .body(let b):
            if case .body(let previous)? = events.last {
                events[events.count - 1] = .body(previous + Array(b))
            } else {
                events.append(.body(Array(b)))
            }
        case .end:
            events.append(.end)
        }
    }
}

/// What both parsers offer the harness.
protocol DifferentialParser {
    static func make(limits: HTTPLimits) -> Self
    mutating func parse(
        _ bytes: UnsafeRawBufferPointer, _ handler: (HTTPRequestParser.Event) -> HTTPParserControl
    ) throws(HTTPParseError) -> Int
}

extension HTTPRequestParser: DifferentialParser {
    static func make(limits: HTTPLimits) -> HTTPRequestParser { HTTPRequestParser(limits: limits) }
}

extension LegacyRequestParser: DifferentialParser {
    static func make(limits: HTTPLimits) -> LegacyRequestParser { LegacyRequestParser(limits: limits) }
}

enum Differential {
    /// The fuzzer's tiny limits, and tinier ones that cut into the commonest requests.
    static let limitSets: [HTTPLimits] = [
        .default,
        HTTPLimits(maxHeadBytes: 300, maxHeaderCount: 6, maxTargetLength: 40, maxMethodLength: 8,
                   maxBodyBytes: 200, maxChunkLineLength: 24),
        HTTPLimits(maxHeadBytes: 60, maxHeaderCount: 2, maxTargetLength: 9, maxMethodLength: 3,
                   maxBodyBytes: 5, maxChunkLineLength: 6),
    ]

    /// Feeds `input` in pieces ending at `cuts` (sorted), each piece scribbled over
    /// after its call, so a pointer the parser kept into the input would show. (Reads
    /// past a piece are the fuzzer's to catch, under AddressSanitizer.)
    static func run<P: DifferentialParser>(_: P.Type, _ input: [UInt8], cuts: [Int], limits: HTTPLimits) -> ExactOutcome {
        var parser = P.make(limits: limits)
        var outcome = ExactOutcome()
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(input.count, 1), alignment: 1)
        defer { copy.deallocate() }
        input.withUnsafeBytes { copy.copyMemory(from: $0) }
        var start = 0
        var c = 0
        while c <= cuts.count {
            let end = c < cuts.count ? cuts[c] : input.count
            c += 1
            guard end >= start else { continue }
            let piece = UnsafeMutableRawBufferPointer(rebasing: copy[start..<end])
            start = end
            do {
                outcome.consumed += try parser.parse(UnsafeRawBufferPointer(piece)) { event in
                    outcome.record(event)
                    return .proceed
                }
            } catch {
                outcome.error = error
                return outcome
            }
            piece.initializeMemory(as: UInt8.self, repeating: 0xEE)
        }
        return outcome
    }

    /// Feeds `input` whole, pausing after every event and feeding a fresh copy of the
    /// unconsumed rest again, while the parser makes progress.
    static func runPausing<P: DifferentialParser>(_: P.Type, _ input: [UInt8], limits: HTTPLimits) -> ExactOutcome {
        var parser = P.make(limits: limits)
        var outcome = ExactOutcome()
        var rest = input[...]
        for _ in 0..<100_000 {
            var events = 0
            var failure: HTTPParseError?
            let consumed = Array(rest).withUnsafeBytes { buffer in
                do throws(HTTPParseError) {
                    return try parser.parse(buffer) { event in
                        outcome.record(event)
                        events += 1
                        return .pause
                    }
                } catch {
                    failure = error
                    return 0
                }
            }
            if let failure {
                outcome.error = failure
                return outcome
            }
            outcome.consumed += consumed
            rest = rest.dropFirst(consumed)
            if events == 0 { break }
        }
        return outcome
    }

    /// Compares the two parsers on `input` fed whole, in three random splits, byte by
    /// byte (up to `bytewiseLimit` bytes) and pausing, under each of `limits`. Returns a
    /// description of the first difference.
    static func compare(
        _ input: [UInt8], limits: [HTTPLimits], rng: inout XorShift, bytewiseLimit: Int = 4096
    ) -> String? {
        var feeds: [(String, [Int], Bool)] = [("whole", [], false), ("pausing", [], true)]
        for _ in 0..<3 {
            let count = Int.random(in: 1...3, using: &rng)
            feeds.append(("split", (0..<count).map { _ in Int.random(in: 0...input.count, using: &rng) }.sorted(), false))
        }
        if input.count <= bytewiseLimit { feeds.append(("bytes", Array(0..<input.count), false)) }
        for l in limits {
            for (name, cuts, pausing) in feeds {
                let new = pausing
                    ? runPausing(HTTPRequestParser.self, input, limits: l)
                    : run(HTTPRequestParser.self, input, cuts: cuts, limits: l)
                let old = pausing
                    ? runPausing(LegacyRequestParser.self, input, limits: l)
                    : run(LegacyRequestParser.self, input, cuts: cuts, limits: l)
                if new != old {
                    return "\(name) \(name == "split" ? "\(cuts)" : "") limits \(l)\ninput \(String(decoding: input, as: UTF8.self).debugDescription)\n"
                        + "new \(new.error.map { "\($0)" } ?? "ok") consumed \(new.consumed) \(new.events)\n"
                        + "old \(old.error.map { "\($0)" } ?? "ok") consumed \(old.consumed) \(old.events)"
                }
            }
        }
        return nil
    }
}

/// Requests to mutate: valid ones of every shape, and invalid ones for most errors.
enum DifferentialSeeds {
    static let plaintext = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        + "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n"
        + "Connection: keep-alive\r\n\r\n"

    static let texts: [String] = [
        plaintext,
        plaintext + plaintext,
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /static/app/index.html?lang=en&v=20240101 HTTP/1.1\r\nHost: www.example.com\r\n"
            + "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
            + "Accept-Encoding: gzip, deflate, br, zstd\r\nCookie: a=b; c=%3D\r\nIf-None-Match: \"5d8c\"\r\n\r\n",
        "POST /cl?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world!",
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\nWiki\r\n0\r\nX-T: v\r\n\r\n",
        "PUT /p HTTP/1.1\r\nhost: h\r\ncontent-length: 3, 3\r\nContent-Length: 3\r\n\r\nabc",
        "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "GET http://user.example:80/abs/p?q=1%20 HTTP/1.1\r\nHost: user.example\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD /h HTTP/1.9\r\nHost: [::1]:8080\r\nX-Empty:\r\nX-Tabs:\t a \t\r\n\r\n",
        "DELETE /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "PATCH /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        "TRACE / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, keep-alive\r\nexpect: 100-CONTINUE\r\n\r\n",
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n",
        "GET /a%2fb%zz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    ] + malformedCases.prefix(80).map { String(decoding: $0.input, as: UTF8.self) }

    static var requests: [[UInt8]] { texts.map { Array($0.utf8) } }

    /// Requests at each limit of `limits`: method, target, field count and head size one
    /// below, at and above it (and the target at the scanner's allowance for the version).
    static func atLimits(_ limits: HTTPLimits) -> [[UInt8]] {
        var out: [String] = []
        let tail = " HTTP/1.1\r\nHost: a\r\n\r\n"
        for d in -1...1 {
            let m = max(1, limits.maxMethodLength + d)
            out.append(String(repeating: "G", count: m) + " /" + tail)
            out.append(String(repeating: "G", count: m) + "\r\n\r\n")
        }
        for d in [-1, 0, 1, 2, 9, 10, 11, 12] {
            let t = max(1, limits.maxTargetLength + d)
            out.append("GET /" + String(repeating: "t", count: t - 1) + tail)
            out.append("GET /" + String(repeating: "t", count: t - 1) + " HTTP/1.10000\r\nHost: a\r\n\r\n")
            out.append("GET /" + String(repeating: "t", count: t - 1) + "\r\nHost: a\r\n\r\n")
        }
        for d in -1...1 {
            let n = max(0, limits.maxHeaderCount + d)
            out.append("GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: max(0, n - 1)) + "Host: a\r\n\r\n")
        }
        let minimal = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n"
        for d in -2...2 {
            let pad = limits.maxHeadBytes + d - minimal.utf8.count
            guard pad >= 0, pad < 20_000 else { continue }
            out.append("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: pad) + "\r\n\r\n")
            out.append("\r\n" + "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: max(0, pad - 2)) + "\r\n\r\n")
        }
        return out.map { Array($0.utf8) }
    }
}

/// Seeded mutations of a request.
struct Mutator {
    var rng: XorShift
    static let specials: [UInt8] = [0x0D, 0x0A, 0x20, 0x09, 0x00, 0x80, 0x3A, 0x2C, 0x3B, 0x25, 0x3F, 0x2F, 0x7F, 0x23]

    mutating func below(_ n: Int) -> Int { Int.random(in: 0..<max(n, 1), using: &rng) }

    mutating func mutate(_ input: [UInt8], limits: HTTPLimits) -> [UInt8] {
        var b = input
        for _ in 0...below(3) {
            let at = below(b.count + 1)
            switch below(9) {
            case 0 where !b.isEmpty:  // flip a bit
                let k = below(b.count)
                b[k] ^= UInt8(1) << UInt8(below(8))
            case 1:  // insert a byte the parser cares about
                b.insert(Self.specials[below(Self.specials.count)], at: at)
            case 2 where !b.isEmpty:  // delete a few bytes
                let k = below(b.count)
                b.removeSubrange(k..<min(b.count, k + 1 + below(3)))
            case 3:  // duplicate a line
                let lines = lineRanges(b)
                if let r = lines.isEmpty ? nil : lines[below(lines.count)] {
                    b.insert(contentsOf: b[r], at: r.upperBound)
                }
            case 4:  // change the case of a field name (or of anything before a colon)
                let lines = lineRanges(b)
                if let r = lines.isEmpty ? nil : lines[below(lines.count)] {
                    for k in r {
                        if b[k] == UInt8(ascii: ":") { break }
                        if isAlpha(b[k]) && below(2) == 0 { b[k] ^= 0x20 }
                    }
                }
            case 5:  // a long token near a limit
                let length = [limits.maxMethodLength, limits.maxTargetLength, limits.maxHeadBytes / 2, 8, 40][below(5)] + below(3) - 1
                let byte: UInt8 = [UInt8(ascii: "a"), UInt8(ascii: "/"), UInt8(ascii: "%"), UInt8(ascii: "-")][below(4)]
                b.insert(contentsOf: [UInt8](repeating: byte, count: max(0, min(length, 20_000))), at: at)
            case 6:  // replace a byte with a special one
                if !b.isEmpty { b[below(b.count)] = Self.specials[below(Self.specials.count)] }
            case 7:  // splice a well-known field line in
                let fields = ["Host: b\r\n", "Content-Length: 2\r\n", "Transfer-Encoding: chunked\r\n",
                              "Connection: close\r\n", "Connection: upgrade\r\n", "Upgrade: x\r\n",
                              "Expect: 100-continue\r\n", "content-length: 0\r\n", "\r\n"]
                let lines = lineRanges(b)
                let where_ = lines.isEmpty ? at : lines[below(lines.count)].upperBound
                b.insert(contentsOf: Array(fields[below(fields.count)].utf8), at: where_)
            default:  // truncate
                b.removeSubrange(min(at, b.count)...)
            }
        }
        return b
    }

    /// The ranges of the lines of `b`, each with its line break.
    func lineRanges(_ b: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        var k = 0
        while k < b.count {
            if b[k] == asciiLF {
                out.append(start..<k + 1)
                start = k + 1
            }
            k += 1
        }
        return out
    }
}

// The tests are CPU-bound for seconds: they yield every few milliseconds, so the
// timing-sensitive server tests running beside them get the cooperative pool's threads.
@Suite("Differential: request parser against the pre-one-pass parser")
struct DifferentialParserTests {
    @Test("the HTTP fuzz corpus")
    func fuzzCorpus() async throws {
        let folder = BuiltProducts.packageRoot + "/Fuzz/corpus/http"
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(names.count > 100)
        var rng = XorShift(seed: 1)
        var failures = 0
        for (k, name) in names.enumerated() {
            if k % 8 == 0 { await Task.yield() }
            guard let data = FileManager.default.contents(atPath: folder + "/" + name) else { continue }
            let input = [UInt8](data)
            if let difference = Differential.compare(input, limits: Array(Differential.limitSets.prefix(2)), rng: &rng) {
                Issue.record("\(name): \(difference)")
                failures += 1
                if failures > 5 { return }
            }
        }
    }

    @Test("requests at every limit")
    func limits() async {
        var rng = XorShift(seed: 2)
        var failures = 0
        for limits in Differential.limitSets {
            for input in DifferentialSeeds.atLimits(limits) {
                await Task.yield()
                if let difference = Differential.compare(input, limits: Differential.limitSets, rng: &rng) {
                    Issue.record(Comment(rawValue: difference))
                    failures += 1
                    if failures > 5 { return }
                }
            }
        }
    }

    /// Each mutant is compared under the default limits and under one of the tiny sets.
    @Test("seeded mutations of valid and invalid requests", arguments: 0..<4)
    func mutations(_ round: Int) async {
        var mutator = Mutator(rng: XorShift(seed: 0x5EED_0000 + UInt64(round)))
        var rng = XorShift(seed: 0xD1FF_0000 + UInt64(round))
        let seeds = DifferentialSeeds.requests + Differential.limitSets.flatMap { DifferentialSeeds.atLimits($0) }
        var failures = 0
        for k in 0..<Self.mutantsPerRound {
            if k % 16 == 0 { await Task.yield() }
            let tiny = Differential.limitSets[1 + k % 2]
            var input = seeds[mutator.below(seeds.count)]
            // Now and then a mutant of a mutant, or two requests in a row.
            input = mutator.mutate(input, limits: k % 3 == 0 ? .default : tiny)
            if mutator.below(4) == 0 { input = mutator.mutate(input, limits: tiny) }
            if mutator.below(8) == 0 { input += seeds[mutator.below(seeds.count)] }
            if let difference = Differential.compare(input, limits: [.default, tiny], rng: &rng, bytewiseLimit: 600) {
                Issue.record(Comment(rawValue: "mutant \(round).\(k): \(difference)"))
                failures += 1
                if failures > 5 { return }
            }
        }
    }

    static let mutantsPerRound = 4_000
}

/// The field validator the response parser shares, against the old one: over complete
/// field sections as a scanner hands them over (every line ending in CR LF, no other CR
/// or LF), both must record the same spans and facts, or fail with the same error.
@Suite("Differential: field validation against the pre-one-pass validator")
struct DifferentialFieldTests {
    /// `bytes` as a complete head from a scanner's point of view, or nil.
    static func completeHead(_ bytes: [UInt8]) -> [UInt8]? {
        var head = bytes
        guard let end = firstEmptyLine(head) else { return nil }
        head.removeSubrange(end...)
        for k in head.indices {
            if head[k] == asciiLF && (k == 0 || head[k - 1] != asciiCR) { return nil }
            if head[k] == asciiCR && (k + 1 == head.count || head[k + 1] != asciiLF) { return nil }
        }
        return head
    }

    /// The index after the first CRLF CRLF.
    static func firstEmptyLine(_ b: [UInt8]) -> Int? {
        var k = 3
        while k < b.count {
            if b[k - 3] == asciiCR && b[k - 2] == asciiLF && b[k - 1] == asciiCR && b[k] == asciiLF { return k + 1 }
            k += 1
        }
        return nil
    }

    static func describe(_ info: FieldSectionInfo) -> String {
        "\(info.contentLength) \(info.transferEncodingSeen) \(info.chunkedCount) \(info.lastCodingIsChunked) "
            + "\(info.otherCodingSeen) \(info.hostCount) \(info.hostIndex) \(info.connectionClose) "
            + "\(info.connectionKeepAlive) \(info.connectionUpgrade) \(info.upgradeSeen) \(info.expectContinue)"
    }

    static func describe(_ info: LegacyFieldSectionInfo) -> String {
        "\(info.contentLength) \(info.transferEncodingSeen) \(info.chunkedCount) \(info.lastCodingIsChunked) "
            + "\(info.otherCodingSeen) \(info.hostCount) \(info.hostIndex) \(info.connectionClose) "
            + "\(info.connectionKeepAlive) \(info.connectionUpgrade) \(info.upgradeSeen) \(info.expectContinue)"
    }

    @Test("mutated field sections, default and tiny limits")
    func mutatedFieldSections() async {
        var mutator = Mutator(rng: XorShift(seed: 0xF1E1_D5EC))
        let seeds = DifferentialSeeds.requests
        var compared = 0
        var failures = 0
        for k in 0..<20_000 {
            if k % 64 == 0 { await Task.yield() }
            let limits = Differential.limitSets[k % 3]
            guard let head = Self.completeHead(mutator.mutate(seeds[mutator.below(seeds.count)], limits: limits)),
                let firstLine = head.firstIndex(of: asciiLF)
            else { continue }
            compared += 1
            var newSpans: [FieldSpan] = []
            var oldSpans: [FieldSpan] = []
            let (new, old) = head.withUnsafeBufferPointer { p in
                (Result { () throws(HTTPParseError) in
                    try HeadValidator.validateFields(p, from: firstLine + 1, spans: &newSpans, limits: limits)
                 },
                 LegacyHeadValidator.validateFields(p, from: firstLine + 1, spans: &oldSpans, limits: limits))
            }
            let newText: String
            let oldText: String
            switch new {
            case .success(let info): newText = Self.describe(info) + " end \(info.end == head.count)"
            case .failure(let error): newText = "\(error)"
            }
            switch old {
            case .success(let info): oldText = Self.describe(info) + " end true"
            case .failure(let error): oldText = "\(error)"
            }
            let spansNew = newSpans.map { [$0.nameStart, $0.nameEnd, $0.valueStart, $0.valueEnd] }
            let spansOld = oldSpans.map { [$0.nameStart, $0.nameEnd, $0.valueStart, $0.valueEnd] }
            if newText != oldText || spansNew != spansOld {
                Issue.record("\(String(decoding: head, as: UTF8.self).debugDescription)\nnew \(newText) \(spansNew)\nold \(oldText) \(spansOld)")
                failures += 1
                if failures > 5 { return }
            }
        }
        #expect(compared > 5_000)
    }
}
