import CAllocCounter
import Glibc
import Torus

// Measures heap allocations on an event loop's thread per echoed message, once warm.
//
// A Torus echo server runs on one loop; plain blocking sockets on other threads
// (no Torus, no Swift allocations on their side that could be miscounted) keep
// CONNS connections busy with 64-byte round trips. The loop thread's own malloc
// count (see CAllocCounter) is read before and after the measured phase.
// Prints `allocations per message: X` and exits 1 when X exceeds --max.

final class Echo: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
    }
}

var messages = 50_000
var warmup = 10_000
var conns = 8
var maxPerMessage = 0.01
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--messages": messages = Int(args.next() ?? "") ?? messages
    case "--warmup": warmup = Int(args.next() ?? "") ?? warmup
    case "--conns": conns = Int(args.next() ?? "") ?? conns
    case "--max": maxPerMessage = Double(args.next() ?? "") ?? maxPerMessage
    case "--help":
        print("torus-alloc-check [--messages N] [--warmup N] [--conns N] [--max X]")
        exit(0)
    default:
        print("unknown argument \(a)")
        exit(2)
    }
}

func loopAllocations(_ loop: EventLoop) -> UInt {
    loop.runAndWait { torus_thread_allocations() }
}

/// Runs `count` 64-byte round trips on each of `conns` blocking client sockets.
func drive(port: UInt16, conns: Int, perConnection count: Int) {
    var threads: [pthread_t] = []
    for _ in 0..<conns {
        let ctx = UnsafeMutablePointer<(UInt16, Int)>.allocate(capacity: 1)
        ctx.initialize(to: (port, count))
        var t = pthread_t()
        pthread_create(&t, nil, { raw in
            guard let raw else { return nil }
            let ctx = raw.assumingMemoryBound(to: (UInt16, Int).self)
            let (port, count) = ctx.pointee
            ctx.deallocate()
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard rc == 0 else { fatalError("connect failed") }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
            var out = [UInt8](repeating: 0x61, count: 64)
            var back = [UInt8](repeating: 0, count: 64)
            for _ in 0..<count {
                _ = send(fd, &out, 64, 0)
                var got = 0
                while got < 64 {
                    let n = back.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 64 - got, 0) }
                    guard n > 0 else { fatalError("recv failed") }
                    got += n
                }
            }
            close(fd)
            return nil
        }, ctx)
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
}

let loop = try EventLoop()
let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
guard let port = server.address.port else { fatalError("no port") }

drive(port: port, conns: conns, perConnection: warmup / conns)
let before = loopAllocations(loop)
if getenv("TORUS_TRACE_ALLOCS") != nil { loop.execute { torus_trace_allocations(12) } }
drive(port: port, conns: conns, perConnection: messages / conns)
let after = loopAllocations(loop)
server.close()
let ledger = loop.shutdown()

// The two runAndWait jobs themselves allocate a little on the loop; count them in.
let total = Int(after) - Int(before)
let perMessage = Double(total) / Double(messages)
print("messages: \(messages) over \(conns) connections (each also a connect, accept and close)")
print("loop-thread allocations: \(total)")
print("allocations per message: \(perMessage)")
print(ledger.description)
exit(perMessage <= maxPerMessage && ledger.isQuiescent ? 0 : 1)
