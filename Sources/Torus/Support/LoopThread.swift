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

    /// Starts a thread running `body`. Throws when the system refuses a thread
    /// (`EAGAIN`: the process or its container is at its thread or pid limit).
    static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(IOError) -> LoopThread {
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
        guard rc == 0 else {
            // The thread never ran: take back the reference it would have consumed.
            Unmanaged<LoopThread>.fromOpaque(box).release()
            throw IOError(errno: rc, "pthread_create (\(t.name))")
        }
        return t
    }

    func join() { pthread_join(thread, nil) }

    /// Starts a thread nobody joins: detached, so its stack is freed when it ends
    /// (a joinable thread never joined keeps it mapped for the life of the process).
    static func detached(name: String, _ body: @escaping @Sendable () -> Void) {
        do {
            pthread_detach(try start(name: name, body).thread)
        } catch {
            // No thread to be had: run it on the calling thread rather than lose it.
            body()
        }
    }
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
