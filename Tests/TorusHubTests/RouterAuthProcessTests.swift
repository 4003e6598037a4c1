import Foundation
import Testing
import TorusHub
import TorusTestSupport

/// A Python router (hmac, hashlib: no Torus code): authenticates as ID with the
/// secret from the credential file, first tries a wrong secret and a replayed
/// proof, then waits for the hub's next frame.
private let pythonRouter = #"""
import base64, hashlib, hmac, json, socket, struct, sys
port, path, rid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
secret = base64.b64decode(json.load(open(path))["routers"][rid])
def frame(kind, payload=b""): return struct.pack(">IB", len(payload) + 1, kind) + payload
def read(s):
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk: return None, b""
        head += chunk
    n, kind = struct.unpack(">IB", head)
    body = b""
    while len(body) < n - 1: body += s.recv(n - 1 - len(body))
    return kind, body
def attempt(key, proof=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(frame(1, bytes([2]) + rid.encode()))
    kind, body = read(s)
    assert kind == 2 and len(body) == 36, (kind, body)
    mac = proof or hmac.new(key, body[4:] + rid.encode(), hashlib.sha256).digest()
    s.sendall(frame(8, mac))
    return s, mac, read(s)
s, _, answer = attempt(b"not the secret" * 3)
print("wrong secret:", "refused" if answer[0] == 10 else answer, flush=True)
s.close()
good, recorded, answer = attempt(secret)
print("right secret:", "authok" if answer == (9, b"") else answer, flush=True)
s, _, answer = attempt(secret, recorded)
print("replayed proof:", "refused" if answer[0] == 10 else answer, flush=True)
s.close()
kind, body = read(good)
print("next frame:", kind, body.decode(), flush=True)
"""#

/// An event-stream reader in Python's http.client: opens `/events` with the token in
/// `?access_token=` (as a browser's EventSource would), prints the status, then
/// "stream ended" once the hub ends the stream.
private let pythonStream = #"""
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
c.request("GET", "/events?access_token=" + sys.argv[2])
r = c.getresponse()
print("status", r.status, flush=True)
while r.readline():
    pass
print("stream ended", flush=True)
"""#

@Suite("torus-hub credentials", .timeLimit(.minutes(2)))
struct RouterAuthProcessTests {
    /// First start without a credential file writes one (0600) with an admin token
    /// and router r1; a Python router authenticates with r1's secret (and its wrong
    /// and replayed attempts are refused); SIGHUP after r1 is removed from the file
    /// closes its link. A token added with `--add-token` opens an event stream (Python
    /// http.client), curl reads `/devices` with the admin token, and the same SIGHUP,
    /// the token gone from the file, ends the stream.
    @Test func firstStartPythonRouterAndReload() async throws {
        let folder = NSTemporaryDirectory() + "torus-hub-first-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/credentials.json"
        let hub = try ChildProcess(BuiltProducts.path("torus-hub"),
                                   ["--router-port", "0", "--http-port", "0", "--threads", "2", "--credentials", path])
        guard await hub.listeningPort() != nil else {
            Issue.record("no listening line: \(hub.text)")
            return
        }
        _ = await hub.waitForLine(containing: "listening on", timeout: .seconds(5))
        let lines = hub.text.split(separator: "\n")
        let routerPort = try #require(UInt16(lines.filter { $0.hasPrefix("listening on") }.last?.split(separator: ":").last ?? ""))
        #expect(hub.text.contains("created credential file \(path)"))
        let tokenLine = try #require(lines.first { $0.hasPrefix("admin token: ") })
        let token = String(tokenLine.dropFirst("admin token: ".count))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let store = try HubCredentials.load(path: path)
        #expect(store.grant(forToken: token)?.rights == ["admin"])
        #expect(store.routers["r1"]?.count == HubCredentials.secretSize)

        let python = try ChildProcess("/usr/bin/env", ["python3", "-c", pythonRouter, "\(routerPort)", path, "r1"])
        #expect(await python.waitForLine(containing: "replayed proof:", timeout: .seconds(20)) == "replayed proof: refused",
                "\(python.text)")
        #expect(python.text.contains("wrong secret: refused") && python.text.contains("right secret: authok"), "\(python.text)")

        // API tokens: the admin token through curl, an added reader through Python.
        let httpPort = try #require(await hub.listeningPort())
        let curl = try ChildProcess("/usr/bin/env", ["curl", "-sS", "--max-time", "10", "-H", "Authorization: Bearer \(token)",
                                                     "http://127.0.0.1:\(httpPort)/devices"])
        #expect(await curl.wait(timeout: .seconds(15)) == 0)
        #expect(curl.text.contains(#""id":"r1""#), "\(curl.text)")
        let add = try ChildProcess(BuiltProducts.path("torus-hub"), ["--credentials", path, "--add-token", "r1:read"])
        #expect(await add.wait(timeout: .seconds(15)) == 0, "\(add.text)")
        let addedLine = try #require(add.text.split(separator: "\n").first { $0.hasPrefix("token (r1:read): ") }, "\(add.text)")
        let reader = String(addedLine.dropFirst("token (r1:read): ".count).prefix { $0 != " " })
        kill(hub.pid, SIGHUP)  // the hub learns the new token
        #expect(await hub.waitForLine(containing: "credentials reloaded", timeout: .seconds(10)) != nil, "\(hub.text)")
        let stream = try ChildProcess("/usr/bin/env", ["python3", "-u", "-c", pythonStream, "\(httpPort)", reader])
        #expect(await stream.waitForLine(containing: "status", timeout: .seconds(20)) == "status 200", "\(stream.text)")

        var revoked = try HubCredentials.load(path: path)
        #expect(revoked.grant(forToken: reader)?.routers == ["r1"])
        revoked.routers["r1"] = nil
        revoked.tokens[HubCredentials.tokenHash(reader)] = nil
        try revoked.write(path: path)
        kill(hub.pid, SIGHUP)
        #expect(await python.wait(timeout: .seconds(10)) == 0, "\(python.text)")
        #expect(python.text.contains("next frame: 7 credentials revoked"), "\(python.text)")
        #expect(await stream.wait(timeout: .seconds(10)) == 0, "\(stream.text)")
        #expect(stream.text.contains("stream ended"), "\(stream.text)")
        #expect(await hub.stop() == 0)
        #expect(hub.text.contains("ledger: quiescent"), "\(hub.text)")
    }
}
