import Glibc
import HTTPTypes
import Torus

/// Why static files cannot be served from a folder (``HTTPRouter/files(_:root:followSymlinks:)``).
public enum StaticFilesError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The folder could not be opened as a directory (`errno`).
    case rootUnavailable(path: String, errno: Int32)
    /// The kernel's io_uring has no `IORING_OP_OPENAT2`: files could not be opened
    /// confined to the folder, so none are served.
    case openat2Unsupported

    public var description: String {
        switch self {
        case .rootUnavailable(let path, let errno):
            "static files: cannot open \(path) as a directory: \(String(cString: strerror(errno))) (errno \(errno))"
        case .openat2Unsupported:
            "static files: this kernel's io_uring has no openat2 (RESOLVE_BENEATH), so files cannot be confined to their root; refusing to serve them"
        }
    }
}

/// The served folder, opened once as an `O_PATH | O_DIRECTORY` descriptor that every
/// file is opened beneath.
///
/// Ownership: the descriptor belongs to this object and closes with it, when the
/// last router holding the route goes away (the server's). It is shared by every
/// loop of the server (a descriptor is the process's, and `openat2` relative to it
/// works from any ring), so it is not in a loop's ledger, which counts what one
/// loop owns; it is opened once at setup, outside any loop, by a plain `open(2)`.
final class StaticFilesRoot: Sendable {
    let fd: Int32

    init(path: String) throws(StaticFilesError) {
        guard File.ringOpensBeneath else { throw .openat2Unsupported }
        do {
            fd = try File.openDirectoryHandle(path)
        } catch {
            throw .rootUnavailable(path: path, errno: error.errno)
        }
    }

    deinit { Glibc.close(fd) }
}

/// Serves files from a folder: `Content-Type` from the extension, `Last-Modified`
/// with `If-Modified-Since` (304), single `Range` requests (206/416), HEAD. The bytes
/// are sent by the connection as pooled chunks read through the ring (no copy into
/// Swift arrays).
///
/// Confinement: the request path is first checked segment by segment (empty, `.`
/// and `..` segments, NUL and backslash, after percent-decoding once: 404 before
/// touching the file system). Then the kernel is the guarantee: the file is opened
/// with `openat2` through the ring relative to the root's descriptor, with
/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, and `RESOLVE_NO_SYMLINKS` (no link
/// anywhere on the path, the last component included) unless `followSymlinks`.
/// Even when following, `RESOLVE_BENEATH` refuses a link whose target leaves the
/// root (or is absolute): "follow" means links that stay inside, unlike nginx's
/// `disable_symlinks off`. The metadata comes from `statx` on the descriptor just
/// opened (`AT_EMPTY_PATH`), and that descriptor is the one sent: nothing is looked
/// up by path again after the open.
///
/// Statuses: a refused link (`ELOOP`), an escape (`EXDEV`), `ENOENT`, `ENOTDIR`, a
/// directory or anything but a regular file: 404 (never revealing why); `EACCES`:
/// 403; no descriptors or memory left: 503.
struct StaticFiles: Sendable {
    let root: StaticFilesRoot
    let followSymlinks: Bool

    init(root: String, followSymlinks: Bool) throws(StaticFilesError) {
        self.root = try StaticFilesRoot(path: root)
        self.followSymlinks = followSymlinks
    }

    /// How paths below the root are resolved.
    var resolution: PathResolution {
        followSymlinks ? [.beneath, .noMagicLinks] : [.beneath, .noMagicLinks, .noSymlinks]
    }

    /// The status for a failed `openat2`.
    static func status(forOpenErrno errno: Int32) -> HTTPResponse.Status {
        switch errno {
        case EACCES: .forbidden
        case EMFILE, ENFILE, ENOMEM: .serviceUnavailable
        default: .notFound  // ELOOP, EXDEV, ENOENT, ENOTDIR, ENAMETOOLONG, ...
        }
    }

    func respond(to request: HTTPServerRequest) async throws -> HTTPServerResponse {
        guard let relative = Self.safeRelativePath(request.parameters["*"] ?? "") else {
            return .status(.notFound)
        }
        return try await respond(to: request, relative: relative)
    }

    /// Serves `relative` (already checked by `safeRelativePath`) below the root.
    func respond(to request: HTTPServerRequest, relative: String) async throws -> HTTPServerResponse {
        let loop = request.loop
        // O_NONBLOCK: a FIFO placed in the root must not hold an io-wq worker until a
        // writer comes; it is cleared below once the file is known to be regular.
        var flags = O_RDONLY | O_NONBLOCK | O_NOCTTY
        if !followSymlinks { flags |= O_NOFOLLOW }
        let file: File
        do {
            file = try await loop.openFile(relative, beneath: root.fd, flags: flags, resolve: resolution)
        } catch let error as IOError {
            return .status(Self.status(forOpenErrno: error.errno))
        }
        // From here the descriptor is ours: closed on every path, or handed to the response.
        let status: FileStatus
        do {
            status = try await loop.stat(file)
        } catch {
            await Self.close(file, on: loop)
            return .status(.notFound)
        }
        // Regular files only; their reads must wait for the disk (not EAGAIN), so the
        // O_NONBLOCK taken for the open goes (fcntl on a descriptor does not block).
        guard status.isRegularFile, fcntl(file.fd, F_SETFL, O_RDONLY) == 0 else {
            await Self.close(file, on: loop)
            return .status(.notFound)
        }
        let lastModified = HTTPDate.string(epochSeconds: Int(status.modified))
        var fields: HTTPFields = [
            .contentType: MIMETypes.contentType(forPath: relative),
            .lastModified: lastModified,
            .acceptRanges: "bytes",
        ]
        if let since = request.header("if-modified-since"), let sinceSeconds = HTTPDate.parse(since),
           Int(status.modified) <= sinceSeconds {
            await Self.close(file, on: loop)
            return HTTPServerResponse(status: .notModified, headerFields: fields)
        }
        switch RangeHeader.evaluate(request.header("range"), fileSize: Int(status.size)) {
        case .full:
            let range: ClosedRange<UInt64>? = status.size > 0 ? 0...(status.size - 1) : nil
            return HTTPServerResponse(status: .ok, headerFields: fields, body: .openedFile(OpenedFile(file), range: range))
        case .partial(let r):
            fields[.contentRange] = RangeHeader.contentRange(r, fileSize: Int(status.size))
            return HTTPServerResponse(status: .partialContent, headerFields: fields,
                                      body: .openedFile(OpenedFile(file),
                                                        range: UInt64(r.lowerBound)...UInt64(r.upperBound - 1)))
        case .unsatisfiable:
            await Self.close(file, on: loop)
            fields[.contentRange] = RangeHeader.unsatisfiedContentRange(fileSize: Int(status.size))
            return HTTPServerResponse(status: .rangeNotSatisfiable, headerFields: fields)
        }
    }

    /// Closes a file that will not be sent, through the ring (a failure is only logged).
    private static func close(_ file: File, on loop: EventLoop) async {
        do {
            try await loop.close(file)
        } catch {
            loop.logger.debug("closing an unsent static file failed", metadata: ["fd": "\(file.fd)", "reason": "\(error)"])
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
