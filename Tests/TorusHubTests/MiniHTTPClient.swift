import Torus

/// A minimal HTTP/1.1 client over `AsyncConnection`, kept for the hub tests: one
/// request at a time on one connection, keep-alive, `Content-Length` and chunked
/// responses, and a line reader for server-sent-event streams that can drop the
/// connection mid-stream. Applications (and torus-soak) use TorusHTTP's `HTTPClient`.
///
/// Threading: one task at a time.
final class MiniHTTPClient: @unchecked Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    enum ClientError: Error, Sendable {
        case closed
        case malformed(String)
    }

    let connection: AsyncConnection
    private var buffer: [UInt8] = []
    private var start = 0
    /// False once the server said `Connection: close` (or the response ended at EOF).
    private(set) var reusable = true

    /// Sent as `Authorization: Bearer` with every request (nil: no header).
    let token: String?

    init(connection: AsyncConnection, token: String?) {
        self.connection = connection
        self.token = token
    }

    /// `token`: the API token every request carries (the tests' admin token unless
    /// told otherwise; nil for none).
    static func connect(to address: SocketAddress, on loop: EventLoop, token: String? = TestCredentials.adminToken,
                        timeout: Duration = .seconds(10)) async throws -> MiniHTTPClient {
        MiniHTTPClient(connection: try await AsyncConnection.connect(to: address, on: loop, timeout: timeout), token: token)
    }

    /// Sends one request and reads the whole response.
    func request(_ method: String, _ target: String, body: [UInt8]? = nil,
                        headers: [(String, String)] = [], keepAlive: Bool = true) async throws -> Response {
        try await send(method, target, body: body, headers: headers, keepAlive: keepAlive)
        let (status, fields) = try await readHead()
        let headerValue = { (name: String) in fields.first { $0.0.lowercased() == name }?.1 }
        if headerValue("connection")?.lowercased() == "close" || !keepAlive { reusable = false }
        var out: [UInt8] = []
        if method == "HEAD" || status == 204 || status == 304 {
            // no body
        } else if headerValue("transfer-encoding")?.lowercased().contains("chunked") == true {
            while true {
                let line = try await readLine()
                guard let size = Int(line.split(separator: ";").first.map(String.init) ?? "", radix: 16) else {
                    throw ClientError.malformed("chunk size \(line)")
                }
                if size == 0 {
                    while try await readLine() != "" {}
                    break
                }
                out += try await readBytes(size)
                _ = try await readLine()
            }
        } else if let length = headerValue("content-length").flatMap({ Int($0) }) {
            out = try await readBytes(length)
        } else {
            reusable = false
            while let chunk = try await connection.read() { out += chunk }
        }
        return Response(status: status, headers: fields, body: out)
    }

    /// Sends a request head (and body) without reading the answer (event streams).
    func send(_ method: String, _ target: String, body: [UInt8]? = nil,
                     headers: [(String, String)] = [], keepAlive: Bool = true) async throws {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: hub\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        if !keepAlive { head += "Connection: close\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if let body { bytes += body }
        try await connection.write(bytes)
    }

    /// Reads a response head: status and fields.
    func readHead() async throws -> (Int, [(String, String)]) {
        let statusLine = try await readLine()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw ClientError.malformed("status line \(statusLine)")
        }
        var fields: [(String, String)] = []
        while true {
            let line = try await readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { throw ClientError.malformed("field \(line)") }
            fields.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingSpaces()))
        }
        if status == 100 { return try await readHead() }
        return (status, fields)
    }

    /// One CRLF- or LF-terminated line, without the terminator.
    func readLine() async throws -> String {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                var end = nl
                if end > start && buffer[end - 1] == 0x0D { end -= 1 }
                let line = String(decoding: buffer[start..<end], as: UTF8.self)
                start = nl + 1
                compact()
                return line
            }
            try await fill()
        }
    }

    func readBytes(_ count: Int) async throws -> [UInt8] {
        while buffer.count - start < count { try await fill() }
        let out = Array(buffer[start..<(start + count)])
        start += count
        compact()
        return out
    }

    private func fill() async throws {
        guard let chunk = try await connection.read() else { throw ClientError.closed }
        buffer += chunk
    }

    private func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 4096 {
            buffer.removeFirst(start)
            start = 0
        }
    }

    func close(flush: Bool = true) async { await connection.close(flush: flush) }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self[...]
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
