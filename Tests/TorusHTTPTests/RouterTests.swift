import HTTPTypes
import Testing
@testable import TorusHTTP

/// Routing decisions, straight on `HTTPRouter.match` with heads from the real parser:
/// literal paths (matched through `LiteralPaths`), their methods, and their order
/// with parameter and wildcard routes.
@Suite("Router")
struct RouterTests {
    static let ok = PrecomputedResponse(contentType: "text/plain", body: "ok")

    /// The head the parser makes of `METHOD target`.
    func head(_ method: String, _ target: String) throws -> RequestHead {
        var parser = HTTPRequestParser()
        var found: RequestHead?
        let wire = Array("\(method) \(target) HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        _ = try wire.withUnsafeBytes { bytes in
            try parser.parse(bytes) { event in
                if case .head(let h) = event { found = h }
                return .proceed
            }
        }
        return try #require(found)
    }

    /// What `router` does with `METHOD target`: the route's tag, or how it failed.
    func outcome(_ router: HTTPRouter, _ method: String, _ target: String) throws -> String {
        switch router.match(try head(method, target)) {
        case .found(.fixed(let response), _): return String(decoding: response.bytes[response.bodyStart...], as: UTF8.self)
        case .found(.handler, let parameters):
            return "handler" + (parameters ?? [:]).sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        case .found(.upgrade, _): return "upgrade"
        case .methodNotAllowed: return "405"
        case .notFound: return "404"
        }
    }

    func fixed(_ tag: String) -> PrecomputedResponse { PrecomputedResponse(contentType: "text/plain", body: tag) }

    @Test func literalPathsMethodsAndOrder() throws {
        var router = HTTPRouter()
        router.on(.get, "/files/*") { _ in .text("wild") }
        router.get("/a", fixed: fixed("get a"))
        router.on(.post, "/a") { _ in .text("post a") }
        router.get("/a", fixed: fixed("second get a"))
        router.get("/", fixed: fixed("root"))
        router.get("/ab", fixed: fixed("get ab"))
        router.on(nil, "/any") { _ in .text("any") }
        router.on(.get, "/users/{id}") { _ in .text("user") }

        #expect(try outcome(router, "GET", "/a") == "get a")  // the first literal route that answers
        #expect(try outcome(router, "HEAD", "/a") == "get a")  // a GET route answers HEAD
        #expect(try outcome(router, "POST", "/a") == "handler")
        #expect(try outcome(router, "DELETE", "/a") == "405")  // the path exists, not for this method
        #expect(try outcome(router, "GET", "/a?x=1") == "get a")  // the query is not part of the path
        #expect(try outcome(router, "GET", "/ab") == "get ab")  // same prefix, other length
        #expect(try outcome(router, "GET", "/A") == "404")  // paths are case-sensitive
        #expect(try outcome(router, "GET", "/b") == "404")  // same length, other bytes
        #expect(try outcome(router, "GET", "/") == "root")
        #expect(try outcome(router, "PATCH", "/any") == "handler")  // nil: any method
        #expect(try outcome(router, "GET", "/users/7") == "handler id=7")
        #expect(try outcome(router, "GET", "/files/x/y") == "handler *=x/y")
        #expect(try outcome(router, "POST", "/users/7") == "405")
        #expect(try outcome(router, "GET", "/users/7/x") == "404")
    }

    @Test func onlyPatternsOrOnlyLiterals() throws {
        var literals = HTTPRouter()
        literals.get("/plaintext", fixed: fixed("p"))
        #expect(try outcome(literals, "GET", "/plaintext") == "p")
        #expect(try outcome(literals, "GET", "/plaintext/") == "404")
        var patterns = HTTPRouter()
        patterns.on(.get, "/{x}") { _ in .text("x") }
        #expect(try outcome(patterns, "GET", "/plaintext") == "handler x=plaintext")
        #expect(try outcome(patterns, "GET", "/") == "404")
        #expect(try outcome(HTTPRouter(), "GET", "/") == "404")
    }
}
