import ArgumentParser
import DemoSupport
import Torus
import TorusTLS

/// TCP echo server: every byte received is sent back, with backpressure (a peer that
/// does not read stops being read from). With `--tls-cert` and `--tls-key` it speaks
/// TLS (echoing the plaintext), on the same ring.
@main
struct TorusEcho: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-echo",
        abstract: "Echo server on Torus: one io_uring loop per thread, multishot recv, gathered sends.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var tls: TLSOptions

    @Option(help: "Port to listen on (0: any).")
    var port: UInt16 = 7000

    @Option(help: "Close connections idle for this many seconds (0: never).")
    var idleTimeout: Int = 0

    mutating func run() async throws {
        try common.prepareProcess()
        let group = try EventLoopGroup(loops: common.threads, configuration: common.configuration)
        var options = common.socketOptions
        if idleTimeout > 0 { options.idleTimeout = .seconds(idleTimeout) }
        let context = try tls.serverContext()
        let server = try Server.start(on: group, address: try .tcp(common.host, port), tls: context, options: options) { _ in
            EchoHandler()
        }
        await DemoRuntime.serve([server], listeningOn: [server.address], group: group, options: common,
                                label: "torus-echo")
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
