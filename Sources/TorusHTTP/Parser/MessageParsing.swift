/// A handler's answer to a parser event.
public enum HTTPParserControl: Sendable {
    /// Keep parsing.
    case proceed
    /// Stop right after this event: `parse` returns the number of bytes consumed so
    /// far. Unconsumed bytes belong to the caller (e.g. the WebSocket codec after an
    /// accepted upgrade, or a copy kept for later). Calling `parse` again (possibly
    /// with an empty buffer) resumes, e.g. by emitting the end of a bodiless message
    /// that was paused after its head.
    case pause
}

/// Where a message parser is. Plain value.
@usableFromInline
enum MessageParseState: Equatable, Sendable {
    /// Reading a head (or between messages).
    case head
    /// Reading a body, with the parser's ``BodyReader``.
    case body
    /// The message is complete; its end is reported next.
    case pendingEnd
    /// After a message that ends the connection: input is ignored.
    case closed
    /// Terminal: every further call rethrows the error.
    case failed(HTTPParseError)
}

/// The driver the request and response parsers share: heads are scanned by the
/// parser, bodies read by its ``BodyReader``, and an error leaves it terminal.
@usableFromInline
protocol MessageParsing {
    associatedtype Event
    var state: MessageParseState { get set }
    var body: BodyReader { get set }
    var limits: HTTPLimits { get }
    /// Consumes head bytes from `base[from..<n]`; returns the index after them and
    /// whether the head is complete.
    mutating func scanHead(_ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int) throws(HTTPParseError) -> (Int, Bool)
    /// Validates the complete head, sets `state` (and starts `body`), reports it.
    mutating func headComplete(_ handler: (Event) -> HTTPParserControl) throws(HTTPParseError) -> HTTPParserControl
    /// Consumes head bytes from `base[from..<n]`; returns the index after them and,
    /// when the head is complete, the handler's answer to it (nil while incomplete).
    /// By default ``scanHead(_:_:_:)``, then ``headComplete(_:)``.
    mutating func readHead(
        _ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int, _ handler: (Event) -> HTTPParserControl
    ) throws(HTTPParseError) -> (Int, HTTPParserControl?)
    /// Reports the end of the message and resets for the next one (or closes).
    mutating func finishMessage(_ handler: (Event) -> HTTPParserControl) throws(HTTPParseError) -> HTTPParserControl
    static func bodyEvent(_ bytes: UnsafeRawBufferPointer) -> Event
}

extension MessageParsing {
    @inline(__always) @usableFromInline
    mutating func readHead(
        _ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int, _ handler: (Event) -> HTTPParserControl
    ) throws(HTTPParseError) -> (Int, HTTPParserControl?) {
        let (next, complete) = try scanHead(base, from, n)
        return (next, complete ? try headComplete(handler) : nil)
    }

    /// Parses `bytes`, reporting events in order; returns the bytes consumed. An
    /// error makes the parser terminal.
    @usableFromInline
    mutating func parseMessages(_ bytes: UnsafeRawBufferPointer,
                                _ handler: (Event) -> HTTPParserControl) throws(HTTPParseError) -> Int {
        if case .failed(let e) = state { throw e }
        do throws(HTTPParseError) {
            return try parseAvailable(bytes, handler)
        } catch {
            state = .failed(error)
            throw error
        }
    }

    @usableFromInline
    mutating func parseAvailable(_ bytes: UnsafeRawBufferPointer,
                                 _ handler: (Event) -> HTTPParserControl) throws(HTTPParseError) -> Int {
        let n = bytes.count
        var i = 0
        while true {
            if state == .pendingEnd {
                if try finishMessage(handler) == .pause { return i }
                continue
            }
            // i < n, so the buffer is non-empty and has a base address.
            guard state != .closed, i < n, let start = bytes.baseAddress else { return i }
            let base = start.assumingMemoryBound(to: UInt8.self)
            switch state {
            case .head:
                let (next, control) = try readHead(base, i, n, handler)
                i = next
                if control == .pause { return i }
            case .body:
                let (next, slice) = try body.read(base, i, n, limits: limits)
                i = next
                if body.isComplete { state = .pendingEnd }
                if let slice, handler(Self.bodyEvent(slice)) == .pause { return i }
            case .failed(let e):
                throw e
            case .pendingEnd, .closed:
                return i
            }
        }
    }
}
