import Synchronization
import Torus

/// The one piece of router state shared across loops: id → the link that currently
/// speaks for that router.
///
/// Each link lives on the loop that accepted it and is touched only there; the
/// directory just maps ids to links behind a lock, and everyone who wants to talk to
/// a router looks it up here and hops to `link.loop` with `execute`. The lock is
/// held for a dictionary operation only, never across I/O.
public final class RouterDirectory: Sendable {
    private let table = Mutex<[String: RouterLink]>([:])

    init() {}

    /// Makes `link` the router's link; returns the link it replaced, if any.
    func register(_ id: String, _ link: RouterLink) -> RouterLink? {
        table.withLock { t in
            let old = t[id]
            t[id] = link
            return old === link ? nil : old
        }
    }

    /// Forgets `id` if `link` is still its link (a replaced link must not remove its
    /// successor when it closes later).
    @discardableResult
    func remove(_ id: String, _ link: RouterLink) -> Bool {
        table.withLock { t in
            guard t[id] === link else { return false }
            t[id] = nil
            return true
        }
    }

    /// The router's current link, if it is online.
    public func link(for id: String) -> RouterLink? { table.withLock { $0[id] } }

    /// Every online router's link, sorted by id.
    public func all() -> [RouterLink] {
        table.withLock { Array($0.values) }.sorted { ($0.id ?? "") < ($1.id ?? "") }
    }

    /// Online routers.
    public var count: Int { table.withLock { $0.count } }
}
