/// Decodes the chunked transfer coding (RFC 9112 §7.1) for both message parsers:
/// chunk-size lines (with extensions), the CRLF after each chunk's data, and the
/// trailer section.
///
/// The decoder reads framing bytes itself (``readFraming(_:_:_:limits:)``) and tells
/// its owner how many data bytes follow (``takeData(available:)``), so the owner
/// hands out data as slices of its input without copying. Plain value, owns no
/// memory unless trailers are kept (``keepsTrailers``): then their bytes are
/// copied into ``trailerBytes`` (each field line ending in CRLF).
@usableFromInline
struct ChunkedBodyDecoder: Sendable {
    @usableFromInline
    enum State: Equatable, Sendable {
        /// Reading the hex size; `remaining` accumulates it.
        case size
        /// Whitespace after the size, before an extension or the line end.
        case sizeWhitespace
        /// Inside a chunk extension (`;name=value`).
        case chunkExtension
        /// After the CR ending a size line.
        case sizeLF
        /// Chunk data: `remaining` bytes left.
        case data
        /// Expecting the CR after a chunk's data.
        case dataCR
        /// Expecting the LF after a chunk's data.
        case dataLF
        case trailerLineStart, trailerName, trailerValue, trailerLineLF, trailerEndLF
        /// The last chunk and the trailer section have been read.
        case done
    }

    @usableFromInline var state = State.size
    /// Bytes left in the current chunk; the size so far while reading a size line.
    @usableFromInline var remaining = 0
    /// Decoded bytes so far (bounded by ``HTTPLimits/maxBodyBytes``).
    @usableFromInline var bodyTotal = 0
    /// Length of the current size line, or of the whole trailer section.
    @usableFromInline var lineLength = 0
    @usableFromInline var trailerCount = 0
    /// Accepts a bare LF as a line end (RFC 9112 §2.2 lets a recipient do so); the
    /// request parser is strict, the response parser lenient.
    @usableFromInline let allowsBareLF: Bool
    /// Whether trailer field lines are copied into ``trailerBytes``.
    @usableFromInline let keepsTrailers: Bool
    @usableFromInline var trailerBytes: [UInt8] = []

    @usableFromInline
    init(allowsBareLF: Bool, keepsTrailers: Bool) {
        self.allowsBareLF = allowsBareLF
        self.keepsTrailers = keepsTrailers
    }

    /// Starts a new chunked body.
    @usableFromInline
    mutating func start() {
        state = .size
        remaining = 0
        bodyTotal = 0
        lineLength = 0
        trailerCount = 0
        if keepsTrailers { trailerBytes.removeAll(keepingCapacity: true) }
    }

    /// Takes up to `available` bytes of the current chunk's data (state `.data`) and
    /// returns how many.
    @inlinable
    mutating func takeData(available: Int) -> Int {
        let take = min(remaining, available)
        remaining -= take
        if remaining == 0 { state = .dataCR }
        return take
    }

    /// Reads framing bytes from `base[from..<n]` until chunk data begins (`.data`), the
    /// body ends (`.done`) or the input runs out; returns the index after them.
    @usableFromInline
    mutating func readFraming(_ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int,
                              limits: HTTPLimits) throws(HTTPParseError) -> Int {
        var i = from
        while i < n {
            let b = base[i]
            i += 1
            switch state {
            case .size:
                if let h = hexValue(b) {
                    lineLength += 1
                    if lineLength > limits.maxChunkLineLength { throw .invalidChunkSize }
                    let (times16, o1) = remaining.multipliedReportingOverflow(by: 16)
                    let (size, o2) = times16.addingReportingOverflow(h)
                    if o1 || o2 { throw .invalidChunkSize }
                    if size > limits.maxBodyBytes - bodyTotal { throw .bodyTooLarge }
                    remaining = size
                } else if lineLength == 0 {
                    throw .invalidChunkSize
                } else if b == asciiCR {
                    state = .sizeLF
                } else if b == UInt8(ascii: ";") {
                    state = .chunkExtension
                } else if isOWS(b) {
                    state = .sizeWhitespace
                } else if b == asciiLF && allowsBareLF {
                    if sizeLineEnded() { return i }
                } else {
                    throw .invalidChunkSize
                }
            case .sizeWhitespace:
                lineLength += 1
                if lineLength > limits.maxChunkLineLength { throw .invalidChunkExtension }
                // Whitespace after the size only before an extension (RFC 9112 §7.1.1).
                if b == UInt8(ascii: ";") {
                    state = .chunkExtension
                } else if !isOWS(b) {
                    throw .invalidChunkSize
                }
            case .chunkExtension:
                lineLength += 1
                if lineLength > limits.maxChunkLineLength { throw .invalidChunkExtension }
                if b == asciiCR {
                    state = .sizeLF
                } else if b == asciiLF {
                    guard allowsBareLF else { throw .bareLF }
                    if sizeLineEnded() { return i }
                } else if !isFieldValueChar(b) {
                    throw .invalidChunkExtension
                }
            case .sizeLF:
                guard b == asciiLF else { throw .bareCR }
                if sizeLineEnded() { return i }
            case .dataCR:
                if b == asciiLF && allowsBareLF {
                    chunkEnded()
                } else {
                    guard b == asciiCR else { throw .invalidChunkTerminator }
                    state = .dataLF
                }
            case .dataLF:
                guard b == asciiLF else { throw .invalidChunkTerminator }
                chunkEnded()
            case .trailerLineStart, .trailerName, .trailerValue, .trailerLineLF, .trailerEndLF:
                lineLength += 1
                if lineLength > limits.maxHeadBytes { throw .headTooLarge }
                try trailerByte(b, limits: limits)
                if state == .done { return i }
            case .data, .done:
                return i - 1
            }
        }
        return i
    }

    /// A size line ended: data follows, or (size 0) the trailer section. Returns
    /// `true` when data follows.
    @usableFromInline
    mutating func sizeLineEnded() -> Bool {
        lineLength = 0
        if remaining == 0 {
            trailerCount = 0
            state = .trailerLineStart
            return false
        }
        bodyTotal += remaining
        state = .data
        return true
    }

    @usableFromInline
    mutating func chunkEnded() {
        lineLength = 0
        remaining = 0
        state = .size
    }

    @usableFromInline
    mutating func trailerByte(_ b: UInt8, limits: HTTPLimits) throws(HTTPParseError) {
        switch state {
        case .trailerLineStart:
            if b == asciiCR {
                state = .trailerEndLF
            } else if b == asciiLF {
                guard allowsBareLF else { throw .bareLF }
                state = .done
            } else if isOWS(b) {
                throw .obsFold
            } else if isTokenChar(b) {
                trailerCount += 1
                if trailerCount > limits.maxHeaderCount { throw .tooManyHeaders }
                keep(b)
                state = .trailerName
            } else {
                throw .invalidTrailer
            }
        case .trailerName:
            if b == UInt8(ascii: ":") {
                state = .trailerValue
            } else if isOWS(b) {
                throw .whitespaceBeforeColon
            } else if !isTokenChar(b) {
                throw .invalidTrailer
            }
            keep(b)
        case .trailerValue:
            if b == asciiCR {
                state = .trailerLineLF
            } else if b == asciiLF {
                guard allowsBareLF else { throw .bareLF }
                keepLineEnd()
                state = .trailerLineStart
            } else if !isFieldValueChar(b) {
                throw .invalidHeaderValue
            } else {
                keep(b)
            }
        case .trailerLineLF:
            guard b == asciiLF else { throw .bareCR }
            keepLineEnd()
            state = .trailerLineStart
        case .trailerEndLF:
            guard b == asciiLF else { throw .bareCR }
            state = .done
        default:
            // Not from input: readFraming calls trailerByte only in the five trailer states above.
            preconditionFailure("trailerByte in state \(state)")
        }
    }

    @inline(__always) @usableFromInline
    mutating func keep(_ b: UInt8) {
        if keepsTrailers { trailerBytes.append(b) }
    }

    @inline(__always) @usableFromInline
    mutating func keepLineEnd() {
        if keepsTrailers { trailerBytes.append(asciiCR); trailerBytes.append(asciiLF) }
    }
}
