/// A serializer's few most recent fixed answers, each composed whole for the current
/// second: a ``PrecomputedResponse``'s prefix, the `Date` line, the empty line and the
/// body in one array, so that the common answer (kept alive, HTTP/1.1, not to HEAD) is
/// one copy instead of three and costs no per-request composition. The `Date` value
/// changes once a second; an entry is rebuilt when its second is past.
///
/// An entry is recognised by the identity of the response's byte storage: the entry
/// holds that array, so while it is cached no other array can have the same storage, and
/// the storage of a `PrecomputedResponse` is immutable. Answers larger than
/// ``maxAnswerSize`` are not cached (their body copy dominates anyway, and a cached copy
/// would double their memory per loop).
///
/// Memory: at most ``capacity`` entries of at most ``maxAnswerSize`` bytes each, per
/// serializer (one serializer per event loop). Entries are replaced in turn, so servers
/// with more fixed routes than entries still answer correctly, only without the saving.
@usableFromInline
struct ComposedAnswers: Sendable {
    @usableFromInline static let capacity = 4
    @usableFromInline static let maxAnswerSize = 4096

    @usableFromInline
    struct Entry: Sendable {
        /// The response's bytes, held so that `identity` stays theirs alone.
        @usableFromInline var source: [UInt8]
        /// The address of `source`'s storage.
        @usableFromInline var identity: UInt
        @usableFromInline var bodyStart: Int
        /// The epoch second whose `Date` the answer carries.
        @usableFromInline var second: Int
        /// Prefix, `Date` line, empty line, body.
        @usableFromInline var answer: [UInt8]

        @usableFromInline init(_ fixed: PrecomputedResponse, identity: UInt) {
            source = fixed.bytes
            self.identity = identity
            bodyStart = fixed.bodyStart
            second = .min
            answer = []
        }
    }

    @usableFromInline var entries: [Entry] = []
    @usableFromInline var nextVictim = 0

    @usableFromInline init() {}

    /// Appends `fixed`'s kept-alive HTTP/1.1 answer with `date`'s current value to `out`,
    /// composing it first if it is not cached for that second. Returns false, appending
    /// nothing, for an answer too large to cache.
    @inlinable
    mutating func append(_ fixed: PrecomputedResponse, date: HTTPDateCache, to out: inout [UInt8]) -> Bool {
        let identity = fixed.bytes.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        for k in entries.indices where entries[k].identity == identity && entries[k].bodyStart == fixed.bodyStart {
            if entries[k].second != date.cachedSecond { Self.compose(&entries[k], date) }
            // The answer's bytes are read where they lie. `entries` keeps the storage
            // and nothing changes it while `out` grows (`out` is another array: the two
            // accesses cannot overlap), so the pointer outlives its closure safely;
            // appending inside the closure made the compiler retain and release the
            // answer's storage around the copy, an atomic pair on every request.
            let (base, count) = entries[k].answer.withUnsafeBufferPointer { ($0.baseAddress, $0.count) }
            out.append(contentsOf: UnsafeBufferPointer(start: base, count: count))
            return true
        }
        guard fixed.bytes.count + HTTPDateCache.fieldLength + 2 <= Self.maxAnswerSize else { return false }
        var entry = Entry(fixed, identity: identity)
        Self.compose(&entry, date)
        out.appendBytes(of: entry.answer, 0..<entry.answer.count)
        if entries.count < Self.capacity {
            entries.append(entry)
        } else {
            entries[nextVictim] = entry
            nextVictim = (nextVictim + 1) % Self.capacity
        }
        return true
    }

    @usableFromInline
    static func compose(_ entry: inout Entry, _ date: HTTPDateCache) {
        entry.answer.removeAll(keepingCapacity: true)
        entry.answer.appendBytes(of: entry.source, 0..<entry.bodyStart)
        date.appendField(to: &entry.answer, endingHead: true)
        entry.answer.appendBytes(of: entry.source, entry.bodyStart..<entry.source.count)
        entry.second = date.cachedSecond
    }
}
