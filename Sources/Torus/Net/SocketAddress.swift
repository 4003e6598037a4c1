import CLiburing

/// An IPv4, IPv6 or Unix-domain socket address.
public enum SocketAddress: Sendable, Hashable, CustomStringConvertible {
    case ipv4(host: String, port: UInt16)
    case ipv6(host: String, port: UInt16)
    case unix(path: String)

    /// Parses a numeric host ("127.0.0.1", "::1", "localhost") and a port.
    public static func tcp(_ host: String, _ port: UInt16) throws(IOError) -> SocketAddress {
        let h = host == "localhost" ? "127.0.0.1" : host
        if h.contains(":") {
            var a = in6_addr()
            guard inet_pton(AF_INET6, h, &a) == 1 else { throw IOError(errno: EINVAL, "address \(host)") }
            return .ipv6(host: h, port: port)
        }
        var a = in_addr()
        guard inet_pton(AF_INET, h, &a) == 1 else { throw IOError(errno: EINVAL, "address \(host)") }
        return .ipv4(host: h, port: port)
    }

    public var description: String {
        switch self {
        case .ipv4(let h, let p): "\(h):\(p)"
        case .ipv6(let h, let p): "[\(h)]:\(p)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// The address without the port (a Unix socket's path): what limits per source
    /// address count by.
    public var host: String {
        switch self {
        case .ipv4(let h, _), .ipv6(let h, _): h
        case .unix(let path): path
        }
    }

    public var port: UInt16? {
        switch self {
        case .ipv4(_, let p), .ipv6(_, let p): p
        case .unix: nil
        }
    }

    var family: Int32 {
        switch self {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        case .unix: AF_UNIX
        }
    }

    /// Writes the address into `storage`; returns its length.
    func write(to storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        storage.initialize(to: sockaddr_storage())
        let raw = UnsafeMutableRawPointer(storage)
        switch self {
        case .ipv4(let host, let port):
            let sin = raw.assumingMemoryBound(to: sockaddr_in.self)
            sin.pointee.sin_family = sa_family_t(AF_INET)
            sin.pointee.sin_port = port.bigEndian
            _ = inet_pton(AF_INET, host, &sin.pointee.sin_addr)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case .ipv6(let host, let port):
            let sin6 = raw.assumingMemoryBound(to: sockaddr_in6.self)
            sin6.pointee.sin6_family = sa_family_t(AF_INET6)
            sin6.pointee.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, host, &sin6.pointee.sin6_addr)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        case .unix(let path):
            let sun = raw.assumingMemoryBound(to: sockaddr_un.self)
            sun.pointee.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8.prefix(107))
            withUnsafeMutableBytes(of: &sun.pointee.sun_path) { dst in
                for (i, b) in bytes.enumerated() { dst[i] = b }
                dst[bytes.count] = 0
            }
            return socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        }
    }

    /// Reads an address the kernel filled in.
    init?(_ storage: UnsafePointer<sockaddr_storage>) {
        let raw = UnsafeRawPointer(storage)
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            var sin = raw.load(as: sockaddr_in.self)
            var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &sin.sin_addr, &buf, socklen_t(buf.count))
            self = .ipv4(host: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                         port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            var sin6 = raw.load(as: sockaddr_in6.self)
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &sin6.sin6_addr, &buf, socklen_t(buf.count))
            self = .ipv6(host: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                         port: UInt16(bigEndian: sin6.sin6_port))
        case AF_UNIX:
            var sun = raw.load(as: sockaddr_un.self)
            let path = withUnsafeBytes(of: &sun.sun_path) { p in
                String(decoding: p.prefix { $0 != 0 }, as: UTF8.self)
            }
            self = .unix(path: path)
        default:
            return nil
        }
    }

    /// The local address of a bound socket (`getsockname`).
    static func local(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return SocketAddress(&storage)
    }

    /// The peer address of a connected socket (`getpeername`).
    static func peer(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return SocketAddress(&storage)
    }
}
