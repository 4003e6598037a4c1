import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// Inputs found by the trap audit that used to overflow (and so trap): each is now
/// answered, not crashed on.
@Suite("No trap from input: HTTP dates")
struct NoTrapFromInputTests {
    @Test("If-Modified-Since with a year of more than four digits is not a date")
    func hugeYear() {
        #expect(HTTPDate.parse("Sun, 06 Nov 9223372036854775807 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov 99999999999 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov +994 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Fri, 31 Dec 9999 23:59:59 GMT") == 253_402_300_799)
    }

    @Test("a time outside years 0–9999 (a file's mtime) is clamped when formatted")
    func extremeEpochSeconds() {
        #expect(HTTPDate.string(epochSeconds: Int.max) == "Fri, 31 Dec 9999 23:59:59 GMT")
        #expect(HTTPDate.string(epochSeconds: Int.min) == "Sat, 01 Jan 0000 00:00:00 GMT")
        #expect(HTTPDate.string(epochSeconds: 253_402_300_799) == "Fri, 31 Dec 9999 23:59:59 GMT")
    }

    @Test("the server answers a static file asked with an absurd If-Modified-Since")
    func serverSurvivesHugeYear() async throws {
        try await withServer { server, loop, _ in
            let port = try #require(server.address.port)
            let client = try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: loop)
            try await client.write("GET /static/hello.txt HTTP/1.1\r\nHost: x\r\n"
                                   + "If-Modified-Since: Sun, 06 Nov 9223372036854775807 08:49:37 GMT\r\n"
                                   + "Connection: close\r\n\r\n")
            var reply: [UInt8] = []
            while let chunk = try await client.read() { reply += chunk }
            await client.close()
            let text = String(decoding: reply, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200 OK"), "\(text)")
            #expect(text.hasSuffix("hello static\n"))
        }
    }
}
