import CLiburing
import Synchronization

/// N event loops, one thread each (thread per core, share nothing).
///
/// Servers bind one `SO_REUSEPORT` listener per loop, so the kernel spreads incoming
/// connections and no state is shared between loops. Ownership: the group owns its
/// loops; `shutdown()` stops them all and returns their summed final ledger.
public final class EventLoopGroup: Sendable {
    public let loops: [EventLoop]
    private let counter = Atomic<Int>(0)

    /// Starts `count` loops (default: one per CPU).
    public init(loops count: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
                configuration: EventLoop.Configuration = EventLoop.Configuration()) throws(IOError) {
        var made: [EventLoop] = []
        for i in 0..<Swift.max(1, count) {
            do {
                made.append(try EventLoop(configuration: configuration, index: i))
            } catch {
                for loop in made { loop.shutdown() }
                throw error
            }
        }
        loops = made
    }

    /// Round-robin choice of a loop (for client connections and work).
    public func next() -> EventLoop {
        loops[Int(UInt(bitPattern: counter.wrappingAdd(1, ordering: .relaxed).newValue) % UInt(loops.count))]
    }

    /// Stops every loop; returns the sum of their final ledgers.
    @discardableResult
    public func shutdown() -> LedgerSnapshot {
        loops.map { $0.shutdown() }.reduce(LedgerSnapshot(), +)
    }

    /// The sum of every loop's current ledger.
    public func ledgerSnapshot() -> LedgerSnapshot {
        loops.map { $0.ledgerSnapshot() }.reduce(LedgerSnapshot(), +)
    }

    public func ledgerSnapshot() async -> LedgerSnapshot {
        var total = LedgerSnapshot()
        for loop in loops { total = total + (await loop.ledgerSnapshot()) }
        return total
    }
}
