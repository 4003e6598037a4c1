import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// A temporary tree for confinement tests:
///
///     base/outside/secret.txt          the content that must never be served
///     base/root/hello.txt, data.bin, sub/inner.txt
///     base/root/escape.txt      -> ../outside/secret.txt   (relative, leaves the root)
///     base/root/abs-escape.txt  -> base/outside/secret.txt (absolute)
///     base/root/linkdir         -> ../outside              (a directory leaving the root)
///     base/root/inside.txt      -> hello.txt               (stays inside)
///     base/root/sub/up.txt      -> ../hello.txt            (stays inside, through "..")
///     base/root/subdir          -> sub                     (a directory inside)
///     base/root/data-link.bin   -> data.bin
struct ConfinementTree {
    let base: String
    var root: String { base + "/root" }
    var outside: String { base + "/outside" }
    /// What base/outside/secret.txt holds (unique per tree).
    let secret: String
    static let hello = "hello inside\n"
    static let data = testBytes(100_000, seed: 21)

    init() throws {
        base = NSTemporaryDirectory() + "torus-confine-\(UUID().uuidString)"
        secret = "OUTSIDE-SECRET-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: base + "/root/sub", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: base + "/outside", withIntermediateDirectories: true)
        try Data(secret.utf8).write(to: URL(fileURLWithPath: outside + "/secret.txt"))
        try Data(Self.hello.utf8).write(to: URL(fileURLWithPath: root + "/hello.txt"))
        try Data(Self.data).write(to: URL(fileURLWithPath: root + "/data.bin"))
        try Data("inner\n".utf8).write(to: URL(fileURLWithPath: root + "/sub/inner.txt"))
        for (link, target) in [("escape.txt", "../outside/secret.txt"), ("abs-escape.txt", outside + "/secret.txt"),
                               ("linkdir", "../outside"), ("inside.txt", "hello.txt"), ("sub/up.txt", "../hello.txt"),
                               ("subdir", "sub"), ("data-link.bin", "data.bin")] {
            try fm.createSymbolicLink(atPath: root + "/" + link, withDestinationPath: target)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: base) }
}

/// Runs an in-process server with `/static` on a fresh tree (loop 0 serves, loop 1 is
/// the test's), shuts it down and asserts the ledger quiescent (`withGroup`).
private func withConfinedServer(followSymlinks: Bool, sourceLocation: SourceLocation = #_sourceLocation,
                                _ body: (String, ConfinementTree, EventLoop) async throws -> Void) async throws {
    let tree = try ConfinementTree()
    defer { tree.remove() }
    try await withGroup(loops: 2, sourceLocation: sourceLocation) { group in
        var router = HTTPRouter()
        try router.files("/static", root: tree.root, followSymlinks: followSymlinks)
        let server = try HTTPServer.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0), router: router)
        do {
            try await body("http://127.0.0.1:\(server.address.port!)", tree, group.loops[1])
        } catch {
            await server.shutdown(grace: .milliseconds(200))
            throw error
        }
        await server.shutdown(grace: .seconds(5))
        #expect(await server.connectionCount() == 0, sourceLocation: sourceLocation)
    }
}

/// What curl got: the status code and the body's bytes.
private struct CurlReply {
    var code: String
    var bytes: [UInt8]
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// curl with `-s -S --path-as-is` and a bounded time.
private func curlGet(_ url: String, _ extra: [String] = []) async throws -> CurlReply {
    let out = NSTemporaryDirectory() + "torus-confine-out-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: out) }
    let (_, code) = try await run("/usr/bin/curl", ["-s", "-S", "--max-time", "20", "--path-as-is", "-o", out,
                                                    "-w", "%{http_code}"] + extra + [url])
    let bytes = (try? Data(contentsOf: URL(fileURLWithPath: out))).map { Array($0) } ?? []
    return CurlReply(code: code, bytes: bytes)
}

/// Runs a Python script (bounded) and returns its standard output's last line.
private func python(_ script: String) async throws -> String {
    let (status, text) = try await run("/usr/bin/env", ["python3", "-c", script], timeout: .seconds(60))
    #expect(status == 0, "python failed: \(text)")
    return text.split(separator: "\n").last.map(String.init) ?? ""
}

@Suite("Static files stay inside their root")
struct StaticFilesConfinementTests {
    @Test("a symlink leaving the root is 404 whether links are followed or not (curl and Python)",
          arguments: [false, true])
    func escapingLinks(followSymlinks: Bool) async throws {
        try await withConfinedServer(followSymlinks: followSymlinks) { base, tree, _ in
            let escapes = ["/static/escape.txt", "/static/abs-escape.txt", "/static/linkdir/secret.txt", "/static/linkdir"]
            for path in escapes {
                let reply = try await curlGet(base + path)
                #expect(reply.code == "404", "\(path) -> \(reply.code)")
                #expect(!reply.text.contains(tree.secret), "\(path) served the outside file")
            }
            let port = base.split(separator: ":").last!
            let answer = try await python("""
            import http.client
            c = http.client.HTTPConnection('127.0.0.1', \(port), timeout=20)
            out = []
            for p in [\(escapes.map { "'\($0)'" }.joined(separator: ", "))]:
                c.request('GET', p)
                r = c.getresponse()
                body = r.read().decode('latin-1')
                out.append('%d:%s' % (r.status, 'LEAK' if '\(tree.secret)' in body else 'ok'))
            print(' '.join(out))
            """)
            #expect(answer == Array(repeating: "404:ok", count: escapes.count).joined(separator: " "), "\(answer)")
        }
    }

    @Test("a symlink staying inside the root: 404 by default, 200 with followSymlinks", arguments: [false, true])
    func insideLinks(followSymlinks: Bool) async throws {
        try await withConfinedServer(followSymlinks: followSymlinks) { base, tree, _ in
            for (path, content) in [("/static/inside.txt", ConfinementTree.hello), ("/static/sub/up.txt", ConfinementTree.hello),
                                    ("/static/subdir/inner.txt", "inner\n")] {
                let reply = try await curlGet(base + path)
                if followSymlinks {
                    #expect(reply.code == "200" && reply.text == content, "\(path) -> \(reply.code)")
                } else {
                    #expect(reply.code == "404", "\(path) -> \(reply.code)")
                }
            }
            // Plain files and directories are unaffected by the option.
            let plain = try await curlGet(base + "/static/hello.txt")
            #expect(plain.code == "200" && plain.text == ConfinementTree.hello)
            let nested = try await curlGet(base + "/static/sub/inner.txt")
            #expect(nested.code == "200" && nested.text == "inner\n")
            #expect(try await curlGet(base + "/static/sub").code == "404")
            #expect(try await curlGet(base + "/static/subdir").code == "404")
            #expect(FileManager.default.fileExists(atPath: tree.root + "/subdir/inner.txt"))
        }
    }

    @Test("'..' in every encoding, backslash, NUL: 400 or 404, never the outside file", arguments: [false, true])
    func traversalEncodings(followSymlinks: Bool) async throws {
        try await withConfinedServer(followSymlinks: followSymlinks) { base, tree, loop in
            let targets = [
                "/static/../outside/secret.txt", "/static/%2e%2e/outside/secret.txt", "/static/%2E%2E/outside/secret.txt",
                "/static/.%2e/outside/secret.txt", "/static/%2e./outside/secret.txt",
                "/static/..%2foutside%2fsecret.txt", "/static/..%2Foutside%2Fsecret.txt",
                "/static/sub/..%2f..%2foutside/secret.txt", "/static/%2f..%2foutside/secret.txt",
                "/static/%252e%252e/outside/secret.txt", "/static/%252e%252e%252foutside%252fsecret.txt",
                "/static/..\\outside\\secret.txt", "/static/..%5coutside%5csecret.txt", "/static/sub\\..\\..\\outside/secret.txt",
                "/static/hello.txt%00", "/static/%00../outside/secret.txt", "/static/sub/%2e%2e/%2e%2e/outside/secret.txt",
                "/static//\(tree.outside.dropFirst())/secret.txt", "/static/%2f\(tree.outside.dropFirst())/secret.txt",
                "/static/linkdir/../outside/secret.txt",
            ]
            let address = try SocketAddress.tcp("127.0.0.1", UInt16(base.split(separator: ":").last!)!)
            for target in targets {
                // Raw bytes on a real socket: no client normalizes the path.
                let reply = try await rawExchange(address, on: loop,
                                                  Array("GET \(target) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
                #expect(reply.status == 404 || reply.status == 400, "\(target) -> \(reply.status.map(String.init) ?? "none")")
                #expect(!reply.text.contains(tree.secret), "\(target) served the outside file")
            }
            // A raw NUL byte in the target.
            let nul = try await rawExchange(address, on: loop,
                                            Array("GET /static/hello.txt".utf8) + [0] + Array("/../../outside/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            #expect(nul.status == 400 || nul.status == 404)
            #expect(!nul.text.contains(tree.secret))
            // curl with --path-as-is for a few (a second real client).
            for target in targets.prefix(6) {
                let reply = try await curlGet(base + target)
                #expect(reply.code == "404" || reply.code == "400", "\(target) -> \(reply.code)")
                #expect(!reply.text.contains(tree.secret))
            }
        }
    }

    @Test("a file replaced by a symlink to the outside between and during requests is never served from outside",
          arguments: [false, true])
    func replacedByLink(followSymlinks: Bool) async throws {
        try await withConfinedServer(followSymlinks: followSymlinks) { base, tree, _ in
            let race = tree.root + "/race.txt"
            // Between requests: file, link, file, link...
            for round in 0..<5 {
                try Data("round \(round)\n".utf8).write(to: URL(fileURLWithPath: race))
                let file = try await curlGet(base + "/static/race.txt")
                #expect(file.code == "200" && file.text == "round \(round)\n")
                try FileManager.default.removeItem(atPath: race)
                try FileManager.default.createSymbolicLink(atPath: race, withDestinationPath: "../outside/secret.txt")
                let linked = try await curlGet(base + "/static/race.txt")
                #expect(linked.code == "404", "round \(round): \(linked.code)")
                #expect(!linked.text.contains(tree.secret))
                try FileManager.default.removeItem(atPath: race)
            }
            // During requests: a Python thread swaps a file and an escaping link in place
            // (rename over), while the main thread asks 400 times on one connection.
            let port = base.split(separator: ":").last!
            let answer = try await python("""
            import http.client, os, threading, time
            root = '\(tree.root)'
            stop = False
            def flip():
                i = 0
                while not stop:
                    tmp = os.path.join(root, '.race-tmp')
                    if i % 2 == 0:
                        with open(tmp, 'w') as f: f.write('inside file\\n')
                    else:
                        os.symlink('../outside/secret.txt', tmp)
                    os.replace(tmp, os.path.join(root, 'race.txt'))
                    i += 1
            t = threading.Thread(target=flip); t.start()
            c = http.client.HTTPConnection('127.0.0.1', \(port), timeout=20)
            counts = {'200': 0, '404': 0, 'other': 0, 'leak': 0}
            deadline = time.time() + 30
            try:
                for n in range(400):
                    if time.time() > deadline: break
                    c.request('GET', '/static/race.txt')
                    r = c.getresponse()
                    body = r.read().decode('latin-1')
                    if '\(tree.secret)' in body: counts['leak'] += 1
                    elif r.status == 200 and body == 'inside file\\n': counts['200'] += 1
                    elif r.status == 404: counts['404'] += 1
                    else: counts['other'] += 1
            finally:
                stop = True; t.join()
            print('leak=%d other=%d ok=%d notfound=%d' % (counts['leak'], counts['other'], counts['200'], counts['404']))
            """)
            #expect(answer.hasPrefix("leak=0 other=0 "), "\(answer)")
        }
    }

    @Test("Range, HEAD and 304 still work (through a followed link too)", arguments: [false, true])
    func rangesStillWork(followSymlinks: Bool) async throws {
        try await withConfinedServer(followSymlinks: followSymlinks) { base, _, _ in
            let data = ConfinementTree.data
            let part = try await curlGet(base + "/static/data.bin", ["-r", "1000-1999"])
            #expect(part.code == "206" && part.bytes == Array(data[1000..<2000]))
            let tail = try await curlGet(base + "/static/data.bin", ["-r", "-10"])
            #expect(tail.code == "206" && tail.bytes == Array(data[99_990...]))
            let whole = try await curlGet(base + "/static/data.bin")
            #expect(whole.code == "200" && whole.bytes == data)
            #expect(try await curlGet(base + "/static/data.bin", ["-r", "200000-"]).code == "416")
            let head = try await curlGet(base + "/static/data.bin", ["-I"])
            #expect(head.code == "200" && head.text.contains("Content-Length: 100000"))
            let notModified = try await curlGet(base + "/static/hello.txt",
                                                ["-H", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"])
            #expect(notModified.code == "304")
            let linked = try await curlGet(base + "/static/data-link.bin", ["-r", "0-99"])
            if followSymlinks {
                #expect(linked.code == "206" && linked.bytes == Array(data[0..<100]))
            } else {
                #expect(linked.code == "404")
            }
        }
    }

    @Test("a FIFO in the root is 404 at once (the open does not wait for a writer)")
    func fifoIsNotServed() async throws {
        try await withConfinedServer(followSymlinks: false) { base, tree, _ in
            #expect(mkfifo(tree.root + "/pipe", 0o644) == 0)
            let reply = try await curlGet(base + "/static/pipe")
            #expect(reply.code == "404")
        }
    }

    @Test("a root that is missing or not a directory fails route creation with a clear error")
    func rootErrors() throws {
        let tree = try ConfinementTree()
        defer { tree.remove() }
        var router = HTTPRouter()
        #expect(throws: StaticFilesError.rootUnavailable(path: tree.base + "/nope", errno: ENOENT)) {
            try router.files("/static", root: tree.base + "/nope")
        }
        #expect(throws: StaticFilesError.rootUnavailable(path: tree.root + "/hello.txt", errno: ENOTDIR)) {
            try router.files("/static", root: tree.root + "/hello.txt")
        }
        #expect(File.ringOpensBeneath, "this kernel's io_uring has openat2; the route is created")
        try router.files("/static", root: tree.root)
        #expect("\(StaticFilesError.openat2Unsupported)".contains("openat2"))
    }

    @Test("an unreadable file is 403 (the demo run as an unprivileged user, since root bypasses modes)")
    func unreadableIs403() async throws {
        let tree = try ConfinementTree()
        defer { tree.remove() }
        try Data("locked\n".utf8).write(to: URL(fileURLWithPath: tree.root + "/locked.txt"))
        #expect(chmod(tree.root + "/locked.txt", 0o000) == 0)
        // The tree must be reachable by the unprivileged user (the temp folder may not be).
        for path in [tree.base, tree.root, tree.root + "/sub", tree.outside] { _ = chmod(path, 0o755) }
        for path in [tree.root + "/hello.txt", tree.outside + "/secret.txt"] { _ = chmod(path, 0o644) }
        var arguments = ["--host", "127.0.0.1", "--port", "0", "--threads", "1", "--root", tree.root, "--follow-symlinks"]
        let executable: String
        if geteuid() == 0 {
            // root has CAP_DAC_OVERRIDE: drop to nobody so a mode of 000 really refuses.
            executable = "/usr/bin/setpriv"
            arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", BuiltProducts.path("torus-http")] + arguments
        } else {
            executable = BuiltProducts.path("torus-http")
        }
        let demo = try ChildProcess(executable, arguments)
        guard let port = await demo.listeningPort() else {
            Issue.record("demo did not start: \(demo.text)")
            _ = await demo.stop()
            return
        }
        let base = "http://127.0.0.1:\(port)"
        let locked = try await curlGet(base + "/static/locked.txt")
        #expect(locked.code == "403", "\(locked.code) \(locked.text)")
        #expect(!locked.text.contains("locked"))
        let plain = try await curlGet(base + "/static/hello.txt")
        #expect(plain.code == "200" && plain.text == ConfinementTree.hello)
        #expect(try await curlGet(base + "/static/inside.txt").code == "200", "--follow-symlinks follows a link inside")
        let escape = try await curlGet(base + "/static/escape.txt")
        #expect(escape.code == "404" && !escape.text.contains(tree.secret))
        // Every way a request ends gives its descriptor back: GET, HEAD, 304, 416, a
        // range, 403, 404, a directory, in 10 rounds on one Python connection.
        let descriptors = "/proc/\(demo.pid)/fd"
        let before = try FileManager.default.contentsOfDirectory(atPath: descriptors).count
        let answer = try await python("""
        import http.client
        c = http.client.HTTPConnection('127.0.0.1', \(port), timeout=20)
        codes = []
        for n in range(10):
            for method, path, headers in [('GET', '/static/data.bin', {}), ('HEAD', '/static/data.bin', {}),
                                          ('GET', '/static/hello.txt', {'If-Modified-Since': 'Fri, 01 Jan 2100 00:00:00 GMT'}),
                                          ('GET', '/static/data.bin', {'Range': 'bytes=200000-'}),
                                          ('GET', '/static/data.bin', {'Range': 'bytes=5-9'}),
                                          ('GET', '/static/locked.txt', {}), ('GET', '/static/escape.txt', {}),
                                          ('GET', '/static/sub', {})]:
                c.request(method, path, headers=headers)
                r = c.getresponse(); r.read()
                codes.append(r.status)
        print(sorted(set(codes)), len(codes))
        """)
        #expect(answer == "[200, 206, 304, 403, 404, 416] 80", "\(answer)")
        let settled = await eventually {
            // At most as many as before (a curl connection's socket may have still been closing then).
            ((try? FileManager.default.contentsOfDirectory(atPath: descriptors).count) ?? .max) <= before
        }
        #expect(settled, "descriptors before: \(before), after: \((try? FileManager.default.contentsOfDirectory(atPath: descriptors).count) ?? -1)")
        #expect(await demo.stop() == 0)
    }
}
