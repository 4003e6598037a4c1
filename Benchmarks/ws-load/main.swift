// ws-load: WebSocket echo load over ws:// or wss://, for scripts/wss-bench.sh (the TLS
// tax of a WebSocket server: the same load with and without TLS, per server
// CPU-second). `../shared/bench`'s load generator speaks no TLS; this one drives the
// same profiles (CONNECTIONS:INFLIGHT:SIZE): every connection keeps INFLIGHT messages
// of SIZE bytes in flight, sending one more for each echo, for `--seconds` after a
// one-second warm-up. One Torus loop; messages leave and arrive without an allocation
// (`onMessageBytes`, `send(_:as:)` from a fixed payload). Prints one line:
// `messages N seconds S rate R server-cpu C closed K` (echoes counted in the measured
// window; with `--server-pid`, that process's user + system CPU seconds over the same
// window, read from /proc).
//
//   ws-load --url ws://127.0.0.1:9001/ [--ca FILE] [--connections 64] [--inflight 16]
//           [--size 16] [--text] [--seconds 5] [--server-pid PID]

import Foundation
import Torus
import TorusTLS
import TorusWebSocket

struct Options {
    var url = "ws://127.0.0.1:9001/"
    var caFile: String?
    var connections = 64
    var inflight = 16
    var size = 16
    var text = false
    var seconds = 5.0
    var serverPID: Int?
}

func parse() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        if a == "--text" {
            o.text = true
            continue
        }
        guard let v = args.next() else { break }
        switch a {
        case "--url": o.url = v
        case "--ca": o.caFile = v
        case "--connections": o.connections = Int(v) ?? o.connections
        case "--inflight": o.inflight = Int(v) ?? o.inflight
        case "--size": o.size = Int(v) ?? o.size
        case "--seconds": o.seconds = Double(v) ?? o.seconds
        case "--server-pid": o.serverPID = Int(v)
        default:
            FileHandle.standardError.write(Data("ws-load: unknown option \(a)\n".utf8))
            exit(2)
        }
    }
    return o
}

/// Echoes received and connections closed under the load (loop thread only).
final class Tally: @unchecked Sendable {
    var echoes = 0
    var failures = 0
}

let options = parse()
let loop = try EventLoop()
var configuration = WebSocketClientConfiguration()
configuration.deflate = nil
configuration.connection.maxMessageSize = max(options.size, 125)
configuration.connection.maxFrameSize = max(options.size, 125)
configuration.connection.pingInterval = nil
if let ca = options.caFile {
    configuration.tls = try TLSContext(.client(trustRoots: .caFile(ca), serverName: "localhost"))
}
let payload = [UInt8](repeating: UInt8(ascii: "x"), count: options.size)
let kind: WebSocketMessageKind = options.text ? .text : .binary
let tally = Tally()
let clientConfiguration = configuration

var sockets: [WebSocketConnection] = []
for _ in 0..<options.connections {
    sockets.append(try await WebSocketClient.connect(to: options.url, on: loop, configuration: clientConfiguration))
}
let connected = sockets
await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
    loop.execute {
        for ws in connected {
            ws.onMessageBytes = { ws, _, _ in
                tally.echoes += 1
                payload.withUnsafeBytes { _ = ws.send($0, as: kind) }
            }
            ws.onClose = { _, _ in tally.failures += 1 }
            for _ in 0..<options.inflight {
                payload.withUnsafeBytes { _ = ws.send($0, as: kind) }
            }
        }
        c.resume()
    }
}

func echoes() async -> (Int, Int) {
    await withCheckedContinuation { c in loop.execute { c.resume(returning: (tally.echoes, tally.failures)) } }
}

/// User + system CPU seconds of process `pid` (fields 14 and 15 of /proc/PID/stat).
func cpuSeconds(of pid: Int?) -> Double {
    guard let pid, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let end = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

try await Task.sleep(for: .seconds(1))  // warm-up
let (before, _) = await echoes()
let cpuBefore = cpuSeconds(of: options.serverPID)
let started = ContinuousClock.now
try await Task.sleep(for: .seconds(options.seconds))
let (after, failures) = await echoes()
let cpu = cpuSeconds(of: options.serverPID) - cpuBefore
let elapsed = (ContinuousClock.now - started) / .seconds(1)
let messages = after - before
print("messages \(messages) seconds \(String(format: "%.2f", elapsed)) rate \(Int(Double(messages) / elapsed)) "
      + "server-cpu \(String(format: "%.2f", cpu)) closed \(failures)")
for ws in connected {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        loop.execute {
            ws.onMessageBytes = nil
            ws.onClose = nil
            ws.close()
            c.resume()
        }
    }
}
try await Task.sleep(for: .milliseconds(300))
_ = loop.shutdown()
exit(failures == 0 ? 0 : 1)
