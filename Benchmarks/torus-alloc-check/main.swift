import CAllocCounter
import Glibc
import Torus
import TorusHTTP
import TorusWebSocket

// Measures heap allocations on an event loop's thread per echoed message, once warm.
//
// A Torus echo server runs on one loop: raw TCP (`Connection.send(ReceivedBytes)`),
// or with --websocket a WebSocket echo behind the HTTP upgrade (`onMessageBytes` →
// `send(_:as:)`). Plain blocking sockets on other threads (no Torus, no Swift
// allocations on their side that could be miscounted) keep CONNS connections busy
// with 64-byte round trips (WebSocket: a masked 64-byte binary frame each way). The
// loop thread's own malloc count (see CAllocCounter) is read before and after the
// measured phase. Prints `allocations per message: X` and exits 1 when X exceeds --max.

final class Echo: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
    }
}

var messages = 50_000
var warmup = 10_000
var conns = 8
var maxPerMessage = 0.01
var webSocket = false
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--messages": messages = Int(args.next() ?? "") ?? messages
    case "--warmup": warmup = Int(args.next() ?? "") ?? warmup
    case "--conns": conns = Int(args.next() ?? "") ?? conns
    case "--max": maxPerMessage = Double(args.next() ?? "") ?? maxPerMessage
    case "--websocket": webSocket = true
    case "--help":
        print("torus-alloc-check [--websocket] [--messages N] [--warmup N] [--conns N] [--max X]")
        exit(0)
    default:
        print("unknown argument \(a)")
        exit(2)
    }
}

func loopAllocations(_ loop: EventLoop) -> UInt {
    loop.runAndWait { torus_thread_allocations() }
}

/// One client thread's job.
struct ClientJob {
    var port: UInt16
    var count: Int
    var webSocket: Bool
}

/// Reads exactly `count` bytes into `buffer` (blocking); false at EOF or error.
func readExactly(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Bool {
    var got = 0
    while got < count {
        let n = recv(fd, buffer + got, count - got, 0)
        guard n > 0 else { return false }
        got += n
    }
    return true
}

/// Sends all of `bytes` (blocking).
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, 0) }
        guard n > 0 else { fatalError("send failed") }
        sent += n
    }
}

/// Upgrades `fd` to a WebSocket: a fixed handshake, then the 101 response head.
func handshake(_ fd: Int32) {
    writeAll(fd, Array(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
    var head: [UInt8] = []
    var byte: UInt8 = 0
    while !(head.count >= 4 && head[head.count - 4 ..< head.count] == [13, 10, 13, 10]) {
        guard recv(fd, &byte, 1, 0) == 1 else { fatalError("handshake: connection closed") }
        head.append(byte)
    }
    guard head.starts(with: Array("HTTP/1.1 101".utf8)) else {
        fatalError("handshake refused: \(String(decoding: head, as: UTF8.self))")
    }
}

/// The message a client sends: 64 raw bytes, or a masked 64-byte binary frame.
/// Returns it and the bytes the echo must be.
func clientMessage(webSocket: Bool) -> (out: [UInt8], back: [UInt8]) {
    let payload = [UInt8](repeating: 0x61, count: 64)
    guard webSocket else { return (payload, payload) }
    let key: [UInt8] = [0x12, 0x34, 0x56, 0x78]
    var masked = payload
    for i in 0..<masked.count { masked[i] ^= key[i & 3] }
    return ([0x82, 0x80 | 64] + key + masked, [0x82, 64] + payload)
}

/// Runs `count` round trips on each of `conns` blocking client sockets.
func drive(port: UInt16, conns: Int, perConnection count: Int, webSocket: Bool) {
    var threads: [pthread_t] = []
    for _ in 0..<conns {
        let ctx = UnsafeMutablePointer<ClientJob>.allocate(capacity: 1)
        ctx.initialize(to: ClientJob(port: port, count: count, webSocket: webSocket))
        var t = pthread_t()
        pthread_create(&t, nil, { raw in
            guard let raw else { return nil }
            let ctx = raw.assumingMemoryBound(to: ClientJob.self)
            let job = ctx.pointee
            ctx.deallocate()
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = job.port.bigEndian
            addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard rc == 0 else { fatalError("connect failed") }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
            if job.webSocket { handshake(fd) }
            let (out, expected) = clientMessage(webSocket: job.webSocket)
            var back = [UInt8](repeating: 0, count: expected.count)
            for i in 0..<job.count {
                writeAll(fd, out)
                guard back.withUnsafeMutableBytes({ readExactly(fd, $0.baseAddress!, expected.count) }) else {
                    fatalError("connection closed mid-echo")
                }
                if i == 0 || i == job.count - 1, back != expected { fatalError("echo mismatch") }
            }
            close(fd)
            return nil
        }, ctx)
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
}

let loop = try EventLoop()
let port: UInt16
let stopServer: () async -> Void
if webSocket {
    var router = HTTPRouter()
    router.webSocket("/") { ws in
        ws.onMessageBytes = { ws, kind, bytes in ws.send(bytes, as: kind) }
    }
    let server = try HTTPServer.start(on: [loop], address: try .tcp("127.0.0.1", 0), router: router)
    port = server.address.port ?? 0
    stopServer = { await server.shutdown(grace: .seconds(1)) }
} else {
    let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
    port = server.address.port ?? 0
    stopServer = { server.close() }
}
guard port != 0 else { fatalError("no port") }

drive(port: port, conns: conns, perConnection: warmup / conns, webSocket: webSocket)
let before = loopAllocations(loop)
if getenv("TORUS_TRACE_ALLOCS") != nil { loop.execute { torus_trace_allocations(12) } }
drive(port: port, conns: conns, perConnection: messages / conns, webSocket: webSocket)
let after = loopAllocations(loop)
await stopServer()
let ledger = loop.shutdown()

// The two runAndWait jobs themselves allocate a little on the loop; count them in.
let total = Int(after) - Int(before)
let perMessage = Double(total) / Double(messages)
print("\(webSocket ? "WebSocket" : "TCP") messages: \(messages) over \(conns) connections "
    + "(each also a connect, accept\(webSocket ? ", upgrade" : "") and close)")
print("loop-thread allocations: \(total)")
print("allocations per message: \(perMessage)")
print(ledger.description)
exit(perMessage <= maxPerMessage && ledger.isQuiescent ? 0 : 1)
