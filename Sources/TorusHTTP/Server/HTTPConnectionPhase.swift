import HTTPTypes
import Torus

/// Where an HTTP connection is in its request/response cycle. Each case carries what
/// only that phase needs, so a connection cannot, say, stream a response while no
/// handler runs, or take a new request while it is closing.
enum HTTPConnectionPhase {
    /// Reading requests. A request answered on the loop (a fixed route or a refusal)
    /// keeps its answer in the request work (`HTTPRequestWork.inline`) until complete.
    case reading
    /// An async handler answers the current request.
    case handling(HandlerExchange)
    /// An upgrade was accepted: the 101 is queued and the connection passes to the
    /// upgraded handler, with the bytes after the request head.
    case upgrading(@Sendable (Connection) -> any UpgradedConnectionHandler)
    /// The last response is queued; the connection closes once it is written. Input
    /// is ignored.
    case closing
}

/// What the connection knows of the request it answers. Plain value.
struct RequestFacts {
    /// The connection stays open after the response.
    var keepAlive: Bool
    let isHeadRequest: Bool
    let version: HTTPVersion
}

/// A request answered on the loop once it has been read (its body is skipped).
struct InlineRequest {
    enum Answer {
        case fixed(PrecomputedResponse)
        /// Already written when the head arrived: a fixed route's answer to a request
        /// without a body (its end follows the head at once; nothing to skip).
        case written
        /// A short text response (`reason` is its body).
        case status(HTTPResponse.Status, reason: String)
    }

    let answer: Answer
    let facts: RequestFacts
}

/// Why a request under a running handler broke; answered instead of the handler's
/// response (or, once that response started, the connection closes).
enum RequestAbort {
    case parse(HTTPParseError)
    case timeout
}

/// One request answered by an async handler: the body streaming to it and the
/// progress of its response. Loop thread only: the handler's task only carries it
/// back to the loop (hence `@unchecked Sendable`); a class so the task and the
/// connection refer to the same exchange.
final class HandlerExchange: @unchecked Sendable {
    enum Stage {
        /// The handler is producing its response; `broken` when the request broke meanwhile.
        case running(broken: RequestAbort?)
        /// The response head has been queued; its body is being sent.
        case sending(Sender)
    }

    /// How the body of a response that has started is being sent.
    enum Sender {
        /// The whole response is queued.
        case whole
        /// A streaming body written by a task through this writer.
        case stream(HTTPResponseBodyWriter)
        /// A file, read through the ring (nil while the file opens).
        case file(FileSender?)
    }

    let body: RequestBodyState
    var facts: RequestFacts
    /// The request, body included, has been read completely.
    var requestEnded = false
    var stage = Stage.running(broken: nil)

    init(body: RequestBodyState, facts: RequestFacts) {
        self.body = body
        self.facts = facts
    }

    /// The writer to wake when the connection's queue drains, if any.
    var streamWriter: HTTPResponseBodyWriter? {
        if case .sending(.stream(let writer)) = stage { writer } else { nil }
    }
}
