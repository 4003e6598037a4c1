#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The literal paths of a router's routes, in one byte array, matched against a
/// request's path by length and `memcmp`: no `String`, no allocation and no
/// reference counting per request (matching walked the routes' `String`s before, a
/// few percent of a pipelined plaintext server's CPU).
///
/// Built with the router (before the server starts), then immutable and shared by
/// every loop.
struct LiteralPaths: Sendable {
    /// Every literal path's bytes, one after the other.
    private var bytes: [UInt8] = []
    private var entries: [Entry] = []

    private struct Entry: Sendable {
        let start: Int
        let count: Int
        let method: HTTPMethodKind?
        /// Index of the route in the router's `routes`.
        let route: Int
    }

    /// What a path matched.
    enum Match: Equatable {
        /// The route at this index in the router's `routes` (the first that answers).
        case route(Int)
        /// Some literal route has this path, but none answers the method.
        case otherMethod
        case none
    }

    mutating func add(_ path: [UInt8], method: HTTPMethodKind?, route: Int) {
        entries.append(Entry(start: bytes.count, count: path.count, method: method, route: route))
        bytes.append(contentsOf: path)
    }

    /// The first literal route (in the order added) whose path is `path` and whose
    /// method answers `method`.
    func match(_ path: UnsafeRawBufferPointer, method: HTTPMethodKind) -> Match {
        var samePath = false
        for entry in entries where entry.count == path.count && same(entry, path) {
            if HTTPRouter.method(entry.method, matches: method) { return .route(entry.route) }
            samePath = true
        }
        return samePath ? .otherMethod : .none
    }

    private func same(_ entry: Entry, _ path: UnsafeRawBufferPointer) -> Bool {
        bytes.withUnsafeBytes { all in
            guard entry.count > 0 else { return true }
            guard let mine = all.baseAddress, let theirs = path.baseAddress else { return false }
            return memcmp(mine + entry.start, theirs, entry.count) == 0
        }
    }
}
