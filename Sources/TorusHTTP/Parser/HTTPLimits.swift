/// Size and count limits enforced by ``HTTPRequestParser`` and ``HTTPResponseParser``.
///
/// A plain value type; it owns no memory beyond its stored integers. Every limit
/// maps to a specific ``HTTPParseError`` (and so to a response status) when exceeded.
public struct HTTPLimits: Sendable, Hashable {
    /// Maximum number of bytes in the request head (request line, header fields, the
    /// terminating empty line and any ignored leading empty lines). Exceeding it → 431.
    /// Also bounds the trailer section of a chunked body (→ 431).
    public var maxHeadBytes: Int
    /// Maximum number of header field lines (also applied to trailer lines). Exceeding it → 431.
    public var maxHeaderCount: Int
    /// Maximum length of the request-target in bytes. Exceeding it → 414.
    public var maxTargetLength: Int
    /// Maximum length of the method token. Exceeding it → 501 (a method this long is
    /// certainly not implemented).
    public var maxMethodLength: Int
    /// Maximum decoded body size (Content-Length or sum of chunk sizes). Exceeding it → 413.
    public var maxBodyBytes: Int
    /// Maximum length of one chunk-size line including extensions. Exceeding it → 400.
    public var maxChunkLineLength: Int

    /// Creates limits; the defaults are safe for a public-facing server.
    /// - Precondition: all values are positive and `maxHeadBytes` is below 1 GiB
    ///   (head offsets are stored as 32-bit integers).
    public init(
        maxHeadBytes: Int = 16 * 1024,
        maxHeaderCount: Int = 100,
        maxTargetLength: Int = 8 * 1024,
        maxMethodLength: Int = 32,
        maxBodyBytes: Int = 8 * 1024 * 1024,
        maxChunkLineLength: Int = 4 * 1024
    ) {
        // Not from input: limits are the application's configuration.
        precondition(maxHeadBytes > 0 && maxHeadBytes < (1 << 30), "maxHeadBytes out of range")
        precondition(maxHeaderCount > 0 && maxTargetLength > 0 && maxMethodLength > 0)
        precondition(maxBodyBytes >= 0 && maxChunkLineLength > 0)
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxTargetLength = maxTargetLength
        self.maxMethodLength = maxMethodLength
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineLength = maxChunkLineLength
    }

    /// The default limits of a server: 16 KiB head, 100 fields, 8 KiB target, 8 MiB body.
    public static let `default` = HTTPLimits()

    /// The default limits of a client reading responses: 64 KiB head, 256 fields, no
    /// body limit (a client streams bodies; it limits what it collects).
    public static let response = HTTPLimits(maxHeadBytes: 64 * 1024, maxHeaderCount: 256, maxBodyBytes: Int.max)
}
