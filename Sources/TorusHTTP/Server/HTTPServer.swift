import HTTPTypes
import Torus

/// An HTTP/1.1 server: one `SO_REUSEPORT` listener per loop of a group, a router
/// shared by all loops, one `HTTPConnectionHandler` per connection.
///
/// Ownership: the server owns its listeners and the per-loop registries of live
/// connections (used by `shutdown` to close idle keep-alive connections and to let
/// busy ones finish); each connection belongs to the loop that accepted it.
public final class HTTPServer: Sendable {
    let state: HTTPServerState
    let server: Server

    /// The bound address (the real port when 0 was asked for).
    public var address: SocketAddress { server.address }

    /// Starts serving `router` on every loop of `group`. Call from outside the loops.
    public static func start(on group: EventLoopGroup, address: SocketAddress, router: HTTPRouter,
                             configuration: HTTPServerConfiguration = HTTPServerConfiguration()) throws -> HTTPServer {
        try start(on: group.loops, address: address, router: router, configuration: configuration)
    }

    public static func start(on loops: [EventLoop], address: SocketAddress, router: HTTPRouter,
                             configuration: HTTPServerConfiguration = HTTPServerConfiguration()) throws -> HTTPServer {
        let state = HTTPServerState(router: router, configuration: configuration, loops: loops.count)
        var options = configuration.socket
        options.idleTimeout = configuration.keepAliveTimeout
        let server = try Server.start(on: loops, address: address, options: options) { connection in
            HTTPConnectionHandler(server: state, connection: connection)
        }
        return HTTPServer(state: state, server: server)
    }

    private init(state: HTTPServerState, server: Server) {
        self.state = state
        self.server = server
    }

    /// Live HTTP connections on all loops (a momentary count).
    public func connectionCount() async -> Int {
        var total = 0
        for listener in server.listeners {
            let loop = listener.loop
            total += await withCheckedContinuation { c in
                loop.execute { c.resume(returning: self.state.connections(on: loop).count) }
            }
        }
        return total
    }

    /// Graceful shutdown: stop accepting, close idle keep-alive connections, let
    /// requests in progress finish for up to `grace`, then close what is left.
    public func shutdown(grace: Duration = .seconds(10)) async {
        server.close()
        for listener in server.listeners {
            let loop = listener.loop
            loop.execute {
                for handler in self.state.connections(on: loop) { handler.beginStopping() }
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while clock.now < deadline {
            if await connectionCount() == 0 { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
        for listener in server.listeners {
            let loop = listener.loop
            loop.execute {
                for handler in self.state.connections(on: loop) { handler.connection.close() }
            }
        }
    }
}

/// State shared by every connection of a server: immutable router and configuration,
/// plus one registry per loop (each touched only by its own loop thread).
final class HTTPServerState: @unchecked Sendable {
    let router: HTTPRouter
    let configuration: HTTPServerConfiguration
    let optionsResponse = PrecomputedResponse(headerFields: [.allow: "GET, HEAD, POST, PUT, DELETE, OPTIONS"], body: [])
    private var registries: [[ObjectIdentifier: HTTPConnectionHandler]]

    init(router: HTTPRouter, configuration: HTTPServerConfiguration, loops: Int) {
        self.router = router
        self.configuration = configuration
        registries = Array(repeating: [:], count: max(loops, 1) + 64)
    }

    func register(_ handler: HTTPConnectionHandler) {
        registries[handler.connection.loop.index][ObjectIdentifier(handler)] = handler
    }

    func unregister(_ handler: HTTPConnectionHandler) {
        registries[handler.connection.loop.index][ObjectIdentifier(handler)] = nil
    }

    func connections(on loop: EventLoop) -> [HTTPConnectionHandler] {
        Array(registries[loop.index].values)
    }
}
