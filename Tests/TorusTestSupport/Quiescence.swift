import Foundation
import Testing
import Torus

/// The one rule every Torus test ends with: after shutdown the ledger is quiescent —
/// no operation in flight or parked, every buffer back in its pool, no connection or
/// listener left open, no socket left in a loop's registered file table.
public func expectQuiescent(_ ledger: LedgerSnapshot, _ comment: String = "",
                            sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(ledger.isQuiescent, "ledger not quiescent \(comment):\n\(ledger)", sourceLocation: sourceLocation)
    #expect(ledger.inFlight == 0, sourceLocation: sourceLocation)
    #expect(ledger.buffersOut == 0, sourceLocation: sourceLocation)
    #expect(ledger.directDescriptors == 0, sourceLocation: sourceLocation)
}

/// Runs `body` with a fresh loop, shuts it down, and asserts the ledger quiescent.
/// Returns the final ledger for further checks.
@discardableResult
public func withLoop(_ configuration: EventLoop.Configuration = EventLoop.Configuration(),
                     sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: (EventLoop) async throws -> Void) async throws -> LedgerSnapshot {
    let loop = try EventLoop(configuration: configuration)
    do {
        try await body(loop)
    } catch {
        let ledger = await loop.shutdownGracefully()
        expectQuiescent(ledger, "after a failed test", sourceLocation: sourceLocation)
        throw error
    }
    let ledger = await loop.shutdownGracefully()
    expectQuiescent(ledger, sourceLocation: sourceLocation)
    return ledger
}

/// The default loop configuration with `change` applied (a test's variant in one
/// expression: `loopConfiguration { $0.fallbacks = .all }`).
public func loopConfiguration(_ change: (inout EventLoop.Configuration) -> Void) -> EventLoop.Configuration {
    var configuration = EventLoop.Configuration()
    change(&configuration)
    return configuration
}

/// Runs `body` with a fresh group of `loops` loops; same rule as `withLoop`.
@discardableResult
public func withGroup(loops: Int, _ configuration: EventLoop.Configuration = EventLoop.Configuration(),
                      sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: (EventLoopGroup) async throws -> Void) async throws -> LedgerSnapshot {
    let group = try EventLoopGroup(loops: loops, configuration: configuration)
    do {
        try await body(group)
    } catch {
        let ledger = await group.shutdownGracefully()
        expectQuiescent(ledger, "after a failed test", sourceLocation: sourceLocation)
        throw error
    }
    let ledger = await group.shutdownGracefully()
    expectQuiescent(ledger, sourceLocation: sourceLocation)
    return ledger
}

/// Deterministic test bytes (a cheap xorshift stream), so payloads are byte-checked.
public func testBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        out[i] = UInt8(truncatingIfNeeded: x)
    }
    return out
}

/// Polls `condition` until it holds or `timeout` passes (for effects that finish on
/// a loop thread). Returns whether it held.
public func eventually(timeout: Duration = .seconds(10), _ condition: () async -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// A value shared between test code and loop threads, behind a lock.
public final class Locked<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    public init(_ value: Value) { self.value = value }
    @discardableResult
    public func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
    public var current: Value { withLock { $0 } }
}
