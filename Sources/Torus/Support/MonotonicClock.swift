import CLiburing

/// Nanoseconds on `CLOCK_MONOTONIC`: the one clock for deadlines (idle, send, heartbeat
/// timeouts) and uptime. Safe from any thread.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot), never going backwards.
    @inline(__always)
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at zero for negative durations and at
    /// `Int64.max` for durations longer than that.
    public var nanoseconds: UInt64 {
        let (s, a) = components
        if s < 0 { return 0 }
        // Saturating at Int64.max (~292 years): a timeout meaning "never" stays the
        // longest rather than wrapping to a short one, and converts to Int64 safely.
        let limit = UInt64(Int64.max)
        let (whole, o1) = UInt64(s).multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, o2) = whole.addingReportingOverflow(UInt64(a / 1_000_000_000))
        return o1 || o2 || sum > limit ? limit : sum
    }
}
