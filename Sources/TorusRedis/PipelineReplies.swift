import Torus

/// The async face of a pipeline, shared by connections and cluster clients: sends
/// `count` commands in one turn of `loop` (`send(i, complete)` sends the `i`th) and
/// returns their replies or errors in order, once the last one is in. Any task.
func gatherReplies(on loop: EventLoop, count: Int,
                   _ send: @escaping @Sendable (Int, @escaping (Result<RESPValue, RedisError>) -> Void) -> Void)
    async -> [Result<RESPValue, RedisError>] {
    guard count > 0 else { return [] }
    let results: [Result<RESPValue, RedisError>] = await withCheckedContinuation { continuation in
        loop.runOnLoop {
            var results = [Result<RESPValue, RedisError>](repeating: .failure(.timeout), count: count)
            var left = count
            for i in 0..<count {
                send(i) { reply in
                    results[i] = reply
                    left -= 1
                    if left == 0 { continuation.resume(returning: results) }
                }
            }
        }
    }
    taskResumedByLoop()  // the replies were made on the loop (see TaskHandoff)
    return results
}
