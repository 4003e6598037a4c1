import Glibc
import TorusHub

/// The simulation's entries in the hub's credential file: a secret per simulated
/// router, and one admin token for the page whose plaintext is kept beside the file
/// (`FILE.demo-token`, mode 0600) so that each run does not add another.
enum SimCredentials {
    /// Adds what is missing; returns the admin token.
    static func prepare(path: String, ids: [String]) throws -> String {
        var store = access(path, F_OK) == 0 ? try HubCredentials.load(path: path) : HubCredentials()
        for id in ids where store.routers[id] == nil { store.routers[id] = HubCredentials.newSecret() }
        let tokenPath = path + ".demo-token"
        let token: String
        if let kept = read(tokenPath), store.grant(forToken: kept)?.allows(.admin) == true {
            token = kept
        } else {
            let fresh = HubCredentials.newToken()
            store.tokens[fresh.hash] = .init(routers: nil, rights: ["admin"])
            try write(tokenPath, fresh.token)
            token = fresh.token
        }
        try store.write(path: path)
        return token
    }

    private static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let token = line.trimmingPrefix(" ").split(separator: "\n").first.map(String.init) ?? ""
        return token.isEmpty ? nil : token
    }

    private static func write(_ path: String, _ token: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SimError("cannot write \(path): errno \(errno)") }
        defer { close(fd) }
        let line = Array((token + "\n").utf8)
        guard line.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw SimError("cannot write \(path): errno \(errno)")
        }
    }
}

struct SimError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
