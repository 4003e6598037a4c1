import ArgumentParser
import Logging

/// `--log-level`: how much of the libraries' operational log reaches stderr.
public struct LoggingOptions: ParsableArguments, Sendable {
    @Option(help: "Least severe log level written to stderr: trace, debug, info, notice, warning, error or critical.")
    public var logLevel: Logger.Level = .info

    public init() {}

    /// Sends every logger's lines to stderr at `--log-level` (stdout stays for the
    /// lines scripts read). Call once, first.
    public func bootstrap() {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
