import Foundation
import Torus
import TorusWebSocket

/// A page of headless Chromium driven over the DevTools protocol, through Torus's own
/// WebSocket client: one browser connection, one page target attached in flat mode.
/// Messages that are not the answer awaited are events: console errors, uncaught
/// exceptions and error log entries are kept in `problems`.
///
/// Threading: one task at a time (a test's).
final class DevToolsSession: @unchecked Sendable {
    let ws: WebSocketConnection
    private var nextID = 0
    private var session: String?
    /// What the page reported as errors, in order: "console: …", "exception: …",
    /// "log/SOURCE: …".
    private(set) var problems: [String] = []

    private init(ws: WebSocketConnection) { self.ws = ws }

    static func connect(_ url: String, on loop: EventLoop) async throws -> DevToolsSession {
        var configuration = WebSocketClientConfiguration()
        // Screenshots come back as one base64 message of a few MiB.
        configuration.connection.maxMessageSize = 64 << 20
        configuration.connection.maxFrameSize = 64 << 20
        configuration.connection.inboundBufferLimit = 64 << 20
        return DevToolsSession(ws: try await WebSocketClient.connect(to: url, on: loop, configuration: configuration))
    }

    /// Opens a page target, attaches to it, turns on the domains the checks read,
    /// and navigates to `url` (waiting for its load event).
    func open(_ url: String) async throws {
        let target = try await call("Target.createTarget", ["url": "about:blank"], onPage: false)
        guard let targetID = target["targetId"] as? String else { throw HubTestError("no targetId: \(target)") }
        let attached = try await call("Target.attachToTarget", ["targetId": targetID, "flatten": true], onPage: false)
        guard let sessionID = attached["sessionId"] as? String else { throw HubTestError("no sessionId: \(attached)") }
        session = sessionID
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] { _ = try await call(domain) }
        try await navigate(url)
    }

    func navigate(_ url: String) async throws {
        _ = try await call("Page.navigate", ["url": url])
        guard try await waitUntil("document.readyState === 'complete'", timeout: .seconds(15)) else {
            throw HubTestError("the page did not load: \(url)")
        }
    }

    /// Sends a command and reads messages until its answer; returns its result.
    @discardableResult
    func call(_ method: String, _ params: [String: Any] = [:], onPage: Bool = true) async throws -> [String: Any] {
        nextID += 1
        let id = nextID
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if onPage, let session { message["sessionId"] = session }
        let data = try JSONSerialization.data(withJSONObject: message)
        try await ws.send(text: String(decoding: data, as: UTF8.self))
        while true {
            guard case .text(let text)? = try await ws.nextMessage() else { throw HubTestError("DevTools closed") }
            guard let m = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { continue }
            if let answer = m["id"] as? Int, answer == id {
                if let error = m["error"] { throw HubTestError("\(method) failed: \(error)") }
                return m["result"] as? [String: Any] ?? [:]
            }
            record(m)
        }
    }

    private func record(_ m: [String: Any]) {
        let params = m["params"] as? [String: Any] ?? [:]
        switch m["method"] as? String {
        case "Runtime.consoleAPICalled" where params["type"] as? String == "error":
            let args = (params["args"] as? [[String: Any]] ?? []).map { "\($0["value"] ?? $0["description"] ?? "?")" }
            problems.append("console: " + args.joined(separator: " "))
        case "Runtime.exceptionThrown":
            let details = params["exceptionDetails"] as? [String: Any] ?? [:]
            let exception = details["exception"] as? [String: Any] ?? [:]
            problems.append("exception: \(details["text"] ?? "") \(exception["description"] ?? "")")
        case "Log.entryAdded":
            let entry = params["entry"] as? [String: Any] ?? [:]
            if entry["level"] as? String == "error" {
                problems.append("log/\(entry["source"] ?? "?"): \(entry["text"] ?? "") \(entry["url"] ?? "")")
            }
        default:
            break
        }
    }

    /// Evaluates `expression` in the page (promises awaited); returns its value.
    @discardableResult
    func evaluate(_ expression: String) async throws -> Any? {
        let r = try await call("Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true])
        if let details = r["exceptionDetails"] { throw HubTestError("evaluating \(expression): \(details)") }
        return (r["result"] as? [String: Any])?["value"]
    }

    /// Polls `expression` (every 20 ms, bounded) until it is true.
    func waitUntil(_ expression: String, timeout: Duration = .seconds(10)) async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if try await evaluate(expression) as? Bool == true { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await evaluate(expression) as? Bool == true
    }

    /// A PNG of the whole page as it is now (beyond the window when it is taller).
    func screenshot() async throws -> Data {
        let size = try await evaluate("[window.innerWidth, document.documentElement.scrollHeight]") as? [Int]
        var params: [String: Any] = ["format": "png"]
        if let size, size.count == 2 {
            params["captureBeyondViewport"] = true
            params["clip"] = ["x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1]
        }
        let r = try await call("Page.captureScreenshot", params)
        guard let base64 = r["data"] as? String, let png = Data(base64Encoded: base64) else {
            throw HubTestError("no screenshot data")
        }
        return png
    }

    /// Asks the browser to close (it exits; the caller still stops it by PID), then
    /// closes this connection.
    func close() async {
        if let data = try? JSONSerialization.data(withJSONObject: ["id": 999_999, "method": "Browser.close"] as [String: Any]) {
            try? await ws.send(text: String(decoding: data, as: UTF8.self))
        }
        await ws.close()
    }
}
