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

    /// `fixed`'s kept-alive HTTP/1.1 answer with `date`'s current value, composed first
    /// if it is not cached for that second; nil for an answer too large to cache.
    ///
    /// The bytes are the cache's own: valid until the next call on this value (which
    /// may rebuild or replace the entry). Reading them where they lie costs no
    /// reference-count pair, where handing out the array would retain its storage.
    @inlinable
    mutating func answer(_ fixed: PrecomputedResponse, date: HTTPDateCache) -> UnsafeRawBufferPointer? {
        let identity = fixed.bytes.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        var k = 0
        while k < entries.count {
            if entries[k].identity == identity && entries[k].bodyStart == fixed.bodyStart {
                if entries[k].second != date.cachedSecond { Self.compose(&entries[k], date) }
                return entries[k].answer.withUnsafeBytes { $0 }
            }
            k += 1
        }
        guard fixed.bytes.count + HTTPDateCache.fieldLength + 2 <= Self.maxAnswerSize else { return nil }
        var entry = Entry(fixed, identity: identity)
        Self.compose(&entry, date)
        let slot: Int
        if entries.count < Self.capacity {
            slot = entries.count
            entries.append(entry)
        } else {
            slot = nextVictim
            entries[nextVictim] = entry
            nextVictim = (nextVictim + 1) % Self.capacity
        }
        return entries[slot].answer.withUnsafeBytes { $0 }
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
