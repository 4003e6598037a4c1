import Synchronization

/// Per-loop parts of something several loops share (a server's live connections, a
/// channel's subscribers): one shard per loop, found by the loop's identity and made
/// on first use.
///
/// A shard's `value` is touched only on its loop's thread (asserted in debug builds),
/// so adding, removing and iterating need no lock. Only finding or making a loop's
/// shard takes the lock, and the list of shards is an immutable array replaced when a
/// loop first appears, so `forEachShard` reads it without copying. Two standalone
/// loops are two shards even though both have index 0: identity, not position.
///
/// Threading: `shard(for:)`, `shards`, `forEachShard`, `collect` and `sum` are safe
/// from any thread; `Shard.value` is its loop's thread only.
public final class LoopShards<Value>: @unchecked Sendable {
    /// One loop's part.
    public final class Shard: @unchecked Sendable {
        /// The loop whose thread alone touches `value`.
        public let loop: EventLoop
        private var storage: Value

        init(loop: EventLoop, value: Value) {
            self.loop = loop
            storage = value
        }

        /// This loop's part. Loop thread only.
        public var value: Value {
            get {
                loop.assertInLoop()
                return storage
            }
            _modify {
                loop.assertInLoop()
                yield &storage
            }
        }
    }

    private let make: @Sendable () -> Value
    private let state = Mutex<[Shard]>([])

    /// `make` builds a loop's part the first time that loop is seen (on the calling
    /// thread, under the lock).
    public init(_ make: @escaping @Sendable () -> Value) {
        self.make = make
    }

    /// The part for `loop`, made on first use. Safe from any thread.
    public func shard(for loop: EventLoop) -> Shard {
        state.withLock { shards in
            var i = 0
            while i < shards.count {
                if shards[i].loop === loop { return shards[i] }
                i += 1
            }
            let shard = Shard(loop: loop, value: make())
            shards = shards + [shard]
            return shard
        }
    }

    /// Every part made so far. Safe from any thread.
    public var shards: [Shard] { state.withLock { $0 } }

    /// Runs `body` on each part's loop thread: inline for the calling loop's part,
    /// as a job on the others. Safe from any thread; does not wait.
    public func forEachShard(_ body: @escaping @Sendable (Shard) -> Void) {
        for shard in shards {
            if shard.loop.inLoop { body(shard) } else { shard.loop.execute { body(shard) } }
        }
    }

    /// `body`'s result for each part, each computed on its part's loop thread.
    public func collect<T: Sendable>(_ body: @escaping @Sendable (Shard) -> T) async -> [T] {
        var results: [T] = []
        for shard in shards {
            results.append(await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
                shard.loop.runOnLoop { c.resume(returning: body(shard)) }
            })
        }
        return results
    }

    /// The sum of `body` over every part, each computed on its part's loop thread
    /// (a momentary total: the loops go on while it is taken).
    public func sum(_ body: @escaping @Sendable (Shard) -> Int) async -> Int {
        await collect(body).reduce(0, +)
    }
}

extension LoopShards.Shard where Value: AnyObject & Sendable {
    /// The part itself, from any thread, for a part that is a `Sendable` class: the
    /// class says which of its members other threads may read (an atomic count, say)
    /// and which are its loop's alone.
    public var object: Value { storage }
}

