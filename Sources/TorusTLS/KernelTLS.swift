import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Kernel TLS (the `tls` TCP upper-layer protocol): whether this machine offers it.
///
/// With kTLS, after the handshake the record layer would move into the kernel
/// (`setsockopt(TLS_TX / TLS_RX)` with the negotiated AES-GCM keys and record
/// sequence numbers), and the ring would send and receive plaintext on the socket.
/// Torus detects it at run time and otherwise keeps the records in user space with
/// ``TLSEngine``, which is what runs on kernels built without `CONFIG_TLS`.
///
/// The hand-off itself (the `setsockopt` calls) is not implemented: it cannot run on
/// this machine. What it needs from TLS is here: ``keys(of:)`` gives an established
/// TLS 1.3 AES-GCM connection's keys and IVs per direction, derived from the
/// application traffic secrets (which OpenSSL exposes only through the key-log
/// callback; an engine keeps them only when the kernel offers kTLS). OpenSSL's own
/// kTLS (`SSL_OP_ENABLE_KTLS`, built in when `OPENSSL_NO_KTLS` is unset, see
/// ``openSSLHasKernelTLS``) works only over a socket BIO, and the engine runs over
/// memory BIOs so that ciphertext stays in the ring's buffers. Two gaps remain for a
/// hand-off: OpenSSL 3.0 does not expose the record sequence numbers (a TLS 1.3
/// server has already sent its ticket records when the handshake ends, so its send
/// sequence is the number of tickets), and TLS 1.2 keys (from the master secret's
/// key block) are not derived.
public enum KernelTLS {
    /// What the probe found.
    public enum Availability: Sendable, Equatable {
        case available
        case unavailable(reason: String)
    }

    /// Probed once per process: a connected loopback TCP socket is asked for the
    /// `tls` ULP (`setsockopt(fd, SOL_TCP, TCP_ULP, "tls")`).
    public static let availability: Availability = probe()

    /// Whether the kernel accepts the `tls` ULP.
    public static var isAvailable: Bool { availability == .available }

    /// Whether the linked OpenSSL was built with kTLS support (it uses it only over
    /// socket BIOs, never with TorusTLS's memory BIOs).
    public static var openSSLHasKernelTLS: Bool { torus_openssl_has_ktls() == 1 }

    static func probe() -> Availability {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { return .unavailable(reason: "socket: errno \(errno)") }
        defer { Glibc.close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7f00_0001).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(listener, pointer, length) == 0 && listen(listener, 1) == 0
                    && getsockname(listener, pointer, &length) == 0
            }
        }
        guard bound else { return .unavailable(reason: "loopback listener: errno \(errno)") }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0 else { return .unavailable(reason: "socket: errno \(errno)") }
        defer { Glibc.close(client) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) == 0 }
        }
        guard connected else { return .unavailable(reason: "loopback connect: errno \(errno)") }
        let accepted = accept(listener, nil, nil)
        if accepted >= 0 { Glibc.close(accepted) }
        let result = torus_tcp_ulp_tls(client)
        if result == 0 { return .available }
        if result == -ENOENT {
            return .unavailable(reason: "the kernel has no tls ULP (ENOENT: built without CONFIG_TLS)")
        }
        return .unavailable(reason: "setsockopt(TCP_ULP, \"tls\"): \(String(cString: strerror(-result)))")
    }
}

/// An established connection's AES-GCM keys, as `TLS_TX` / `TLS_RX` take them.
public struct KernelTLSKeys: Sendable, Equatable {
    /// One direction's key and 12-byte IV (the kernel's 4-byte salt, then 8-byte IV).
    public struct Direction: Sendable, Equatable {
        public var key: [UInt8]
        public var iv: [UInt8]
    }
    /// The cipher suite, e.g. "TLS_AES_128_GCM_SHA256".
    public var cipher: String
    /// What this side encrypts with.
    public var send: Direction
    /// What this side decrypts with.
    public var receive: Direction
}

extension KernelTLS {
    /// The AES-GCM keys of an established TLS 1.3 connection whose engine kept its
    /// traffic secrets; nil otherwise (TLS 1.2, ChaCha20, secrets not kept).
    public static func keys(of engine: TLSEngine) -> KernelTLSKeys? {
        guard case .established(let info) = engine.state, info.version == .tls13,
              let cipher = engine.cipherName,
              let client = engine.clientTrafficSecret, let server = engine.serverTrafficSecret else { return nil }
        let keyLength: Int
        let digest: OpaquePointer?
        switch cipher {
        case "TLS_AES_128_GCM_SHA256": (keyLength, digest) = (16, EVP_sha256())
        case "TLS_AES_256_GCM_SHA384": (keyLength, digest) = (32, EVP_sha384())
        default: return nil
        }
        guard let digest else { return nil }
        func direction(_ secret: [UInt8]) -> KernelTLSKeys.Direction? {
            guard let key = expandLabel(secret: secret, label: "key", length: keyLength, digest: digest),
                  let iv = expandLabel(secret: secret, label: "iv", length: 12, digest: digest) else { return nil }
            return KernelTLSKeys.Direction(key: key, iv: iv)
        }
        guard let clientKeys = direction(client), let serverKeys = direction(server) else { return nil }
        return engine.isServer
            ? KernelTLSKeys(cipher: cipher, send: serverKeys, receive: clientKeys)
            : KernelTLSKeys(cipher: cipher, send: clientKeys, receive: serverKeys)
    }

    /// HKDF-Expand-Label (RFC 8446 7.1) with an empty context, for outputs no longer
    /// than one hash: the first `length` bytes of HMAC(secret, HkdfLabel || 0x01).
    static func expandLabel(secret: [UInt8], label: String, length: Int, digest: OpaquePointer) -> [UInt8]? {
        let fullLabel = Array("tls13 \(label)".utf8)
        guard length <= Int(EVP_MD_get_size(digest)), fullLabel.count < 256 else { return nil }
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xff), UInt8(fullLabel.count)]
        info += fullLabel
        info += [0, 1] // empty context, then HKDF-Expand's block counter
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLength: UInt32 = 0
        let ok = secret.withUnsafeBytes { key in
            info.withUnsafeBufferPointer { data in
                out.withUnsafeMutableBufferPointer { md in
                    HMAC(digest, key.baseAddress, Int32(key.count), data.baseAddress, data.count,
                         md.baseAddress, &outLength) != nil
                }
            }
        }
        guard ok, Int(outLength) >= length else { return nil }
        return Array(out.prefix(length))
    }

    /// Bytes from hex digits; nil on anything else.
    static func bytes(hex: Substring) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        return out
    }
}
