import CLiburing
import Glibc

/// Memory figures of a process, read from `/proc` (for metrics, stats lines and soak
/// tests: the ledger counts buffers, this counts what the kernel charges).
public enum ProcessMemory {
    /// Resident set size in bytes of `pid` ("self" by default), from /proc/PID/statm.
    public static func residentBytes(pid: String = "self") -> Int {
        let fd = open("/proc/\(pid)/statm", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return 0 }
        let fields = buffer[0..<n].split(separator: 0x20)
        guard fields.count >= 2, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
