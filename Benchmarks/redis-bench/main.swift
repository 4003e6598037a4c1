// redis-bench: TorusRedis's pipelined SET and GET, measured in requests per client
// CPU-second, the way `redis-benchmark -t set,get -P 16` drives a server (the same
// key, a 3-byte value). One loop; `--connections` connections each keep
// `--pipeline` commands in flight through RedisConnection's loop-thread face.
// Prints one line per test: requests, wall seconds, this process's CPU seconds
// (user + system, getrusage), requests per CPU-second, and the loop thread's heap
// allocations per request (CAllocCounter) over the test, after a warm-up round.
//
//   redis-bench --port 6379 [--requests 1000000] [--pipeline 16] [--connections 4]

import CAllocCounter
import Glibc
import Synchronization
import Torus
import TorusRedis

struct Options {
    var host = "127.0.0.1"
    var port: UInt16 = 6379
    var requests = 1_000_000
    var pipeline = 16
    var connections = 4
}

func parse() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        guard let v = args.next() else { break }
        switch a {
        case "--host": o.host = v
        case "--port": o.port = UInt16(v) ?? o.port
        case "--requests": o.requests = Int(v) ?? o.requests
        case "--pipeline": o.pipeline = Int(v) ?? o.pipeline
        case "--connections": o.connections = Int(v) ?? o.connections
        default: fatalError("unknown option \(a)")
        }
    }
    return o
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// Sends `pipeline` commands at once on one connection and, once all of them are
/// answered, the next `pipeline`, until the shared budget is spent: what
/// `redis-benchmark -P N` does (it writes N commands, reads N replies, writes again),
/// so both clients make the same number of writes and reads.
final class Driver: @unchecked Sendable {
    let redis: RedisConnection
    let command: [String]
    let depth: Int
    let budget: Budget
    var inFlight = 0

    init(redis: RedisConnection, command: [String], depth: Int, budget: Budget) {
        self.redis = redis
        self.command = command
        self.depth = depth
        self.budget = budget
    }

    func fill() {
        while inFlight < depth, budget.take() {
            inFlight += 1
            redis.send(command) { [self] result in
                inFlight -= 1
                if case .failure(let error) = result { fatalError("\(error)") }
                budget.done()
                if inFlight == 0 { fill() }
            }
        }
    }
}

/// Requests left to send and to complete (loop thread only).
final class Budget: @unchecked Sendable {
    var toSend: Int
    var toComplete: Int
    var finished: (() -> Void)?
    init(_ n: Int) {
        toSend = n
        toComplete = n
    }
    func take() -> Bool {
        guard toSend > 0 else { return false }
        toSend -= 1
        return true
    }
    func done() {
        toComplete -= 1
        if toComplete == 0 { finished?() }
    }
}

func rounded(_ x: Double) -> String { String(Double(Int(x * 100)) / 100) }

let options = parse()
let loop = try EventLoop()
var configuration = RedisConfiguration()
configuration.protocolVersion = .resp2  // what redis-benchmark speaks
var opened: [RedisConnection] = []
for _ in 0..<options.connections {
    opened.append(try await RedisConnection.connect(to: .ipv4(host: options.host, port: options.port), on: loop,
                                                    configuration: configuration))
}
let connections = opened
/// Runs `requests` of `command` over every connection; returns the loop thread's
/// allocations during the run.
func drive(_ command: [String], requests: Int) async -> UInt {
    let budget = Budget(requests)
    return await withCheckedContinuation { (c: CheckedContinuation<UInt, Never>) in
        loop.execute {
            let before = torus_thread_allocations()
            budget.finished = { c.resume(returning: torus_thread_allocations() - before) }
            for redis in connections {
                Driver(redis: redis, command: command, depth: options.pipeline, budget: budget).fill()
            }
        }
    }
}

for (name, command) in [("SET", ["SET", "key:__rand_int__", "xxx"]), ("GET", ["GET", "key:__rand_int__"])] {
    _ = await drive(command, requests: min(options.requests, 50_000))  // warm-up
    let wallStart = ContinuousClock.now
    let cpuStart = cpuSeconds()
    let allocations = await drive(command, requests: options.requests)
    let cpu = cpuSeconds() - cpuStart
    let wall = (ContinuousClock.now - wallStart) / .seconds(1)
    let perCPU = Int(Double(options.requests) / cpu)
    print("\(name): \(options.requests) requests in \(rounded(wall)) s, client CPU \(rounded(cpu)) s, \(perCPU) requests per client CPU-second, "
          + "\(rounded(Double(allocations) / Double(options.requests))) allocations per request on the loop thread")
}
for redis in connections { await redis.close() }
_ = loop.shutdown()
