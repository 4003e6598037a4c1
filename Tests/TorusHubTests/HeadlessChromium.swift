import Foundation
import TorusTestSupport

/// Headless Chromium started by a test: `--headless=new` with a fresh profile in a
/// temporary folder and DevTools on a port of its choosing (read from its
/// `DevTools listening on ws://…` line). Stopped by PID; the folder is removed.
struct HeadlessChromium {
    let process: ChildProcess
    let profile: String
    /// The browser's DevTools WebSocket (`ws://127.0.0.1:PORT/devtools/browser/ID`).
    let devToolsURL: String

    /// The browser on this machine, if any (`scripts/setup-deps.sh` installs `chromium`).
    static let executable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
                return "\(dir)/\(name)"
            }
        }
        return nil
    }()

    static var isInstalled: Bool {
        if executable == nil {
            print("DashboardBrowserTests: SKIPPED: chromium is not installed (scripts/setup-deps.sh installs it)")
        }
        return executable != nil
    }

    static func launch(width: Int = 1400, height: Int = 1000) async throws -> HeadlessChromium {
        guard let executable else { throw HubTestError("chromium is not installed") }
        let profile = NSTemporaryDirectory() + "torus-chromium-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: profile, withIntermediateDirectories: true)
        var arguments = ["--headless=new", "--remote-debugging-port=0", "--user-data-dir=\(profile)",
                         "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-extensions", "--disable-background-networking", "--disable-sync",
                         "--window-size=\(width),\(height)", "about:blank"]
        // The sandbox needs an unprivileged user; tests in containers often run as root.
        if getuid() == 0 { arguments.insert("--no-sandbox", at: 0) }
        let process: ChildProcess
        do {
            process = try ChildProcess(executable, arguments)
        } catch {
            try? FileManager.default.removeItem(atPath: profile)
            throw error
        }
        let marker = "DevTools listening on "
        guard let line = await process.waitForLine(containing: marker, timeout: .seconds(30)),
              let range = line.range(of: marker) else {
            let output = process.text
            _ = await process.stop(timeout: .seconds(5))
            try? FileManager.default.removeItem(atPath: profile)
            throw HubTestError("chromium did not start DevTools:\n\(output.suffix(2000))")
        }
        return HeadlessChromium(process: process, profile: profile,
                                devToolsURL: String(line[range.upperBound...]).trimmingCharacters(in: .whitespaces))
    }

    /// Stops the browser (SIGTERM, SIGKILL after 10 s) and removes its profile.
    func stop() async {
        _ = await process.stop(signal: SIGTERM, timeout: .seconds(10))
        try? FileManager.default.removeItem(atPath: profile)
    }
}
