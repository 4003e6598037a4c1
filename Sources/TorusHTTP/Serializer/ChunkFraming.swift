/// The chunked transfer coding on the sending side (RFC 9112 §7.1): the one writer
/// of chunk framing, used by the server's responses and the client's requests.
/// Appends to a caller-provided, reusable `[UInt8]`; allocates nothing itself.
public enum ChunkFraming {
    /// Appends a chunk header `<hex size>\r\n`. `size` must be > 0 (0 is the last chunk).
    public static func writeHeader(size: Int, into out: inout [UInt8]) {
        // Not from input: the callers (writeChunk, HTTPServerResponse's writer) skip
        // empty writes before framing them.
        precondition(size > 0, "use writeLastChunk for the terminating chunk")
        out.appendHex(size)
        out.appendStatic("\r\n")
    }

    /// Appends the CRLF that ends a chunk's data.
    public static func writeEnd(into out: inout [UInt8]) {
        out.appendStatic("\r\n")
    }

    /// Appends a whole chunk (header, data, CRLF); nothing for empty data.
    public static func writeChunk(_ data: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        guard !data.isEmpty else { return }
        writeHeader(size: data.count, into: &out)
        out.append(contentsOf: data)
        writeEnd(into: &out)
    }

    /// Appends the last chunk and an empty trailer section: `0\r\n\r\n`.
    public static func writeLastChunk(into out: inout [UInt8]) {
        out.appendStatic("0\r\n\r\n")
    }
}
