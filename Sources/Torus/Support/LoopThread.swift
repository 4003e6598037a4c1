import CLiburing

/// A dedicated OS thread running one closure (an event loop's run loop, a blocking
/// pool worker). Joinable; the closure owns everything it captures.
final class LoopThread: @unchecked Sendable {
    private var thread = pthread_t()
    /// Dropped once it has run: the body usually captures the thread's owner, and
    /// the owner holds the thread (to join it), so keeping it would be a cycle.
    private var body: (() -> Void)?
    private var name = ""

    private init(body: @escaping () -> Void) { self.body = body }

    static func start(name: String, _ body: @escaping @Sendable () -> Void) -> LoopThread {
        let t = LoopThread(body: body)
        t.name = String(name.prefix(15))
        let box = Unmanaged.passRetained(t).toOpaque()
        let rc = pthread_create(&t.thread, nil, { arg in
            guard let arg else { return nil }
            let t = Unmanaged<LoopThread>.fromOpaque(arg).takeRetainedValue()
            torus_set_thread_name(t.name)
            t.body?()
            t.body = nil
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return t
    }

    func join() { pthread_join(thread, nil) }
}

/// A counting semaphore on a mutex and condition variable (for start-up hand-shakes
/// and joins; never used on a hot path).
final class Semaphore: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var value = 0

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    func signal() {
        pthread_mutex_lock(&mutex)
        value += 1
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
    }

    func wait() {
        pthread_mutex_lock(&mutex)
        while value == 0 { pthread_cond_wait(&cond, &mutex) }
        value -= 1
        pthread_mutex_unlock(&mutex)
    }
}
