import Torus

/// What an HTTP connection needs only while a request is in progress: the parser
/// with its head and field storage, the response bytes on their way to the write
/// queue, pipelined bytes that wait, the inline answer of the request being read and
/// when the request started (its deadlines are in the loop's deadline wheel). An idle
/// keep-alive connection holds none of it: it takes one
/// from its loop's ``HTTPScratch`` when bytes arrive and gives it back when nothing
/// is half-received or unanswered (see `HTTPConnectionHandler`).
///
/// Ownership: the scratch's pool, or the one connection that took it. Loop thread only.
final class HTTPRequestWork {
    /// Output capacity reserved once; a response that grew the buffer beyond
    /// `retainedCapacity` does not keep it in the pool.
    static let outputCapacity = 2048
    static let headCapacity = 2048
    static let spanCapacity = 64
    static let retainedCapacity = 64 << 10

    // Loop-confined, never accessed overlapping: no dynamic exclusivity checks.
    @exclusivity(unchecked) var parser: HTTPRequestParser
    /// Response bytes on their way to the write queue.
    @exclusivity(unchecked) var out: [UInt8] = []
    /// Pipelined bytes that wait while a handler answers the request before them.
    @exclusivity(unchecked) var leftover: [UInt8] = []
    /// The answer to the request being read, when it is answered on the loop (a fixed
    /// route or a refusal) once complete; nil while a head is incomplete.
    @exclusivity(unchecked) var inline: InlineRequest?
    /// Whether a request is incomplete and since when: its head and whole-request
    /// deadlines are checked by the loop's deadline wheel through the connection
    /// (see `HTTPConnectionHandler.checkLiveness`), not by a timer of its own.
    var requestClock = RequestClock.stopped
    /// Inside `parser.parse` (the work cannot be given back then).
    @exclusivity(unchecked) var parsing = false

    init(limits: HTTPLimits) {
        parser = HTTPRequestParser(limits: limits, lendingStorage: ())
        var head: [UInt8] = []
        head.reserveCapacity(min(Self.headCapacity, limits.maxHeadBytes))
        var spans: [FieldSpan] = []
        spans.reserveCapacity(Self.spanCapacity)
        parser.adoptStorage(head: head, spans: spans)
        out.reserveCapacity(Self.outputCapacity)
    }

    /// The request deadlines' clock.
    enum RequestClock: Equatable {
        /// No request is half-received (or its handler has all of it).
        case stopped
        /// A request is incomplete since `since` (``MonotonicClock`` nanoseconds).
        case running(since: UInt64)
    }

    /// True when the work holds nothing of a request: it can serve another connection.
    var isReusable: Bool {
        !parsing && parser.isIdle && out.isEmpty && leftover.isEmpty && inline == nil && requestClock == .stopped
    }

    /// Drops buffers a large request or response grew, before the work goes back to
    /// the pool.
    func trim() {
        if out.capacity > Self.retainedCapacity {
            out = []
            out.reserveCapacity(Self.outputCapacity)
        }
        if leftover.capacity > Self.retainedCapacity { leftover = [] }
    }
}
