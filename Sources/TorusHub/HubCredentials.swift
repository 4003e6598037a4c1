import Crypto
import Foundation
import Glibc
import Synchronization

/// The hub's credential store: a secret per router (kept as the secret, because the
/// hub computes HMACs with it) and API tokens (kept only as SHA-256 hashes, because
/// the hub only verifies them: see `HubRight` for what a grant's rights mean).
///
/// The file is JSON:
///
/// ```json
/// {
///   "routers": { "r1": "<base64 secret, 32 bytes>" },
///   "tokens": { "<sha256 hex of the token>": { "routers": "*", "rights": ["admin"] } }
/// }
/// ```
///
/// `routers` of a token is `"*"` (every router) or a list of ids. A plain value type.
public struct HubCredentials: Sendable, Equatable {
    /// What a token may reach.
    public struct TokenGrant: Sendable, Equatable {
        /// nil: every router.
        public var routers: [String]?
        public var rights: [String]

        public init(routers: [String]?, rights: [String]) {
            self.routers = routers
            self.rights = rights
        }
    }

    /// Router id → secret.
    public var routers: [String: [UInt8]]
    /// SHA-256 hex of a token → its grant.
    public var tokens: [String: TokenGrant]

    public init(routers: [String: [UInt8]] = [:], tokens: [String: TokenGrant] = [:]) {
        self.routers = routers
        self.tokens = tokens
    }

    /// Bytes of a generated router secret.
    public static let secretSize = 32

    /// The proof a router sends in AUTH: HMAC-SHA256(secret, nonce ‖ id).
    public static func proof(secret: [UInt8], nonce: [UInt8], id: String) -> [UInt8] {
        var message = nonce
        message += Array(id.utf8)
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
    }

    /// True when `proof` is the router's proof for `nonce` (compared in constant time).
    public func verify(id: String, nonce: [UInt8], proof: [UInt8]) -> Bool {
        guard let secret = routers[id] else { return false }
        return ConstantTime.equals(Self.proof(secret: secret, nonce: nonce, id: id), proof)
    }

    /// `count` random bytes from swift-crypto's generator (BoringSSL's `RAND_bytes`: a
    /// per-thread generator seeded from the kernel). The standard library's generator
    /// makes one `getrandom` system call per eight bytes, four per handshake nonce.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        return SymmetricKey(size: SymmetricKeySize(bitCount: count * 8)).withUnsafeBytes { Array($0) }
    }

    /// Standard base64, as the file holds secrets.
    public static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// A new router secret.
    public static func newSecret() -> [UInt8] { randomBytes(secretSize) }

    /// A new API token (URL-safe text) and the hash the store keeps of it.
    public static func newToken() -> (token: String, hash: String) {
        let token = "thk_" + Data(randomBytes(32)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return (token, tokenHash(token))
    }

    /// SHA-256 hex of a token: how the store names it.
    public static func tokenHash(_ token: String) -> String { tokenHash(utf8: token.utf8) }

    /// SHA-256 hex of a token given as its UTF-8 bytes (a request's header, unsplit):
    /// one allocation, the hex string (every request with a token pays this).
    static func tokenHash(utf8 bytes: some Collection<UInt8>) -> String {
        var hasher = SHA256()
        if bytes.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Array(bytes))
        }
        let digest = hasher.finalize()
        return String(unsafeUninitializedCapacity: 2 * SHA256.byteCount) { out in
            func hex(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x57 + nibble }  // 0-9, a-f
            var i = 0
            for byte in digest {
                out[i] = hex(byte >> 4)
                out[i + 1] = hex(byte & 0x0F)
                i += 2
            }
            return i
        }
    }

    /// The grant of `token`, if the store knows it (hashes compared in constant time).
    public func grant(forToken token: String) -> TokenGrant? {
        grant(forHash: Self.tokenHash(token))
    }

    /// The grant of the token whose hash is `hash`: every stored hash is compared,
    /// each in constant time, so the time taken says nothing about which matched.
    public func grant(forHash hash: String) -> TokenGrant? {
        entry(forHash: hash)?.grant
    }

    /// The stored hash (the store's own string, so whoever keeps it shares its
    /// storage) and grant of the token whose hash is `hash`; compared as `grant(forHash:)`.
    func entry(forHash hash: String) -> (hash: String, grant: TokenGrant)? {
        var found: (hash: String, grant: TokenGrant)?
        for (key, grant) in tokens where ConstantTime.equals(key.utf8, hash.utf8) { found = (key, grant) }
        return found
    }

    // MARK: The file

    /// Why a credential file was not accepted.
    public struct FileError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Parses the JSON form.
    public init(json: [UInt8]) throws {
        guard let root = try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw FileError(description: "the credential file is not a JSON object")
        }
        var routers: [String: [UInt8]] = [:]
        for (id, value) in root["routers"] as? [String: Any] ?? [:] {
            guard HubFrame.isValidID(id) else { throw FileError(description: "invalid router id \"\(id)\"") }
            guard let text = value as? String, let secret = Data(base64Encoded: text), secret.count >= 16 else {
                throw FileError(description: "router \(id): the secret must be base64 of at least 16 bytes")
            }
            routers[id] = Array(secret)
        }
        var tokens: [String: TokenGrant] = [:]
        for (hash, value) in root["tokens"] as? [String: Any] ?? [:] {
            guard hash.utf8.count == 64, hash.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }),
                  let entry = value as? [String: Any] else {
                throw FileError(description: "tokens are keyed by the lowercase SHA-256 hex of the token")
            }
            let scope: [String]?
            switch entry["routers"] {
            case let all as String where all == "*": scope = nil
            case let list as [String]: scope = list
            default: throw FileError(description: "token \(hash.prefix(8))…: routers must be \"*\" or a list of ids")
            }
            let rights = entry["rights"] as? [String] ?? []
            if let unknown = rights.first(where: { HubRight(rawValue: $0) == nil }) {
                throw FileError(description: "token \(hash.prefix(8))…: unknown right \"\(unknown)\" (read, command, admin)")
            }
            tokens[hash] = TokenGrant(routers: scope, rights: rights)
        }
        self.init(routers: routers, tokens: tokens)
    }

    /// The JSON form (sorted keys, so rewrites are stable).
    public var json: [UInt8] {
        var tokenObjects: [String: Any] = [:]
        for (hash, grant) in tokens {
            tokenObjects[hash] = ["routers": grant.routers.map { $0 as Any } ?? "*", "rights": grant.rights]
        }
        let root: [String: Any] = [
            "routers": routers.mapValues { Data($0).base64EncodedString() },
            "tokens": tokenObjects,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        return Array(data) + [0x0A]
    }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws -> HubCredentials {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileError(description: "cannot read \(path)")
        }
        return try HubCredentials(json: Array(data))
    }

    /// Writes the store to `path` with mode 0600 (through a temporary file renamed
    /// over it, so a reader never sees half a file). With `exclusive`, fails when
    /// the file exists.
    public func write(path: String, exclusive: Bool = false) throws {
        let temporary = exclusive ? path : path + ".tmp"
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        let fd = open(temporary, flags, 0o600)
        guard fd >= 0 else { throw FileError(description: "cannot create \(temporary): errno \(errno)") }
        let bytes = json
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fchmod(fd, 0o600)
        close(fd)
        guard written == bytes.count else { throw FileError(description: "short write to \(temporary)") }
        if !exclusive, rename(temporary, path) != 0 {
            throw FileError(description: "cannot replace \(path): errno \(errno)")
        }
    }
}

/// The credentials in force, shared by every loop: links read it when they check a
/// proof, a reload swaps it. Any thread; the lock is held for a copy only.
final class CredentialStore: Sendable {
    private let current: Mutex<HubCredentials>

    init(_ credentials: HubCredentials) {
        current = Mutex(credentials)
    }

    var credentials: HubCredentials { current.withLock { $0 } }

    func secret(for id: String) -> [UInt8]? { current.withLock { $0.routers[id] } }

    func replace(with credentials: HubCredentials) { current.withLock { $0 = credentials } }
}
