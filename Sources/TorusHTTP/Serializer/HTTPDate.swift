#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// IMF-fixdate formatting (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Pure arithmetic: no Foundation, no locale, no allocation when writing into a buffer.
public enum HTTPDate {
    /// Length of an IMF-fixdate: always 29 bytes.
    public static let length = 29

    /// Writes the 29-byte IMF-fixdate for `epochSeconds` (seconds since 1970, UTC) to `out`,
    /// which must have room for ``length`` bytes. The caller owns `out`. Times outside
    /// years 0–9999 (a file's mtime can be anything) are clamped to them, so the
    /// arithmetic below never overflows.
    public static func write(epochSeconds unclamped: Int, to out: UnsafeMutablePointer<UInt8>) {
        let epochSeconds = min(max(unclamped, -62_167_219_200), 253_402_300_799)
        let days = epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400
        let secondOfDay = epochSeconds - days * 86_400
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday (index 4, Sunday = 0)

        let dayNames: StaticString = "SunMonTueWedThuFriSat"
        let monthNames: StaticString = "JanFebMarAprMayJunJulAugSepOctNovDec"
        let dn = dayNames.utf8Start + weekday * 3
        let mn = monthNames.utf8Start + (month - 1) * 3
        @inline(__always) func two(_ v: Int, _ at: Int) {
            out[at] = UInt8(truncatingIfNeeded: 48 + v / 10)
            out[at + 1] = UInt8(truncatingIfNeeded: 48 + v % 10)
        }
        out[0] = dn[0]; out[1] = dn[1]; out[2] = dn[2]
        out[3] = UInt8(ascii: ","); out[4] = UInt8(ascii: " ")
        two(day, 5)
        out[7] = UInt8(ascii: " ")
        out[8] = mn[0]; out[9] = mn[1]; out[10] = mn[2]
        out[11] = UInt8(ascii: " ")
        let y = min(max(year, 0), 9999)
        two(y / 100, 12); two(y % 100, 14)
        out[16] = UInt8(ascii: " ")
        two(secondOfDay / 3600, 17)
        out[19] = UInt8(ascii: ":")
        two(secondOfDay / 60 % 60, 20)
        out[22] = UInt8(ascii: ":")
        two(secondOfDay % 60, 23)
        out[25] = UInt8(ascii: " "); out[26] = UInt8(ascii: "G"); out[27] = UInt8(ascii: "M"); out[28] = UInt8(ascii: "T")
    }

    /// The IMF-fixdate for `epochSeconds` as a new `String` (allocates; not for hot paths).
    public static func string(epochSeconds: Int) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: length) { buffer in
            // Not from input: a temporary allocation of `length` (29) elements has a base address.
            write(epochSeconds: epochSeconds, to: buffer.baseAddress!)
            return String(decoding: buffer, as: UTF8.self)
        }
    }

    /// Current wall-clock time in whole seconds (coarse realtime clock: a vDSO read).
    public static func currentEpochSeconds() -> Int {
        var ts = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        #else
        clock_gettime(CLOCK_REALTIME, &ts)
        #endif
        return Int(ts.tv_sec)
    }
}

/// A cached `Date` header value, regenerated at most once per second.
///
/// It keeps the whole field line and the empty line after it, `Date: <value>\r\n\r\n`,
/// so a fixed response whose Date is its last field appends the end of its head in
/// one copy.
///
/// Memory: owns a 39-byte array, overwritten in place on regeneration (no allocation
/// after init as long as the cache is not copied while being updated). Not shared
/// between threads: keep one per event loop (it is a value type; `Sendable` only so it
/// can be moved into a loop).
public struct HTTPDateCache: Sendable {
    /// `Date: ` + the 29-byte value + CRLF + CRLF.
    @usableFromInline var line: [UInt8]
    /// The epoch second the cached value represents.
    public private(set) var cachedSecond: Int
    /// How many times the value was regenerated (for tests and metrics).
    public private(set) var regenerations: Int = 0

    /// Where the value starts in `line` (after `Date: `).
    @usableFromInline static let valueStart = 6
    /// The field line's length with its CRLF.
    @usableFromInline static let fieldLength = valueStart + HTTPDate.length + 2

    /// Creates a cache holding the current time.
    public init() {
        self.init(epochSeconds: HTTPDate.currentEpochSeconds())
    }

    /// Creates a cache holding `epochSeconds`.
    public init(epochSeconds: Int) {
        line = Array("Date: ".utf8) + [UInt8](repeating: 0, count: HTTPDate.length) + Array("\r\n\r\n".utf8)
        cachedSecond = epochSeconds
        format(epochSeconds)
    }

    private mutating func format(_ epochSeconds: Int) {
        // Not from input: `line` always holds `fieldLength + 2` elements, so it has a base address.
        line.withUnsafeMutableBufferPointer {
            HTTPDate.write(epochSeconds: epochSeconds, to: $0.baseAddress! + Self.valueStart)
        }
    }

    /// Makes the cache represent `epochSeconds`; formats only when the second changed.
    public mutating func update(epochSeconds: Int) {
        guard epochSeconds != cachedSecond else { return }
        cachedSecond = epochSeconds
        regenerations += 1
        format(epochSeconds)
    }

    /// Refreshes from the coarse realtime clock (cheap: one vDSO call, formatting at most
    /// once per second).
    public mutating func update() {
        update(epochSeconds: HTTPDate.currentEpochSeconds())
    }

    /// Appends the cached 29-byte date (no refresh) to `out`.
    @inlinable
    public func append(to out: inout [UInt8]) {
        out.appendBytes(of: line, Self.valueStart..<Self.valueStart + HTTPDate.length)
    }

    /// Appends the field line `Date: <value>\r\n`, and the empty line that ends the
    /// head when `endingHead`.
    @inlinable
    func appendField(to out: inout [UInt8], endingHead: Bool) {
        out.appendBytes(of: line, 0..<(endingHead ? Self.fieldLength + 2 : Self.fieldLength))
    }

    /// The cached date as a `String` (allocates).
    public var string: String { String(decoding: line[Self.valueStart..<Self.valueStart + HTTPDate.length], as: UTF8.self) }
}
