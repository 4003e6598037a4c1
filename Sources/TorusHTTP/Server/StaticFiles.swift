import HTTPTypes
import Torus

/// Serves files from a folder: `Content-Type` from the extension, `Last-Modified`
/// with `If-Modified-Since` (304), single `Range` requests (206/416), HEAD. The
/// metadata comes from `statx` through the ring; the bytes are sent by the
/// connection as pooled chunks read through the ring (no copy into Swift arrays).
///
/// Paths are confined to `root`: empty, `.` and `..` segments, NUL and backslash are
/// rejected with 404 before touching the file system.
struct StaticFiles: Sendable {
    let root: String

    func respond(to request: HTTPServerRequest) async throws -> HTTPServerResponse {
        guard let relative = Self.safeRelativePath(request.parameters["*"] ?? "") else {
            return .status(.notFound)
        }
        let path = root + "/" + relative
        let status: FileStatus
        do {
            status = try await request.loop.stat(path: path)
        } catch {
            return .status(.notFound)
        }
        guard status.isRegularFile else { return .status(.notFound) }
        let lastModified = HTTPDate.string(epochSeconds: Int(status.modified))
        var fields: HTTPFields = [
            .contentType: MIMETypes.contentType(forPath: relative),
            .lastModified: lastModified,
            .acceptRanges: "bytes",
        ]
        if let since = request.header("if-modified-since"), let sinceSeconds = HTTPDate.parse(since),
           Int(status.modified) <= sinceSeconds {
            return HTTPServerResponse(status: .notModified, headerFields: fields)
        }
        switch RangeHeader.evaluate(request.header("range"), fileSize: Int(status.size)) {
        case .full:
            let range: ClosedRange<UInt64>? = status.size > 0 ? 0...(status.size - 1) : nil
            return HTTPServerResponse(status: .ok, headerFields: fields,
                                      body: .file(path: path, range: range, size: status.size))
        case .partial(let r):
            fields[.contentRange] = RangeHeader.contentRange(r, fileSize: Int(status.size))
            return HTTPServerResponse(status: .partialContent, headerFields: fields,
                                      body: .file(path: path, range: UInt64(r.lowerBound)...UInt64(r.upperBound - 1),
                                                  size: status.size))
        case .unsatisfiable:
            fields[.contentRange] = RangeHeader.unsatisfiedContentRange(fileSize: Int(status.size))
            return HTTPServerResponse(status: .rangeNotSatisfiable, headerFields: fields)
        }
    }

    /// The decoded path below the root, or nil when it tries to leave it.
    static func safeRelativePath(_ raw: String) -> String? {
        guard let decoded = percentDecode(raw) else { return nil }
        let parts = decoded.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.isEmpty else { return nil }
        for part in parts {
            if part.isEmpty || part == "." || part == ".." || part.contains("\0") || part.contains("\\") {
                return nil
            }
        }
        return decoded
    }

    static func percentDecode(_ s: String) -> String? {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%") {
                guard bytes.count >= 2, let h = hex(bytes[bytes.startIndex]), let l = hex(bytes[bytes.startIndex + 1])
                else { return nil }
                out.append(h << 4 | l)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Sends a byte range of a file on a connection: read a pooled chunk through the
/// ring, hand the chunk itself to the write queue, repeat while the connection is
/// writable. Loop-confined; `done` runs once, on the loop.
final class FileSender {
    let connection: Connection
    let file: File
    var offset: UInt64
    let end: UInt64
    let done: (Bool) -> Void
    private var finished = false
    private var waitingForWritable = false

    init(connection: Connection, file: File, range: ClosedRange<UInt64>, done: @escaping (Bool) -> Void) {
        self.connection = connection
        self.file = file
        self.offset = range.lowerBound
        self.end = range.upperBound + 1
        self.done = done
    }

    func start() { step() }

    /// The connection's queue drained: continue.
    func writable() {
        guard waitingForWritable else { return }
        waitingForWritable = false
        step()
    }

    private func step() {
        let loop = connection.loop
        guard connection.isOpen else { return finish(false) }
        guard offset < end else { return finish(true) }
        guard connection.isWritable else {
            waitingForWritable = true
            return
        }
        guard let buffer = loop.takeBuffer() else { return finish(false) }
        loop.read(file, into: buffer, at: offset) { [self] result, buffer in
            switch result {
            case .success(let n) where n > 0:
                var b = buffer
                let wanted = Int(min(UInt64(n), end - offset))
                b.count = wanted
                offset += UInt64(wanted)
                connection.send(b)
                step()
            default:
                loop.release(buffer)
                finish(false)
            }
        }
    }

    private func finish(_ ok: Bool) {
        guard !finished else { return }
        finished = true
        connection.loop.close(file)
        done(ok)
    }
}
