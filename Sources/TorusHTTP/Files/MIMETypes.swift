/// File extension → `Content-Type` mapping for serving static files.
/// Stateless; the returned strings are immutable literals.
public enum MIMETypes {
    /// Used for unknown extensions.
    public static let defaultType = "application/octet-stream"

    static let byExtension: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8",
        "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
        "mjs": "text/javascript; charset=utf-8", "json": "application/json",
        "map": "application/json", "txt": "text/plain; charset=utf-8",
        "md": "text/markdown; charset=utf-8", "csv": "text/csv; charset=utf-8",
        "xml": "application/xml", "svg": "image/svg+xml", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "avif": "image/avif", "ico": "image/vnd.microsoft.icon", "bmp": "image/bmp",
        "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
        "wasm": "application/wasm", "pdf": "application/pdf", "zip": "application/zip",
        "gz": "application/gzip", "tar": "application/x-tar", "mp4": "video/mp4",
        "webm": "video/webm", "mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav",
        "webmanifest": "application/manifest+json", "bin": "application/octet-stream",
    ]

    /// The Content-Type for a file extension (without dot, case-insensitive).
    public static func contentType(forExtension ext: some StringProtocol) -> String {
        byExtension[ext.lowercased()] ?? defaultType
    }

    /// The Content-Type for a path, from the extension of its last component.
    public static func contentType(forPath path: some StringProtocol) -> String {
        let utf8 = Array(path.utf8)
        var i = utf8.count - 1
        while i >= 0 {
            if utf8[i] == UInt8(ascii: "/") { return defaultType }
            if utf8[i] == UInt8(ascii: ".") {
                return contentType(forExtension: String(decoding: utf8[(i + 1)...], as: UTF8.self))
            }
            i -= 1
        }
        return defaultType
    }
}
