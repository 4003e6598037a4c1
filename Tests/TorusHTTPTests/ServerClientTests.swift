import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

private let curl = "/usr/bin/curl"

/// Runs curl with `-s -S` and a bounded time; returns (exit status, output).
private func curlRun(_ arguments: [String]) async throws -> (Int32?, String) {
    try await run(curl, ["-s", "-S", "--max-time", "20"] + arguments)
}

@Suite("Server with curl and Python")
struct ServerClientTests {
    @Test("curl: plaintext, json, 404, HEAD")
    func curlBasics() async throws {
        try await withServer { server, _, _ in
            let base = "http://127.0.0.1:\(server.address.port!)"
            let (s1, plain) = try await curlRun(["-i", base + "/plaintext"])
            #expect(s1 == 0)
            #expect(plain.hasPrefix("HTTP/1.1 200 OK"))
            #expect(plain.contains("Content-Length: 13"))
            #expect(plain.hasSuffix("\r\n\r\nHello, World!"))
            let (s2, json) = try await curlRun(["-i", base + "/json"])
            #expect(s2 == 0 && json.contains("application/json") && json.hasSuffix(#"{"message":"Hello, World!"}"#))
            let (_, missing) = try await curlRun(["-o", "/dev/null", "-w", "%{http_code}", base + "/nope"])
            #expect(missing == "404")
            let (_, head) = try await curlRun(["-I", base + "/static/hello.txt"])
            #expect(head.hasPrefix("HTTP/1.1 200"))
            #expect(head.contains("Content-Length: 13"))
            #expect(head.contains("Content-Type: text/plain"))
            // Two URLs on one curl invocation reuse the connection.
            let (_, both) = try await curlRun(["-v", base + "/plaintext", base + "/json"])
            #expect(both.contains("Re-using existing connection") || both.contains("Reusing existing connection"))
        }
    }

    @Test("curl: echo with Content-Length and chunked uploads, byte-exact")
    func curlEcho() async throws {
        try await withServer { server, _, _ in
            let base = "http://127.0.0.1:\(server.address.port!)"
            let dir = NSTemporaryDirectory() + "torus-curl-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let payload = testBytes(2_000_000, seed: 5)
            try Data(payload).write(to: URL(fileURLWithPath: dir + "/in"))
            let (s1, _) = try await curlRun(["--data-binary", "@" + dir + "/in", "-H", "Content-Type: application/x-test",
                                             "-o", dir + "/out1", base + "/echo"])
            #expect(s1 == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out1")) == Data(payload))
            let (s2, _) = try await curlRun(["--data-binary", "@" + dir + "/in", "-H", "Transfer-Encoding: chunked",
                                             "-o", dir + "/out2", base + "/echo"])
            #expect(s2 == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out2")) == Data(payload))
            // curl sends Expect: 100-continue for a large upload when asked.
            let (s3, verbose) = try await curlRun(["-v", "--data-binary", "@" + dir + "/in", "-H", "Expect: 100-continue",
                                                   "-o", dir + "/out3", base + "/echo"])
            #expect(s3 == 0)
            #expect(verbose.contains("HTTP/1.1 100 Continue"))
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out3")) == Data(payload))
        }
    }

    @Test("curl: static files with Range, If-Modified-Since, traversal rejected")
    func curlStatic() async throws {
        try await withServer { server, _, root in
            let base = "http://127.0.0.1:\(server.address.port!)"
            let dir = NSTemporaryDirectory() + "torus-curl-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let data = testBytes(100_000, seed: 11)
            let (s1, _) = try await curlRun(["-o", dir + "/full", base + "/static/data.bin"])
            #expect(s1 == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/full")) == Data(data))
            let (_, ranged) = try await curlRun(["-r", "1000-1999", "-D", dir + "/h", "-o", dir + "/part",
                                                 "-w", "%{http_code}", base + "/static/data.bin"])
            #expect(ranged == "206")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/part")) == Data(data[1000..<2000]))
            let headers = try String(contentsOfFile: dir + "/h", encoding: .utf8)
            #expect(headers.contains("Content-Range: bytes 1000-1999/100000"))
            let (_, suffix) = try await curlRun(["-r", "-10", "-o", dir + "/tail", "-w", "%{http_code}", base + "/static/data.bin"])
            #expect(suffix == "206")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/tail")) == Data(data[99_990...]))
            let (_, unsatisfiable) = try await curlRun(["-r", "200000-", "-o", "/dev/null", "-w", "%{http_code}", base + "/static/data.bin"])
            #expect(unsatisfiable == "416")
            let (_, notModified) = try await curlRun(["-H", "If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT",
                                                      "-o", "/dev/null", "-w", "%{http_code}", base + "/static/hello.txt"])
            #expect(notModified == "304")
            let (_, modified) = try await curlRun(["-H", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT",
                                                   "-o", "/dev/null", "-w", "%{http_code}", base + "/static/hello.txt"])
            #expect(modified == "200")
            let (_, nested) = try await curlRun([base + "/static/sub/x.json"])
            #expect(nested == #"{"a":1}"#)
            // A secret next to the root must stay out of reach.
            try Data("secret".utf8).write(to: URL(fileURLWithPath: root + "/../torus-secret-\(server.address.port!)"))
            defer { try? FileManager.default.removeItem(atPath: root + "/../torus-secret-\(server.address.port!)") }
            for path in ["/static/../torus-secret-\(server.address.port!)", "/static/%2e%2e/torus-secret-\(server.address.port!)",
                         "/static/sub/../../torus-secret-\(server.address.port!)", "/static/sub/%2E%2E/%2e%2e/etc/passwd",
                         "/static//etc/passwd", "/static/..%2fetc%2fpasswd", "/static/nope.txt", "/static/sub"] {
                let (_, code) = try await curlRun(["--path-as-is", "-o", dir + "/x", "-w", "%{http_code}", base + path])
                #expect(code == "404" || code == "400", "\(path) -> \(code)")
                let body = (try? String(contentsOfFile: dir + "/x", encoding: .utf8)) ?? ""
                #expect(!body.contains("secret") && !body.contains("root:"), "\(path)")
            }
        }
    }

    @Test("Python http.client: keep-alive GET, POST echo, HEAD, Range, 304, 404 on one connection")
    func python() async throws {
        try await withServer { server, _, _ in
            let script = """
            import http.client, json, sys
            c = http.client.HTTPConnection('127.0.0.1', \(server.address.port!), timeout=20)
            out = []
            def req(method, path, body=None, headers={}):
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                out.append({'status': r.status, 'len': len(data), 'body': data[:64].decode('latin-1'),
                            'ctype': r.getheader('Content-Type'), 'clen': r.getheader('Content-Length'),
                            'crange': r.getheader('Content-Range'), 'sock': c.sock.fileno() if c.sock else -1})
            req('GET', '/plaintext')
            req('GET', '/json')
            req('POST', '/echo', body=b'x' * 100000, headers={'Content-Type': 'application/x-py'})
            req('POST', '/echo', body=iter([b'abc', b'def']), headers={})  # chunked by http.client
            req('HEAD', '/static/hello.txt')
            req('GET', '/static/data.bin', headers={'Range': 'bytes=0-9'})
            req('GET', '/static/hello.txt', headers={'If-Modified-Since': 'Wed, 15 Nov 2023 00:00:00 GMT'})
            req('GET', '/missing')
            req('GET', '/hello/py')
            print(json.dumps(out))
            """
            let (status, output) = try await run("/usr/bin/env", ["python3", "-c", script])
            #expect(status == 0, "\(output)")
            guard let line = output.split(separator: "\n").last,
                  let results = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[String: Any]] else {
                Issue.record("no JSON from python: \(output)")
                return
            }
            let statuses = results.map { $0["status"] as? Int ?? 0 }
            #expect(statuses == [200, 200, 200, 200, 200, 206, 304, 404, 200])
            #expect(results[0]["body"] as? String == "Hello, World!")
            #expect(results[1]["ctype"] as? String == "application/json")
            #expect(results[2]["len"] as? Int == 100_000)
            #expect(results[2]["ctype"] as? String == "application/x-py")
            #expect(results[3]["body"] as? String == "abcdef")
            #expect(results[4]["len"] as? Int == 0 && results[4]["clen"] as? String == "13")
            #expect(results[5]["len"] as? Int == 10 && results[5]["crange"] as? String == "bytes 0-9/100000")
            #expect(results[6]["len"] as? Int == 0)
            #expect(results[8]["body"] as? String == "hello py")
            // Every request went over the same socket (keep-alive throughout).
            #expect(Set(results.map { $0["sock"] as? Int ?? -2 }).count == 1)
        }
    }

    @Test("the torus-http binary: curl round trip, static file, clean exit with a quiescent ledger")
    func demoBinary() async throws {
        try await withStaticRoot { root in
            let demo = try ChildProcess(BuiltProducts.path("torus-http"),
                                        ["--host", "127.0.0.1", "--port", "0", "--threads", "2", "--root", root])
            guard let port = await demo.listeningPort() else {
                Issue.record("demo did not start: \(demo.text)")
                _ = await demo.stop()
                return
            }
            let base = "http://127.0.0.1:\(port)"
            let (_, plain) = try await curlRun([base + "/plaintext"])
            #expect(plain == "Hello, World!")
            let (_, file) = try await curlRun([base + "/static/hello.txt"])
            #expect(file == "hello static\n")
            let (_, echo) = try await curlRun(["--data-binary", "ping", base + "/echo"])
            #expect(echo == "ping")
            let (_, ledger) = try await curlRun([base + "/debug/ledger"])
            #expect(!ledger.isEmpty)
            #expect(await demo.stop() == 0, "\(demo.text)")
        }
    }
}
