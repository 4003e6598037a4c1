// handshake-bench: router handshakes against a torus-hub from many routers at once
// (a reconnect storm), for Demos/torus-hub/handshake_cost.py --generator. Task k of
// `--concurrency` is router `ID-k`: it connects, authenticates with that router's
// secret from `--secret-file` (or, without one, sends version 1's HELLO) through
// HubRouterClient, and closes, until `--count` handshakes are done in all.
// With `--no-confirm 1` each router sends AUTH with the no-AUTHOK flag (HubRouterClient's
// `confirm: false`) and closes after it. Prints the handshakes done and the wall
// seconds; the caller reads the hub's CPU.
//
//   handshake-bench --port P [--secret-file F] [--id bench] [--count 20000] [--concurrency 64] [--no-confirm 1]

import Foundation
import Torus
import TorusHub

var port: UInt16 = 7100
var secretFile: String?
var id = "bench"
var count = 20_000
var concurrency = 64
var confirm = true
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    guard let v = args.next() else { break }
    switch a {
    case "--port": port = UInt16(v) ?? port
    case "--secret-file": secretFile = v
    case "--id": id = v
    case "--count": count = Int(v) ?? count
    case "--concurrency": concurrency = Int(v) ?? concurrency
    case "--no-confirm": confirm = v != "1"
    default: fatalError("unknown option \(a)")
    }
}
let secrets = try secretFile.map { try HubCredentials.load(path: $0).routers }
let group = try EventLoopGroup(loops: 1)
let loop = group.loops[0]
let address = SocketAddress.ipv4(host: "127.0.0.1", port: port)
let started = ContinuousClock.now
let prefix = id
let failures = await withTaskGroup(of: Int.self) { tasks in
    for worker in 0..<concurrency {
        let share = count / concurrency + (worker < count % concurrency ? 1 : 0)
        let routerID = "\(prefix)-\(worker)"
        let secret = secrets.map { $0[routerID] ?? [] }
        tasks.addTask(executorPreference: loop) {
            var failed = 0
            for _ in 0..<share {
                do {
                    let router = try await HubRouterClient.connect(to: address, on: loop, id: routerID, secret: secret,
                                                                   confirm: confirm)
                    await router.close()
                } catch {
                    failed += 1
                }
            }
            return failed
        }
    }
    var failed = 0
    for await n in tasks { failed += n }
    return failed
}
let wall = (ContinuousClock.now - started) / .seconds(1)
print("handshakes \(count - failures) failed \(failures) wall \(wall)")
_ = group.shutdown()
