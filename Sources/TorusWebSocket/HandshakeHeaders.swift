/// Read access to the header fields of an HTTP request or response, so that
/// the handshake code does not depend on any HTTP library. The HTTP layer
/// conforms its own type (e.g. `HTTPFields`) or uses ``HandshakeHeaderList``.
public protocol WebSocketHandshakeHeaders {
    /// Every value of the field `name` (compare names case-insensitively), in
    /// order of appearance; empty if absent.
    func values(forHeader name: String) -> [String]
}

/// One header field. A plain value owning its strings; `Sendable`.
public struct HandshakeHeader: Hashable, Sendable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A simple ordered list of header fields conforming to ``WebSocketHandshakeHeaders``.
/// Owns its strings; `Sendable`.
public struct HandshakeHeaderList: WebSocketHandshakeHeaders, Hashable, Sendable, ExpressibleByArrayLiteral {
    public var fields: [HandshakeHeader]

    public init(_ fields: [HandshakeHeader]) { self.fields = fields }

    public init(arrayLiteral elements: (String, String)...) {
        fields = elements.map { HandshakeHeader($0.0, $0.1) }
    }

    public func values(forHeader name: String) -> [String] {
        fields.filter { HandshakeHeaderList.equalsIgnoringASCIICase($0.name, name) }.map(\.value)
    }

    static func equalsIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { lowerASCII($0) == lowerASCII($1) }
    }

    static func lowerASCII(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c + 32 : c
    }
}

extension WebSocketHandshakeHeaders {
    /// All comma-separated elements of every value of `name`, trimmed of
    /// spaces and tabs, empty elements dropped.
    func listElements(forHeader name: String) -> [String] {
        values(forHeader: name).flatMap { value in
            value.split(separator: ",", omittingEmptySubsequences: true).map {
                String($0.trimmingCharacters(where: { $0 == " " || $0 == "\t" }))
            }.filter { !$0.isEmpty }
        }
    }

    /// Whether the comma list in `name` contains `token`, ASCII case-insensitively.
    func listContainsToken(_ name: String, _ token: String) -> Bool {
        listElements(forHeader: name).contains { HandshakeHeaderList.equalsIgnoringASCIICase($0, token) }
    }
}

extension Substring {
    func trimmingCharacters(where isTrimmed: (Character) -> Bool) -> Substring {
        var s = self[...]
        while let f = s.first, isTrimmed(f) { s = s.dropFirst() }
        while let l = s.last, isTrimmed(l) { s = s.dropLast() }
        return s
    }
}
