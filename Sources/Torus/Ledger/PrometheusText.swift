/// Writes the Prometheus text exposition format (version 0.0.4): one `# TYPE` line
/// per metric family, then its samples. The one writer for every `/metrics` body
/// (the ledger's families and an application's own).
public struct PrometheusText: Sendable {
    /// The kind a family is declared as.
    public enum Kind: String, Sendable {
        case counter, gauge
    }

    /// The text written so far.
    public private(set) var text = ""

    public init() {}

    /// Starts a family: its `# TYPE` line (and `# HELP` when given).
    public mutating func family(_ name: String, _ kind: Kind, help: String? = nil) {
        if let help { text += "# HELP \(name) \(help)\n" }
        text += "# TYPE \(name) \(kind.rawValue)\n"
    }

    /// One sample of the current family. Label values are escaped as the format asks.
    public mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String> = [:], _ value: some Numeric & CustomStringConvertible) {
        text += name
        if !labels.isEmpty {
            text += "{"
            var first = true
            for (key, raw) in labels {
                if !first { text += "," }
                first = false
                text += key
                text += "=\""
                text += Self.escape(raw)
                text += "\""
            }
            text += "}"
        }
        text += " "
        text += value.description
        text += "\n"
    }

    /// A family with a single unlabelled sample.
    public mutating func single(_ name: String, _ kind: Kind, _ value: some Numeric & CustomStringConvertible, help: String? = nil) {
        family(name, kind, help: help)
        sample(name, [:], value)
    }

    static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else {
            return value
        }
        var out = ""
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }
}
