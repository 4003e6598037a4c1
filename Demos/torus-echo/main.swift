import ArgumentParser
import DemoSupport
import Torus

/// TCP echo server: every byte received is sent back, with backpressure (a peer that
/// does not read stops being read from).
struct TorusEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-echo",
        abstract: "Echo server on Torus: one io_uring loop per thread, multishot recv, gathered sends.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Port to listen on (0: any).")
    var port: UInt16 = 7000

    @Option(help: "Close connections idle for this many seconds (0: never).")
    var idleTimeout: Int = 0

    func run() throws {
        DemoRuntime.blockSignals()
        try common.applyLimits()
        let group = try EventLoopGroup(loops: common.threads, configuration: common.configuration)
        var options = common.socketOptions
        if idleTimeout > 0 { options.idleTimeout = .seconds(idleTimeout) }
        let server = try Server.start(on: group, address: try .tcp(common.host, port), options: options) { _ in
            EchoHandler()
        }
        DemoRuntime.say("listening on \(server.address)")
        DemoRuntime.startStats(group, every: common.statsInterval)
        let sig = DemoRuntime.waitForSignal()
        server.close()
        DemoRuntime.shutdown(group, signal: sig)
    }
}

/// Sends back what it receives; pauses reading while the peer is not reading.
final class EchoHandler: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
        if !connection.isWritable { connection.pauseReading() }
    }

    func writable(_ connection: Connection) {
        connection.resumeReading()
    }
}

TorusEcho.main()
