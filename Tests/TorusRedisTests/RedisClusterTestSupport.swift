import Testing
import Torus
import TorusTestSupport

/// Runs `body` with a fresh three-master cluster and a one-loop group; the group's
/// ledger must be quiescent at the end, and the cluster is stopped either way.
func withRedisCluster(sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: (RedisClusterServer, EventLoop) async throws -> Void) async throws {
    let cluster = try await RedisClusterServer()
    do {
        try await withGroup(loops: 1, sourceLocation: sourceLocation) { group in
            try await body(cluster, group.loops[0])
        }
    } catch {
        await cluster.stop()
        throw error
    }
    await cluster.stop()
}
