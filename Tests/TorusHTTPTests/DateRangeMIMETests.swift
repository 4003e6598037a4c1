import Testing
import TorusHTTP

#if canImport(Glibc)
import Glibc
#endif

@Suite("HTTP date")
struct HTTPDateTests {
    @Test func knownDates() {
        #expect(HTTPDate.string(epochSeconds: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.string(epochSeconds: 0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.string(epochSeconds: 951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(HTTPDate.string(epochSeconds: 1_709_251_199) == "Thu, 29 Feb 2024 23:59:59 GMT")
        #expect(HTTPDate.string(epochSeconds: 4_102_444_800) == "Fri, 01 Jan 2100 00:00:00 GMT")
        #expect(HTTPDate.string(epochSeconds: -1) == "Wed, 31 Dec 1969 23:59:59 GMT")
    }

    @Test func matchesGmtime() {
        // Cross-check against libc strftime over a spread of instants.
        var rng = XorShift(seed: 99)
        for _ in 0..<2000 {
            var t = time_t(Int.random(in: 0...4_000_000_000, using: &rng))
            var tmv = tm()
            gmtime_r(&t, &tmv)
            var buffer = [CChar](repeating: 0, count: 64)
            let n = strftime(&buffer, 64, "%a, %d %b %Y %H:%M:%S GMT", &tmv)
            let expected = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            #expect(HTTPDate.string(epochSeconds: Int(t)) == expected)
        }
    }

    @Test func cacheRegeneratesAtMostOncePerSecond() {
        var cache = HTTPDateCache(epochSeconds: 1_000)
        #expect(cache.string == "Thu, 01 Jan 1970 00:16:40 GMT")
        for _ in 0..<1000 { cache.update(epochSeconds: 1_000) }
        #expect(cache.regenerations == 0)
        cache.update(epochSeconds: 1_001)
        cache.update(epochSeconds: 1_001)
        #expect(cache.regenerations == 1)
        #expect(cache.string == "Thu, 01 Jan 1970 00:16:41 GMT")
        var out: [UInt8] = []
        cache.append(to: &out)
        #expect(out.count == 29)
    }

    @Test func liveCacheIsWellFormed() {
        var cache = HTTPDateCache()
        cache.update()
        let s = cache.string
        #expect(s.utf8.count == 29)
        #expect(s.hasSuffix(" GMT"))
        #expect(cache.cachedSecond == HTTPDate.currentEpochSeconds() || cache.cachedSecond + 1 == HTTPDate.currentEpochSeconds())
    }
}

@Suite("Range header")
struct RangeHeaderTests {
    @Test(arguments: [
        ("bytes=0-499", 1000, ByteRangeResult.partial(0..<500)),
        ("bytes=500-999", 1000, .partial(500..<1000)),
        ("bytes=500-5000", 1000, .partial(500..<1000)),
        ("bytes=999-999", 1000, .partial(999..<1000)),
        ("bytes=500-", 1000, .partial(500..<1000)),
        ("bytes=-200", 1000, .partial(800..<1000)),
        ("bytes=-2000", 1000, .partial(0..<1000)),
        ("BYTES=0-0", 1000, .partial(0..<1)),
        (" bytes= 1-2 ", 1000, .partial(1..<3)),
        ("bytes=0-99999999999999999999999", 10, .partial(0..<10)),
        ("bytes=1000-", 1000, .unsatisfiable),
        ("bytes=1000-2000", 1000, .unsatisfiable),
        ("bytes=99999999999999999999-", 1000, .unsatisfiable),
        ("bytes=-0", 1000, .unsatisfiable),
        ("bytes=0-", 0, .unsatisfiable),
        ("bytes=-5", 0, .full),
        ("bytes=5-1", 1000, .full),
        ("bytes=0-1,5-6", 1000, .full),
        ("bytes=0-1,", 1000, .partial(0..<2)),
        ("items=0-1", 1000, .full),
        ("bytes=", 1000, .full),
        ("bytes=-", 1000, .full),
        ("bytes=a-b", 1000, .full),
        ("bytes=1", 1000, .full),
        ("bytes=+1-2", 1000, .full),
        ("bytes 0-1", 1000, .full),
    ] as [(String, Int, ByteRangeResult)])
    func evaluate(_ value: String, _ size: Int, _ expected: ByteRangeResult) {
        #expect(RangeHeader.evaluate(value, fileSize: size) == expected)
    }

    @Test func absentHeader() {
        #expect(RangeHeader.evaluate(nil, fileSize: 10) == .full)
    }

    @Test func contentRangeValues() {
        #expect(RangeHeader.contentRange(0..<500, fileSize: 1000) == "bytes 0-499/1000")
        #expect(RangeHeader.unsatisfiedContentRange(fileSize: 1000) == "bytes */1000")
    }
}

@Suite("MIME types")
struct MIMETypeTests {
    @Test func lookups() {
        #expect(MIMETypes.contentType(forExtension: "html") == "text/html; charset=utf-8")
        #expect(MIMETypes.contentType(forExtension: "PNG") == "image/png")
        #expect(MIMETypes.contentType(forPath: "/static/app.min.js") == "text/javascript; charset=utf-8")
        #expect(MIMETypes.contentType(forPath: "/static/font.woff2") == "font/woff2")
        #expect(MIMETypes.contentType(forPath: "/a.dir/README") == "application/octet-stream")
        #expect(MIMETypes.contentType(forPath: "noext") == "application/octet-stream")
        #expect(MIMETypes.contentType(forPath: "x.unknownext") == "application/octet-stream")
    }
}
