import Glibc
import Logging
import TorusHTTP

/// The hub's page: `GET /` serves `index.html` and `GET /dashboard/*` the other files
/// of the dashboard folder, through TorusHTTP's static-file route (opened through the
/// ring, confined to the folder with `openat2`). A plain namespace.
enum HubDashboardPage {
    /// The SwiftPM resource bundle of TorusHub (`resources: [.copy("Dashboard")]`).
    static let bundleName = "Torus_TorusHub.resources"

    /// Adds the page's routes. A configured folder that cannot be served throws; when
    /// the shipped files are not found the hub runs without the page (logged).
    static func install(into router: inout HTTPRouter, configuration: HubDashboardConfiguration,
                        logger: Logger) throws {
        guard configuration.servesPage else { return }
        guard let root = configuration.root ?? shippedRoot() else {
            logger.warning("dashboard files not found (no \(bundleName)/Dashboard next to the executable); GET / is 404")
            return
        }
        try router.file("/", named: "index.html", root: root)
        try router.files("/dashboard", root: root)
        logger.debug("dashboard served", metadata: ["root": "\(root)"])
    }

    /// Where the shipped files are: the resource bundle next to the running
    /// executable (`swift build`, `swift test`, an installed binary copied with its
    /// bundle), else the source tree this module was compiled from (a fresh clone).
    static func shippedRoot() -> String? {
        var candidates: [String] = []
        if let exe = executablePath(), let slash = exe.lastIndex(of: "/") {
            candidates.append(String(exe[..<slash]) + "/" + bundleName + "/Dashboard")
        }
        let source = #filePath
        if let slash = source.lastIndex(of: "/") { candidates.append(String(source[..<slash]) + "/Dashboard") }
        return candidates.first { access($0 + "/index.html", R_OK) == 0 }
    }

    /// `/proc/self/exe`, resolved.
    private static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
