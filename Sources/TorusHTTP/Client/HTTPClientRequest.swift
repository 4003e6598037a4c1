import HTTPTypes
import Torus

/// A request for ``HTTPClient``: method, target, fields and an optional body.
///
/// A plain value. A `.bytes` body is sent with `Content-Length`; a `.stream` body is
/// produced by its closure while the request is sent, with `Content-Length` when a
/// length is given and chunked transfer coding otherwise. `Host` is filled in from
/// the URL unless the fields carry one.
public struct HTTPClientRequest: Sendable {
    /// `http`, or `https` (TLS with the client's ``HTTPClientConfiguration/tls``
    /// context; the server's certificate must be valid for ``host``).
    public enum Scheme: String, Sendable, Hashable {
        case http, https

        /// 80 or 443.
        public var defaultPort: UInt16 { self == .https ? 443 : 80 }
    }

    public var method: HTTPRequest.Method
    public var scheme: Scheme
    /// Numeric IPv4/IPv6 address or `localhost` (over https, the name the server's
    /// certificate is verified against, and the SNI name).
    public var host: String
    public var port: UInt16
    /// Origin-form target: path and query (`/a/b?c=d`).
    public var target: String
    public var headerFields: HTTPFields
    public var body: Body?

    public enum Body: Sendable {
        case bytes([UInt8])
        /// Written through the writer; `length` nil means chunked.
        case stream(length: Int?, @Sendable (HTTPClientRequestBodyWriter) async throws -> Void)

        var isReplayable: Bool {
            if case .bytes = self { true } else { false }
        }
    }

    public init(method: HTTPRequest.Method = .get, scheme: Scheme = .http, host: String, port: UInt16,
                target: String = "/", headerFields: HTTPFields = [:], body: Body? = nil) {
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port
        self.target = target
        self.headerFields = headerFields
        self.body = body
    }

    /// Parses an `http://` or `https://host[:port]/path?query` URL.
    public init(method: HTTPRequest.Method = .get, url: String, headerFields: HTTPFields = [:],
                body: Body? = nil) throws(HTTPClientError) {
        guard let parsed = Self.parse(url) else { throw .invalidURL(url) }
        self.init(method: method, scheme: parsed.scheme, host: parsed.host, port: parsed.port, target: parsed.target,
                  headerFields: headerFields, body: body)
    }

    /// `host:port` as sent in `Host` (IPv6 in brackets; no port when it is the
    /// scheme's default).
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == scheme.defaultPort ? h : "\(h):\(port)"
    }

    /// A parsed URL: scheme, host, port (the scheme's default when absent), target.
    package struct ParsedURL: Equatable {
        package var scheme: Scheme
        package var host: String
        package var port: UInt16
        package var target: String
    }

    package static func parse(_ url: String) -> ParsedURL? {
        let lowered = url.prefix(8).lowercased()
        let scheme: Scheme
        let rest: Substring
        if lowered.hasPrefix("http://") {
            scheme = .http
            rest = url.dropFirst(7)
        } else if lowered.hasPrefix("https://") {
            scheme = .https
            rest = url.dropFirst(8)
        } else {
            return nil
        }
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var target = String(rest[slash...])
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        var port = scheme.defaultPort
        if let portText {
            guard let p = UInt16(portText), p > 0 else { return nil }
            port = p
        }
        guard !host.isEmpty, (try? SocketAddress.tcp(String(host), port)) != nil else { return nil }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return ParsedURL(scheme: scheme, host: String(host), port: port, target: target)
    }

    /// The request head bytes (request line, fields, framing, empty line).
    func headBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out += Array(method.rawValue.utf8)
        out.append(0x20)
        out += Array(target.utf8)
        out += Array(" HTTP/1.1\r\n".utf8)
        // Not from input: a constant, valid field name; the failable init cannot fail.
        if headerFields[HTTPField.Name("Host")!] == nil {
            out += Array("Host: \(authority)\r\n".utf8)
        }
        for field in headerFields where field.name != .contentLength && field.name != .transferEncoding {
            out += Array(field.name.rawName.utf8)
            out += [0x3A, 0x20]
            out += Array(field.value.utf8)
            out += [0x0D, 0x0A]
        }
        switch body {
        case .bytes(let b)?:
            out += Array("Content-Length: \(b.count)\r\n".utf8)
        case .stream(let length?, _)?:
            out += Array("Content-Length: \(length)\r\n".utf8)
        case .stream(nil, _)?:
            out += Array("Transfer-Encoding: chunked\r\n".utf8)
        case nil:
            if method == .post || method == .put || method == .patch {
                out += Array("Content-Length: 0\r\n".utf8)
            }
        }
        out += [0x0D, 0x0A]
        return out
    }
}

/// Writes a streamed request body. `write` suspends while the connection's write
/// queue is above its high water mark. Used by one producer at a time.
public final class HTTPClientRequestBodyWriter: @unchecked Sendable {
    let io: AsyncConnection
    let chunked: Bool
    let length: Int?
    /// Bytes written so far (before chunk framing).
    public private(set) var bytesWritten = 0

    init(io: AsyncConnection, length: Int?) {
        self.io = io
        self.length = length
        chunked = length == nil
    }

    public func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        bytesWritten += bytes.count
        if let length, bytesWritten > length {
            throw HTTPClientError.requestBodyFailed("more than the declared \(length) bytes")
        }
        if chunked {
            var framed: [UInt8] = []
            framed.reserveCapacity(bytes.count + 20)
            bytes.withUnsafeBytes { ChunkFraming.writeChunk($0, into: &framed) }
            try await io.write(framed)
        } else {
            try await io.write(bytes)
        }
    }

    public func write(_ string: String) async throws { try await write(Array(string.utf8)) }

    func finish() async throws {
        if chunked {
            var last: [UInt8] = []
            ChunkFraming.writeLastChunk(into: &last)
            try await io.write(last)
        } else if let length, bytesWritten != length {
            throw HTTPClientError.requestBodyFailed("\(bytesWritten) bytes written, \(length) declared")
        }
    }
}
