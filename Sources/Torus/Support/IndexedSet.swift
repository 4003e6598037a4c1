/// A set of objects that each keep their own place in it: an array, with every
/// member's index stored in the member (`index`, -1 while not a member), so insertion
/// and removal are O(1) and a member costs one reference (a dictionary keyed by
/// identity costs ~33 bytes an entry, which counts when a loop holds tens of
/// thousands of idle connections). Removal moves the last member into the freed
/// place: the order is not kept.
///
/// Used for a loop's connections and for an HTTP server's connections per loop.
/// `Element` is a class or a class-bound protocol's existential (identity is checked
/// with `===`). Confined to one thread (its owner's loop).
package struct IndexedSet<Element> {
    package private(set) var members: [Element] = []
    private let index: ReferenceWritableKeyPath<Element, Int32>

    /// `index`: where each member keeps its place (initially -1).
    package init(index: ReferenceWritableKeyPath<Element, Int32>) {
        self.index = index
    }

    package var count: Int { members.count }
    package var isEmpty: Bool { members.isEmpty }

    /// Adds `member` (once).
    package mutating func insert(_ member: Element) {
        guard member[keyPath: index] < 0 else { return }
        member[keyPath: index] = Int32(members.count)
        members.append(member)
    }

    /// Removes `member` if it is one; returns whether it was.
    @discardableResult
    package mutating func remove(_ member: Element) -> Bool {
        let i = Int(member[keyPath: index])
        guard i >= 0, i < members.count, (members[i] as AnyObject) === (member as AnyObject) else { return false }
        member[keyPath: index] = -1
        let last = members.removeLast()
        if i < members.count {
            members[i] = last
            last[keyPath: index] = Int32(i)
        }
        // After a burst, give the storage back once empty.
        if members.isEmpty && members.capacity > 1024 { members = [] }
        return true
    }
}
