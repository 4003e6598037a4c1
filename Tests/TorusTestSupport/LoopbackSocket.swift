import Glibc
import Torus

/// A blocking TCP socket connected to `127.0.0.1:port`: a real peer outside any
/// loop, for tests that watch what the kernel does from the other side. The caller
/// owns (and closes) the descriptor. `receiveTimeout`, when given, bounds each read.
public func blockingLoopbackSocket(port: UInt16, receiveTimeout seconds: Int? = nil) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw IOError(errno: errno, "socket") }
    if let seconds {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    let rc = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        let e = errno
        Glibc.close(fd)
        throw IOError(errno: e, "connect")
    }
    return fd
}
