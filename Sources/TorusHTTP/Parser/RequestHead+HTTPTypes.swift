import HTTPTypes

extension RequestHead {
    /// Converts the head into a swift-http-types `HTTPRequest`. Allocates (strings and
    /// field storage owned by the returned value); call it only when a handler needs the
    /// currency type. The result does not reference the parser's storage.
    ///
    /// Mapping: `:method` ← method; `:scheme` ← `scheme` (nil for CONNECT);
    /// `:authority` ← the target's authority for absolute/authority-form, else the Host
    /// value; `:path` ← the origin-form target, the path+query of an absolute-form target
    /// (`/` when empty), `*` for asterisk-form, nil for CONNECT. The Host field is carried
    /// as `:authority` and not repeated in `headerFields`; all other fields are kept in order.
    ///
    /// - Parameter scheme: `"http"` or `"https"`, depending on the listening socket.
    /// - Throws: ``HTTPParseError/invalidMethod`` or ``HTTPParseError/invalidHeaderName``
    ///   if swift-http-types rejects a name the parser accepted (should not happen: both
    ///   use the RFC 9110 token grammar).
    public func makeHTTPRequest(scheme: String = "http") throws(HTTPParseError) -> HTTPRequest {
        guard let method = HTTPRequest.Method(methodString) else { throw .invalidMethod }
        guard let fields = storage.withUnsafeBytes({ FieldSpan.httpFields($0, spans, skipping: Int(hostIndex)) }) else {
            throw .invalidHeaderName
        }

        switch targetForm {
        case .origin:
            return HTTPRequest(method: method, scheme: scheme, authority: host, path: target, headerFields: fields)
        case .asterisk:
            return HTTPRequest(method: method, scheme: scheme, authority: host, path: "*", headerFields: fields)
        case .authority:
            return HTTPRequest(method: method, scheme: nil, authority: targetAuthority, path: nil, headerFields: fields)
        case .absolute:
            var pathAndQuery = pathStart == pathEnd ? "/" : path
            if let query { pathAndQuery += "?" + query }
            return HTTPRequest(
                method: method, scheme: scheme, authority: targetAuthority, path: pathAndQuery, headerFields: fields)
        }
    }
}
