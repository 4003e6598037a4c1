/// One named file of a folder at a fixed path (a site's `index.html` at `/`).
extension HTTPRouter {
    /// Serves the file `name` below `root` at `path` (GET and HEAD), opened the way
    /// ``files(_:root:followSymlinks:)`` opens its files: through the ring, confined
    /// to `root` by `openat2` with `RESOLVE_BENEATH`, with the same headers,
    /// conditional and range handling. `name` is a relative path without `.` or `..`
    /// segments (otherwise every request is 404). Throws ``StaticFilesError`` when
    /// `root` cannot be opened or the kernel lacks `openat2`.
    public mutating func file(_ path: String, named name: String, root: String,
                              followSymlinks: Bool = false) throws(StaticFilesError) {
        let files = try StaticFiles(root: root, followSymlinks: followSymlinks)
        let relative = StaticFiles.safeRelativePath(name)
        let serve: HTTPHandler = { request in
            guard let relative else { return .status(.notFound) }
            return try await files.respond(to: request, relative: relative)
        }
        on(.get, path, serve)
        on(.head, path, serve)
    }
}
