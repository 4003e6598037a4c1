import Testing
import TorusHTTP

@Suite("Split invariance")
struct SplitTests {
    static let mixed: [UInt8] = Array((
        "\r\nGET /plaintext HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
        + "POST /cl?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world!"
        + "POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "4;ext=1\r\nWiki\r\n5 ;a=\"b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX-T: v\r\n\r\n"
        + "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n"
        + "GET http://localhost/abs HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\r\n"
        + "PUT /empty HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + "GET /last HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    ).utf8)

    @Test func wholeParsesAsExpected() {
        let out = parsePieces(Self.mixed)
        #expect(out.error == nil)
        #expect(out.heads.map(\.target) == ["/plaintext", "/cl?x=1", "/chunked", "*", "http://localhost/abs", "/empty", "/last"])
        #expect(out.bodies.map(\.string) == ["hello, world!", "Wikipedia in\r\n\r\nchunks."])
        #expect(out.endCount == 7)
        #expect(out.consumed == Self.mixed.count)
    }

    @Test func everySingleSplitPoint() {
        let whole = parsePieces(Self.mixed)
        for k in 0...Self.mixed.count {
            let split = parsePieces(Self.mixed, cuts: [k])
            #expect(split == whole, "split at \(k)")
            if split != whole { break }
        }
    }

    @Test func byteByByte() {
        let whole = parsePieces(Self.mixed)
        #expect(parsePieces(Self.mixed, cuts: Array(0..<Self.mixed.count)) == whole)
    }

    @Test func randomMultiSplits() {
        let whole = parsePieces(Self.mixed)
        var rng = XorShift(seed: 42)
        for _ in 0..<300 {
            let count = Int.random(in: 1...12, using: &rng)
            let cuts = (0..<count).map { _ in Int.random(in: 0...Self.mixed.count, using: &rng) }.sorted()
            let split = parsePieces(Self.mixed, cuts: cuts)
            #expect(split == whole, "cuts \(cuts)")
            if split != whole { break }
        }
    }

    @Test func errorsAreSplitInvariantToo() {
        // A smuggling attempt after a valid request: same events and same error at any split.
        let bytes = Array(("GET / HTTP/1.1\r\nHost: a\r\n\r\n"
            + "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").utf8)
        let whole = parsePieces(bytes)
        #expect(whole.error == .contentLengthWithTransferEncoding)
        #expect(whole.heads.count == 1)
        for k in 0...bytes.count {
            #expect(parsePieces(bytes, cuts: [k]) == whole, "split at \(k)")
        }
    }
}

@Suite("Large bodies")
struct LargeBodyTests {
    @Test func tenMiBChunkedStreamedInPieces() throws {
        let size = 10 * 1024 * 1024
        var rng = XorShift(seed: 7)
        var payload = [UInt8](repeating: 0, count: size)
        payload.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in words.indices { words[i] = rng.next() }
        }
        var expected: UInt64 = 0xCBF2_9CE4_8422_2325
        payload.withUnsafeBytes { fnv1a($0, &expected) }

        // Encode with chunks of varying size (1 byte … 64 KiB) and some extensions.
        var wire = Array("POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        wire.reserveCapacity(size + size / 100)
        var offset = 0
        var n = 0
        while offset < size {
            let chunk = min(size - offset, Int.random(in: 1...65536, using: &rng))
            wire.append(contentsOf: String(chunk, radix: 16, uppercase: n % 2 == 0).utf8)
            if n % 5 == 0 { wire.append(contentsOf: ";n=\(n)".utf8) }
            wire.append(contentsOf: [13, 10])
            wire.append(contentsOf: payload[offset..<offset + chunk])
            wire.append(contentsOf: [13, 10])
            offset += chunk
            n += 1
        }
        wire.append(contentsOf: "0\r\nX-Sum: 1\r\n\r\n".utf8)

        var parser = HTTPRequestParser(limits: HTTPLimits(maxBodyBytes: 16 * 1024 * 1024))
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var received = 0
        var ended = false
        var position = 0
        try wire.withUnsafeBytes { all in
            while position < all.count {
                let piece = min(all.count - position, Int.random(in: 1...70_000, using: &rng))
                let slice = UnsafeRawBufferPointer(rebasing: all[position..<position + piece])
                let consumed = try parser.parse(slice) { event in
                    switch event {
                    case .body(let bytes):
                        received += bytes.count
                        fnv1a(bytes, &hash)
                    case .end: ended = true
                    case .head: break
                    }
                    return .proceed
                }
                #expect(consumed == piece)
                position += piece
            }
        }
        #expect(ended)
        #expect(received == size)
        #expect(hash == expected)

        // The default 8 MiB limit rejects the same stream with 413.
        var strict = HTTPRequestParser()
        #expect(throws: HTTPParseError.bodyTooLarge) {
            try wire.withUnsafeBytes { _ = try strict.parse($0) { _ in .proceed } }
        }
    }
}
