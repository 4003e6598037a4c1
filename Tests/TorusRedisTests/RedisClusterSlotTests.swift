import Testing
import Torus
@testable import TorusRedis

@Suite("Redis Cluster key slots")
struct RedisClusterSlotTests {
    /// CRC16-XMODEM's check value, and slots a real server gives (`CLUSTER KEYSLOT`).
    @Test func knownSlots() {
        #expect(RedisClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisClusterSlot.of("foo") == 12182)
        #expect(RedisClusterSlot.of("bar") == 5061)
        #expect(RedisClusterSlot.of("") == 0)
        #expect(RedisClusterSlot.of("ch") == 13271)
        #expect(RedisClusterSlot.of(Array("foo".utf8)) == 12182)
    }

    /// Hash tags exactly as the specification reads them.
    @Test func hashTags() {
        #expect(RedisClusterSlot.of("{user1000}.following") == RedisClusterSlot.of("{user1000}.followers"))
        #expect(RedisClusterSlot.of("{user1000}.following") == RedisClusterSlot.of("user1000"))
        #expect(RedisClusterSlot.of("foo{}{bar}") == Int(RedisClusterSlot.crc16(Array("foo{}{bar}".utf8)) & 0x3FFF))
        #expect(RedisClusterSlot.of("foo{{bar}}zap") == RedisClusterSlot.of("{bar"))
        #expect(RedisClusterSlot.of("foo{{bar}}zap") == Int(RedisClusterSlot.crc16(Array("{bar".utf8)) & 0x3FFF))
        #expect(RedisClusterSlot.of("foo{bar}{zap}") == RedisClusterSlot.of("bar"))
        #expect(RedisClusterSlot.of("foo{bar") == Int(RedisClusterSlot.crc16(Array("foo{bar".utf8)) & 0x3FFF))
        #expect(RedisClusterSlot.of("foo}bar{") == Int(RedisClusterSlot.crc16(Array("foo}bar{".utf8)) & 0x3FFF))
        #expect(RedisClusterSlot.of("{}") == Int(RedisClusterSlot.crc16(Array("{}".utf8)) & 0x3FFF))
    }

    /// Redirect replies, read; anything else is not one.
    @Test func redirects() throws {
        let from = SocketAddress.ipv4(host: "10.0.0.1", port: 7000)
        let moved = try #require(RedisClusterRedirect("MOVED 3999 127.0.0.1:6381", from: from))
        #expect(moved.kind == .moved && moved.slot == 3999 && moved.address == .ipv4(host: "127.0.0.1", port: 6381))
        let ask = try #require(RedisClusterRedirect("ASK 1 :6380", from: from))
        #expect(ask.kind == .ask && ask.address == .ipv4(host: "10.0.0.1", port: 6380))
        let six = try #require(RedisClusterRedirect("MOVED 2 ::1:6380", from: from))
        #expect(six.address == .ipv6(host: "::1", port: 6380))
        for bad in ["MOVED", "MOVED 16384 127.0.0.1:1", "MOVED x 127.0.0.1:1", "ASK 1 127.0.0.1", "ASK 1 127.0.0.1:0",
                    "ERR MOVED 1 127.0.0.1:1", "MOVED 1 host.example:1", "MOVED 1 127.0.0.1:99999"] {
            #expect(RedisClusterRedirect(bad, from: from) == nil, "\(bad)")
        }
    }

    /// CLUSTER SHARDS over RESP3 and RESP2, CLUSTER SLOTS; malformed replies are typed errors.
    @Test func slotMapReplies() throws {
        func node(_ port: Int64, _ role: String, _ id: String) -> RESPValue {
            .map([RESPPair(.bulkString(Array("id".utf8)), .bulkString(Array(id.utf8))),
                  RESPPair(.bulkString(Array("port".utf8)), .integer(port)),
                  RESPPair(.bulkString(Array("ip".utf8)), .bulkString(Array("127.0.0.1".utf8))),
                  RESPPair(.bulkString(Array("endpoint".utf8)), .bulkString(Array("?".utf8))),
                  RESPPair(.bulkString(Array("role".utf8)), .bulkString(Array(role.utf8)))])
        }
        func shard(_ slots: [Int64], _ nodes: [RESPValue]) -> RESPValue {
            .map([RESPPair(.bulkString(Array("slots".utf8)), .array(slots.map { .integer($0) })),
                  RESPPair(.bulkString(Array("nodes".utf8)), .array(nodes))])
        }
        let reply = RESPValue.array([shard([0, 99, 200, 16383], [node(7001, "replica", "r"), node(7000, "master", "a")]),
                                     shard([100, 199], [node(7002, "master", "b")])])
        let map = try RedisClusterSlotMap.parse(shards: reply, host: "10.0.0.9")
        #expect(map.assignedSlots == 16384)
        #expect(map.address(forSlot: 0) == .ipv4(host: "127.0.0.1", port: 7000))
        #expect(map.master(forSlot: 150)?.id == "b")
        #expect(map.address(forSlot: 16383) == .ipv4(host: "127.0.0.1", port: 7000))
        #expect(map.masters.count == 2)

        // RESP2: flat arrays of names and values.
        let flat = RESPValue.array([.array([.bulkString(Array("slots".utf8)), .array([.integer(5), .integer(6)]),
                                            .bulkString(Array("nodes".utf8)),
                                            .array([.array([.bulkString(Array("port".utf8)), .integer(7003),
                                                            .bulkString(Array("endpoint".utf8)), .bulkString(Array("".utf8)),
                                                            .bulkString(Array("role".utf8)), .bulkString(Array("master".utf8))])])])])
        let fromFlat = try RedisClusterSlotMap.parse(shards: flat, host: "10.0.0.9")
        #expect(fromFlat.address(forSlot: 5) == .ipv4(host: "10.0.0.9", port: 7003))
        #expect(fromFlat.address(forSlot: 7) == nil)

        let slots = RESPValue.array([.array([.integer(0), .integer(16383),
                                             .array([.bulkString(Array("127.0.0.1".utf8)), .integer(7000),
                                                     .bulkString(Array("id0".utf8))])])])
        #expect(try RedisClusterSlotMap.parse(slots: slots, host: "x").master(forSlot: 77)?.id == "id0")

        let malformed: [RESPValue] = [
            .integer(1), .array([.integer(1)]), .array([shard([0], [node(7000, "master", "a")])]),
            .array([shard([5, 2], [node(7000, "master", "a")])]), .array([shard([0, 16384], [node(7000, "master", "a")])]),
            .array([shard([0, 1], [node(70000, "master", "a")])]), .array([shard([0, 1], [node(7000, "replica", "a")])]),
            .array([shard([0, 1], [.integer(3)])]),
        ]
        for reply in malformed {
            #expect(throws: RedisError.self) { try RedisClusterSlotMap.parse(shards: reply, host: "h") }
        }
        #expect(throws: RedisError.self) { try RedisClusterSlotMap.parse(slots: .array([.array([.integer(0)])]), host: "h") }
        #expect(throws: RedisError.self) {
            try RedisClusterSlotMap.parse(slots: .array([.array([.integer(0), .integer(1), .array([.null, .integer(1)])])]), host: "h")
        }
    }

    /// A MOVED moves one slot.
    @Test func assignOneSlot() {
        var map = RedisClusterSlotMap()
        let a = SocketAddress.ipv4(host: "127.0.0.1", port: 1)
        map.assign(slot: 42, to: a)
        #expect(map.address(forSlot: 42) == a && map.assignedSlots == 1 && map.slots(servedBy: a) == [42])
        map.assign(slot: 99999, to: a)
        #expect(map.assignedSlots == 1)
    }

    /// A server naming more masters than there are slots (40,000 MOVEDs, each to a new
    /// address) cannot overflow the map: masters without slots are dropped.
    @Test func manyMastersStayBounded() {
        var map = RedisClusterSlotMap()
        for i in 0..<40_000 {
            map.assign(slot: i % RedisClusterSlot.count, to: .ipv4(host: "10.0.\(i / 256 % 256).\(i % 256)", port: 1))
        }
        #expect(map.masters.count <= 2 * RedisClusterSlot.count)
        #expect(map.assignedSlots == RedisClusterSlot.count)
        #expect(map.address(forSlot: 39_999 % RedisClusterSlot.count) == .ipv4(host: "10.0.156.63", port: 1))
        #expect(map.slots(servedBy: .ipv4(host: "10.0.156.63", port: 1)) == [39_999 % RedisClusterSlot.count])
        #expect(map.slots(servedBy: .ipv4(host: "10.0.0.0", port: 1)).isEmpty)
    }
}
