import CLiburing

/// An open file whose I/O goes through its loop's ring (`openat`, `openat2`, `read`,
/// `write`, `statx`, `close`), so serving a file never blocks the loop.
///
/// Ownership: the `File` value names the fd; whoever opened it closes it with
/// `close()`. Reads and writes borrow a `PooledBuffer`: the handle is consumed by
/// the call, parked in the operation while the kernel owns the bytes, and returned
/// with the result.
public struct File: Sendable {
    public let fd: Int32
    public let loop: EventLoop
}

/// What `statx` reports about a file.
public struct FileStatus: Sendable, Equatable {
    public var size: UInt64
    /// Modification time, seconds since the epoch.
    public var modified: Int64
    public var isRegularFile: Bool
    public var isDirectory: Bool
}

/// How `openat2` may resolve a path below its directory (``EventLoop/openFile(_:beneath:flags:resolve:_:)``).
public struct PathResolution: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// `RESOLVE_BENEATH`: nothing outside the directory, whether by `..`, an absolute
    /// path or a symbolic link's target (`EXDEV`).
    public static let beneath = PathResolution(rawValue: TORUS_RESOLVE_BENEATH)
    /// `RESOLVE_NO_SYMLINKS`: no symbolic link anywhere on the path, the last
    /// component included (`ELOOP`).
    public static let noSymlinks = PathResolution(rawValue: TORUS_RESOLVE_NO_SYMLINKS)
    /// `RESOLVE_NO_MAGICLINKS`: no `/proc`-style magic links (`ELOOP`).
    public static let noMagicLinks = PathResolution(rawValue: TORUS_RESOLVE_NO_MAGICLINKS)
}

extension File {
    /// Whether this kernel's io_uring has `IORING_OP_OPENAT2` (asked of a throwaway
    /// ring's opcode probe; false when the probe is refused too). Any thread.
    public static var ringOpensBeneath: Bool { torus_ring_supports_openat2() == 1 }

    /// Opens `path` as an `O_PATH | O_DIRECTORY` descriptor: a handle that paths are
    /// resolved beneath (``EventLoop/openFile(_:beneath:flags:resolve:_:)``), not one
    /// to read. A plain `open(2)`, for setup off any loop; the caller owns the
    /// descriptor and closes it with `close(2)`. Any thread.
    public static func openDirectoryHandle(_ path: String) throws(IOError) -> Int32 {
        let fd = torus_open_directory_handle(path)
        guard fd >= 0 else { throw IOError(errno: torus_errno(), "open \(path)") }
        return fd
    }
}

/// One file operation in flight. Owns what the kernel touches: the path, the statx
/// record, the `open_how` of an `openat2`, the pooled chunk (by index) while the
/// kernel reads or writes it.
final class FileOperation: CompletionTarget {
    let path: [CChar]?
    let statBuffer: UnsafeMutablePointer<statx>?
    let how: UnsafeMutablePointer<open_how>?
    let chunk: Int32
    let chunkBase: UnsafeMutableRawPointer?
    let done: (Int32, FileOperation) -> Void

    init(path: String? = nil, stat: Bool = false, how: open_how? = nil, chunk: Int32 = -1,
         chunkBase: UnsafeMutableRawPointer? = nil, done: @escaping (Int32, FileOperation) -> Void) {
        self.path = path.map { Array($0.utf8CString) }
        self.statBuffer = stat ? .allocate(capacity: 1) : nil
        self.how = how.map { value in
            let p = UnsafeMutablePointer<open_how>.allocate(capacity: 1)
            p.initialize(to: value)
            return p
        }
        self.chunk = chunk
        self.chunkBase = chunkBase
        self.done = done
    }

    deinit {
        statBuffer?.deallocate()
        how?.deallocate()
    }

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm {
        done(completion.result, self)
        return .done
    }

    var status: FileStatus? {
        guard let s = statBuffer?.pointee else { return nil }
        let mode = UInt32(s.stx_mode) & UInt32(S_IFMT)
        return FileStatus(size: s.stx_size, modified: s.stx_mtime.tv_sec,
                          isRegularFile: mode == UInt32(S_IFREG), isDirectory: mode == UInt32(S_IFDIR))
    }
}

extension EventLoop {
    // MARK: Pooled buffers

    /// Takes an outbound chunk for the application; nil when the pool is exhausted.
    /// Loop thread only.
    public func takeBuffer(file: StaticString = #fileID, line: Int = #line) -> PooledBuffer? {
        assertInLoop()
        guard let index = outbound.take(holder: BufferHolder(file, line)) else { return nil }
        return PooledBuffer(index: index, base: outbound.base(index), capacity: outbound.chunkSize)
    }

    /// Gives a chunk back to the pool. Loop thread only.
    public func release(_ buffer: consuming PooledBuffer) {
        assertInLoop()
        outbound.give(buffer.index)
    }

    // MARK: Callback face

    /// Opens `path` through the ring. Loop thread only.
    public func openFile(_ path: String, flags: Int32 = O_RDONLY, mode: mode_t = 0o644,
                         _ done: @escaping (Result<File, IOError>) -> Void) {
        assertInLoop()
        let op = FileOperation(path: path) { [self] result, _ in
            done(result >= 0 ? .success(File(fd: result, loop: self)) : .failure(IOError(result: result, "open \(path)")))
        }
        submit(.openat, target: op) { sqe in
            op.path?.withUnsafeBufferPointer { p in
                io_uring_prep_openat(sqe, AT_FDCWD, p.baseAddress, flags | O_CLOEXEC, mode)
            }
        }
    }

    /// Opens `path` relative to the directory descriptor `directory` (the caller keeps
    /// it open until `done`) with `openat2` through the ring, resolved as `resolve` allows (``PathResolution/beneath`` keeps it inside
    /// the directory whatever the path or its links say). Counted in the ledger as an
    /// `openat`. `O_CLOEXEC` is added. Loop thread only.
    public func openFile(_ path: String, beneath directory: Int32, flags: Int32 = O_RDONLY,
                         resolve: PathResolution, _ done: @escaping (Result<File, IOError>) -> Void) {
        assertInLoop()
        let how = open_how(flags: UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), mode: 0, resolve: resolve.rawValue)
        let op = FileOperation(path: path, how: how) { [self] result, _ in
            done(result >= 0 ? .success(File(fd: result, loop: self)) : .failure(IOError(result: result, "openat2 \(path)")))
        }
        submit(.openat, target: op) { sqe in
            op.path?.withUnsafeBufferPointer { p in
                io_uring_prep_openat2(sqe, directory, p.baseAddress, op.how)
            }
        }
    }

    /// `statx` of an open file (`fd`) or of a path. Loop thread only.
    public func stat(_ file: File?, path: String = "", _ done: @escaping (Result<FileStatus, IOError>) -> Void) {
        assertInLoop()
        let op = FileOperation(path: path, stat: true) { result, op in
            if result < 0 { done(.failure(IOError(result: result, "statx \(path)"))) }
            else if let s = op.status { done(.success(s)) }
            else { done(.failure(IOError(errno: EIO, "statx"))) }
        }
        let dirfd = file?.fd ?? AT_FDCWD
        let flags = file == nil ? 0 : TORUS_AT_EMPTY_PATH
        submit(.statx, target: op) { sqe in
            op.path?.withUnsafeBufferPointer { p in
                io_uring_prep_statx(sqe, dirfd, p.baseAddress, flags,
                                    UInt32(STATX_SIZE | STATX_MTIME | STATX_TYPE), op.statBuffer)
            }
        }
    }

    /// Reads into `buffer` (replacing its contents) at `offset`; `done` gets the byte
    /// count (0 at end of file) and the buffer back. Loop thread only.
    public func read(_ file: File, into buffer: consuming PooledBuffer, at offset: UInt64,
                     _ done: @escaping (Result<Int, IOError>, consuming PooledBuffer) -> Void) {
        chunkIO(.read, file, buffer, at: offset, done)
    }

    /// Writes the buffer's bytes at `offset`; `done` gets the count written and the
    /// buffer back. Loop thread only.
    public func write(_ file: File, from buffer: consuming PooledBuffer, at offset: UInt64,
                      _ done: @escaping (Result<Int, IOError>, consuming PooledBuffer) -> Void) {
        chunkIO(.write, file, buffer, at: offset, done)
    }

    /// One read or write of a pooled chunk: the handle is consumed, the chunk is the
    /// kernel's (in the ledger) until the CQE, then a new handle goes to `done`.
    private func chunkIO(_ kind: OperationKind, _ file: File, _ buffer: consuming PooledBuffer, at offset: UInt64,
                         _ done: @escaping (Result<Int, IOError>, consuming PooledBuffer) -> Void) {
        assertInLoop()
        let index = buffer.index
        let base = buffer.base
        let capacity = buffer.capacity
        let count = buffer.count
        _ = consume buffer
        let isRead = kind == .read
        outbound.lend(index, holder: BufferHolder(isRead ? "file read on fd" : "file write on fd", Int(file.fd)))
        let op = FileOperation(chunk: index, chunkBase: base) { [self] result, _ in
            outbound.reclaim(index, holder: BufferHolder("completed file I/O on fd", Int(file.fd)))
            var b = PooledBuffer(index: index, base: base, capacity: capacity)
            b.count = isRead ? Int(max(result, 0)) : count
            done(result >= 0 ? .success(Int(result)) : .failure(IOError(result: result, isRead ? "read" : "write")), b)
        }
        submit(kind, target: op) { sqe in
            if isRead {
                io_uring_prep_read(sqe, file.fd, base, UInt32(capacity), offset)
            } else {
                io_uring_prep_write(sqe, file.fd, base, UInt32(count), offset)
            }
        }
    }

    /// Closes a file through the ring. Loop thread only.
    public func close(_ file: File, _ done: @escaping (Result<Void, IOError>) -> Void = { _ in }) {
        assertInLoop()
        let op = FileOperation { result, _ in
            done(result >= 0 ? .success(()) : .failure(IOError(result: result, "close")))
        }
        submit(.close, target: op) { sqe in io_uring_prep_close(sqe, file.fd) }
    }

    // MARK: Async face

    public func openFile(_ path: String, flags: Int32 = O_RDONLY, mode: mode_t = 0o644) async throws -> File {
        defer { taskResumedByLoop() }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<File, any Error>) in
            runOnLoop { [self] in openFile(path, flags: flags, mode: mode) { c.resume(with: $0.mapError { $0 }) } }
        }
    }

    /// Opens `path` below the directory descriptor `directory` with `openat2` (see the
    /// callback form).
    public func openFile(_ path: String, beneath directory: Int32, flags: Int32 = O_RDONLY,
                         resolve: PathResolution) async throws -> File {
        defer { taskResumedByLoop() }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<File, any Error>) in
            runOnLoop { [self] in
                openFile(path, beneath: directory, flags: flags, resolve: resolve) { c.resume(with: $0.mapError { $0 }) }
            }
        }
    }

    public func stat(_ file: File) async throws -> FileStatus {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<FileStatus, any Error>) in
            runOnLoop { [self] in stat(file) { c.resume(with: $0.mapError { $0 }) } }
        }
    }

    public func stat(path: String) async throws -> FileStatus {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<FileStatus, any Error>) in
            runOnLoop { [self] in stat(nil, path: path) { c.resume(with: $0.mapError { $0 }) } }
        }
    }

    public func close(_ file: File) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            runOnLoop { [self] in close(file) { c.resume(with: $0.mapError { $0 }) } }
        }
    }

    /// Reads a whole (small) file into memory through the ring, one chunk at a time.
    public func readWholeFile(_ path: String) async throws -> [UInt8] {
        let file = try await openFile(path)
        var out: [UInt8] = []
        do {
            while true {
                let chunk = try await readChunk(file, at: UInt64(out.count))
                if chunk.isEmpty { break }
                out += chunk
            }
        } catch {
            do {
                try await close(file)
            } catch let closeError {
                // The read's error is the one to report; the close's is only logged.
                logger.debug("closing a file after a failed read failed too",
                             metadata: ["fd": "\(file.fd)", "reason": "\(closeError)"])
            }
            throw error
        }
        try await close(file)
        return out
    }

    /// Reads up to one pooled chunk's worth of bytes at `offset` (empty at EOF).
    public func readChunk(_ file: File, at offset: UInt64) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], any Error>) in
            runOnLoop { [self] in
                guard let buffer = takeBuffer() else {
                    c.resume(throwing: IOError(errno: ENOBUFS, "read"))
                    return
                }
                read(file, into: buffer, at: offset) { [self] result, b in
                    let bytes = b.bytes
                    release(b)
                    c.resume(with: result.map { _ in bytes }.mapError { $0 })
                }
            }
        }
    }
}
