import Torus

/// A loop's HTTP scratch: its response serializer (with the `Date` cache) and a pool
/// of spare ``HTTPRequestWork`` (parser, head and field storage, output buffer). A
/// connection takes one when a request starts and gives it back when it is idle again
/// (nothing half-received, nothing left to answer), so a kept-alive connection between
/// requests holds none of it; once warm, taking and giving is a pop and a push here,
/// never a `malloc`.
///
/// At most `maxSpare` are kept, so the pool is bounded by the loop's busiest moment,
/// not by its connection count. A head storage given back may still be shared with a
/// `RequestHead` someone kept: its next user then copies it once (copy-on-write),
/// which is correct, only not free.
///
/// Ownership: one per loop and server (`HTTPServerState.scratch`). Loop thread only.
final class HTTPScratch {
    let loop: EventLoop
    let limits: HTTPLimits
    let maxSpare: Int
    /// The loop's connections write their responses through this one (used only
    /// inside one connection's callback at a time, so it skips dynamic exclusivity checks).
    @exclusivity(unchecked) var serializer = HTTPResponseSerializer()
    /// Taken from and given back to on every request of a kept-alive connection:
    /// loop-confined, so without dynamic exclusivity checks (like the serializer), and
    /// a `RingBuffer` used as a stack, so a take or give has no copy-on-write check.
    @exclusivity(unchecked) private var spare: RingBuffer<HTTPRequestWork>

    init(loop: EventLoop, limits: HTTPLimits, maxSpare: Int = 256) {
        self.loop = loop
        self.limits = limits
        self.maxSpare = maxSpare
        spare = RingBuffer(capacity: maxSpare)
    }

    /// Spare request work kept now.
    var spareCount: Int { spare.count }

    /// A request's work: a spare one, or a new one.
    func takeWork() -> HTTPRequestWork {
        loop.assertInLoop()
        return spare.popLast() ?? HTTPRequestWork(limits: limits)
    }

    /// Takes back work that holds nothing of a request (dropped when the pool is full
    /// or the work is still mid-request).
    func give(_ work: consuming HTTPRequestWork) {
        loop.assertInLoop()
        guard work.isReusable, spare.count < maxSpare else { return }
        work.trim()
        spare.append(work)
    }
}
