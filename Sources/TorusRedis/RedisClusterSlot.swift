/// Which of the 16,384 hash slots of a Redis Cluster a key belongs to, as the
/// Redis Cluster specification computes it: `CRC16(key) mod 16384`, with CRC16 the
/// XMODEM variant (polynomial 0x1021, initial value 0, no reflection).
///
/// Hash tags: when the key holds a `{`, and a `}` follows it with at least one byte
/// between, only the bytes between the first `{` and the first `}` after it are
/// hashed, so `{user1000}.following` and `{user1000}.followers` share a slot.
/// `foo{}{bar}` hashes whole (the first tag is empty), `foo{{bar}}zap` hashes
/// `{bar`, and `foo{bar}{zap}` hashes `bar`.
///
/// A plain namespace; pure functions, any thread.
public enum RedisClusterSlot {
    /// How many hash slots a cluster has.
    public static let count = 16384

    /// The slot of `key` (0..<16384).
    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of(bytes: $0) }
    }

    /// The slot of a binary key (0..<16384).
    public static func of(_ key: [UInt8]) -> Int {
        key.withUnsafeBufferPointer { of(bytes: $0) }
    }

    /// The slot of the key in `bytes`.
    public static func of(bytes key: UnsafeBufferPointer<UInt8>) -> Int {
        let hashed = hashedPart(of: key)
        return Int(crc16(UnsafeBufferPointer(rebasing: key[hashed])) & 0x3FFF)
    }

    /// The range of `key` that is hashed: the hash tag's content, or all of it.
    static func hashedPart(of key: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return 0..<key.count }
        guard let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 else {
            return 0..<key.count
        }
        return (open + 1)..<close
    }

    /// CRC16-XMODEM (CCITT polynomial 0x1021, initial 0), the cluster's key hash.
    public static func crc16(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// CRC16-XMODEM of a byte array.
    public static func crc16(_ bytes: [UInt8]) -> UInt16 {
        bytes.withUnsafeBufferPointer { crc16($0) }
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
