import HTTPTypes

extension FieldSpan {
    /// The swift-http-types fields for `spans` over a head's bytes, in order, leaving
    /// out the span at index `skipping`. Allocates (owned strings). Nil if
    /// swift-http-types rejects a name the validator accepted (should not happen: both
    /// use the RFC 9110 token grammar); callers report ``HTTPParseError/invalidHeaderName``.
    static func httpFields(_ raw: UnsafeRawBufferPointer, _ spans: [FieldSpan], skipping: Int = -1) -> HTTPFields? {
        var fields = HTTPFields()
        fields.reserveCapacity(spans.count)
        for (index, span) in spans.enumerated() where index != skipping {
            let nameBytes = UnsafeRawBufferPointer(rebasing: raw[Int(span.nameStart)..<Int(span.nameEnd)])
            guard let name = HTTPField.Name(String(decoding: nameBytes, as: UTF8.self)) else { return nil }
            let value = UnsafeRawBufferPointer(rebasing: raw[Int(span.valueStart)..<Int(span.valueEnd)])
            fields.append(HTTPField(name: name, value: value))
        }
        return fields
    }
}
