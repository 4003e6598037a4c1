/// One entry of a `Sec-WebSocket-Extensions` header (RFC 6455 section 9.1):
/// an extension token and its parameters, in order, values unquoted.
///
/// A plain value type owning its strings; `Sendable`.
public struct WebSocketExtension: Hashable, Sendable {
    public struct Parameter: Hashable, Sendable {
        public var name: String
        /// `nil` for a bare parameter (`; server_no_context_takeover`).
        public var value: String?
        public init(name: String, value: String? = nil) {
            self.name = name
            self.value = value
        }
    }

    public var name: String
    public var parameters: [Parameter]

    public init(name: String, parameters: [Parameter] = []) {
        self.name = name
        self.parameters = parameters
    }

    /// Parses the values of every `Sec-WebSocket-Extensions` header line, in
    /// order (several lines are equivalent to one comma-joined line).
    ///
    /// Returns `nil` if any line is not well-formed (`token *(";" param)` lists
    /// with `param = token ["=" (token / quoted-string)]`). Extension and
    /// parameter names are lower-cased (they are case-insensitive tokens).
    public static func parse(headerValues: [String]) -> [WebSocketExtension]? {
        var result: [WebSocketExtension] = []
        for line in headerValues {
            var p = Parser(Array(line.utf8))
            guard p.parseList(into: &result) else { return nil }
        }
        return result
    }

    /// The header text for this entry, e.g. `permessage-deflate; client_max_window_bits=10`.
    public var headerValue: String {
        var s = name
        for p in parameters {
            s += "; " + p.name
            if let v = p.value { s += "=" + v }
        }
        return s
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0
        init(_ b: [UInt8]) { self.b = b }

        static func isTChar(_ c: UInt8) -> Bool {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return Array("!#$%&'*+-.^_`|~".utf8).contains(c)
            }
        }

        mutating func skipOWS() {
            while i < b.count, b[i] == UInt8(ascii: " ") || b[i] == UInt8(ascii: "\t") { i += 1 }
        }

        mutating func token() -> String? {
            let start = i
            while i < b.count, Parser.isTChar(b[i]) { i += 1 }
            guard i > start else { return nil }
            return String(decoding: b[start..<i], as: UTF8.self)
        }

        mutating func quoted() -> String? {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    i += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if c == UInt8(ascii: "\\") {
                    i += 1
                    guard i < b.count else { return nil }
                }
                out.append(b[i])
                i += 1
            }
            return nil
        }

        mutating func parseList(into result: inout [WebSocketExtension]) -> Bool {
            while true {
                skipOWS()
                if i == b.count { return true }
                if b[i] == UInt8(ascii: ",") {  // empty list elements are allowed by #rule
                    i += 1
                    continue
                }
                guard let name = token() else { return false }
                var ext = WebSocketExtension(name: name.lowercased())
                while true {
                    skipOWS()
                    guard i < b.count, b[i] == UInt8(ascii: ";") else { break }
                    i += 1
                    skipOWS()
                    guard let pname = token() else { return false }
                    skipOWS()
                    var value: String?
                    if i < b.count, b[i] == UInt8(ascii: "=") {
                        i += 1
                        skipOWS()
                        if i < b.count, b[i] == UInt8(ascii: "\"") {
                            guard let q = quoted() else { return false }
                            value = q
                        } else {
                            guard let t = token() else { return false }
                            value = t
                        }
                    }
                    ext.parameters.append(Parameter(name: pname.lowercased(), value: value))
                }
                result.append(ext)
                skipOWS()
                if i == b.count { return true }
                guard b[i] == UInt8(ascii: ",") else { return false }
                i += 1
            }
        }
    }
}
