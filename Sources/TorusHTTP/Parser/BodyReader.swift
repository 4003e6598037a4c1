/// Reads a message body of any framing out of the input, for both parsers: hands out
/// body bytes as slices of the input (no copy) and says when the body is complete.
/// Plain value; the chunked framing is read by its ``ChunkedBodyDecoder``.
@usableFromInline
struct BodyReader: Sendable {
    @usableFromInline
    enum Mode: Sendable {
        case fixed
        case chunked
        case untilClose
    }

    @usableFromInline var mode = Mode.fixed
    /// Bytes left of a Content-Length body.
    @usableFromInline var remaining = 0
    /// Bytes of a read-until-close body so far.
    @usableFromInline var untilCloseTotal = 0
    @usableFromInline var chunked: ChunkedBodyDecoder

    @usableFromInline
    init(chunked: ChunkedBodyDecoder) {
        self.chunked = chunked
    }

    /// Starts a body framed as `framing` (not `.none`).
    @usableFromInline
    mutating func start(_ framing: HTTPBodyFraming) {
        switch framing {
        case .none:
            mode = .fixed
            remaining = 0
        case .contentLength(let n):
            mode = .fixed
            remaining = n
        case .chunked:
            mode = .chunked
            chunked.start()
        case .untilClose:
            mode = .untilClose
            untilCloseTotal = 0
        }
    }

    /// Whether the whole body has been read (never for a body until the close).
    @inlinable
    var isComplete: Bool {
        switch mode {
        case .fixed: remaining == 0
        case .chunked: chunked.state == .done
        case .untilClose: false
        }
    }

    /// Reads from `base[from..<n]` (`from < n`): returns the index after what was read
    /// and the body bytes among them, if any (a slice of the input, never empty).
    @inlinable
    mutating func read(_ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int,
                       limits: HTTPLimits) throws(HTTPParseError) -> (Int, UnsafeRawBufferPointer?) {
        let take: Int
        switch mode {
        case .fixed:
            take = min(remaining, n - from)
            remaining -= take
        case .chunked:
            guard chunked.state == .data else {
                return (try chunked.readFraming(base, from, n, limits: limits), nil)
            }
            take = chunked.takeData(available: n - from)
        case .untilClose:
            // Up to the limit, then the error: the same bytes arrive before it however
            // the input was cut (the whole input at once, or piece by piece).
            let allowed = limits.maxBodyBytes - untilCloseTotal
            if allowed == 0 { throw .bodyTooLarge }
            take = min(n - from, allowed)
            untilCloseTotal += take
        }
        return (from + take, UnsafeRawBufferPointer(start: base + from, count: take))
    }
}
