// libFuzzer harness for TorusTLS's engine (TLSEngine over OpenSSL's memory BIOs, in
// Sources/TorusTLS). Compiled by scripts/fuzz.sh together with the engine's sources that
// do not need the Torus runtime; not part of the SwiftPM package. OpenSSL itself is not
// instrumented: what is fuzzed is the engine's handling of whatever OpenSSL reports.
//
// Input: byte 0 picks the mode, byte 1 how the bytes are cut into pieces; the rest is
// the peer's byte stream.
// - mode 0, a server meeting a client: the stream is fed as the client's ciphertext
//   from the first byte (ClientHello parsing, the plaintext-HTTP check, alerts).
// - mode 1, a client meeting a server: a client engine sends its ClientHello, then
//   the stream is fed as the server's answer.
// - mode 2, records after a handshake: a client and a server engine complete a real
//   handshake in memory, the client encrypts a known message, the stream is XORed
//   onto those records (the rest of it appended), and the server reads. A record that
//   was changed must never be accepted: whatever plaintext comes out must be a prefix
//   of the message (AEAD integrity), and a changed record must end in a typed error.
//
// In every mode: nothing traps; a thrown error is a TLSError and leaves the engine in
// .failed with that same error, and it is thrown again by the next read; the engine
// is then closed and freed, and no SSL*, SSL_CTX* or SSL_SESSION* outlives the input
// (TLSResources counts them; LeakSanitizer checks the rest).
//
// The certificate and key come from TORUS_FUZZ_TLS_DIR (scripts/fuzz.sh writes a CA,
// a chain for "localhost" and its key there with the openssl command).

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    fatalError("tls fuzz: \(message)")
}

/// The contexts every input shares (made once: loading keys is the slow part).
struct Contexts {
    let server: TLSContext
    let client: TLSContext

    static let shared: Contexts = {
        guard let raw = getenv("TORUS_FUZZ_TLS_DIR") else { fail("TORUS_FUZZ_TLS_DIR is not set (run scripts/fuzz.sh tls)") }
        let dir = String(cString: raw)
        do {
            let server = try TLSContext(.server(chainPath: dir + "/chain.pem", keyPath: dir + "/key.pem",
                                                alpn: ["http/1.1"]))
            let client = try TLSContext(.client(trustRoots: .caFile(dir + "/ca.pem"), serverName: "localhost",
                                                alpn: ["http/1.1"]))
            return Contexts(server: server, client: client)
        } catch {
            fail("cannot load the certificates in \(dir): \(error)")
        }
    }()
}

/// The pieces `bytes` is cut into: up to three cuts derived from `seed`.
func pieces(_ bytes: [UInt8], seed: UInt8) -> [ArraySlice<UInt8>] {
    guard bytes.count > 1 else { return [bytes[...]] }
    var cuts = Set<Int>()
    var x = Int(seed) &* 2_654_435_761
    for _ in 0..<Int(seed % 4) {
        x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        cuts.insert(1 + Int(UInt(bitPattern: x >> 17) % UInt(bytes.count - 1)))
    }
    var out: [ArraySlice<UInt8>] = []
    var start = 0
    for cut in cuts.sorted() {
        out.append(bytes[start..<cut])
        start = cut
    }
    out.append(bytes[start...])
    return out
}

/// Moves every pending ciphertext byte from one engine to the other.
func move(from: TLSEngine, to: TLSEngine) -> Int {
    let moving = takeAll(from)
    moving.withUnsafeBytes { to.feed($0) }
    return moving.count
}

func takeAll(_ engine: TLSEngine) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { engine.takeCiphertext(into: $0) }
        if n == 0 { return out }
        if n < 0 || n > buffer.count { fail("takeCiphertext returned \(n) for a \(buffer.count)-byte buffer") }
        out += buffer[0..<n]
    }
}

/// What reading an engine dry produced.
struct ReadOutcome {
    var plaintext: [UInt8] = []
    var error: TLSError?
    var closed = false
}

/// Reads until the engine wants more ciphertext, closes or fails; checks the rules a
/// failure must keep.
func readAll(_ engine: TLSEngine, into outcome: inout ReadOutcome) {
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    for _ in 0..<10_000 {
        let result = buffer.withUnsafeMutableBytes { bytes in
            Result { () throws(TLSError) -> TLSReadResult in try engine.readPlaintext(into: bytes) }
        }
        switch result {
        case .success(.bytes(let n)):
            if n < 0 || n > buffer.count { fail("readPlaintext returned \(n) bytes for a \(buffer.count)-byte buffer") }
            if n == 0 { return }
            outcome.plaintext += buffer[0..<n]
        case .success(.needsCiphertext):
            return
        case .success(.closed):
            outcome.closed = true
            guard case .closed = engine.state else { fail("read .closed but the state is \(engine.state)") }
            return
        case .failure(let error):
            outcome.error = error
            guard case .failed(let recorded) = engine.state, recorded == error else {
                fail("threw \(error) but the state is \(engine.state)")
            }
            // A failed engine keeps failing with the same error.
            let again = buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(TLSError) -> TLSReadResult in try engine.readPlaintext(into: bytes) }
            }
            guard case .failure(let second) = again, second == error else { fail("a second read after \(error) gave \(again)") }
            return
        }
    }
    fail("readPlaintext never stopped returning bytes")
}

/// Feeds `stream` to `engine` in pieces, reading after each, then the end of the
/// transport; returns what came out.
func feed(_ stream: [UInt8], seed: UInt8, to engine: TLSEngine) -> ReadOutcome {
    var outcome = ReadOutcome()
    for piece in pieces(stream, seed: seed) {
        piece.withUnsafeBytes { engine.feed($0) }
        readAll(engine, into: &outcome)
        _ = takeAll(engine)   // what it would send back (alerts, handshake flights)
        if outcome.error != nil || outcome.closed { return outcome }
    }
    engine.feedEOF()
    readAll(engine, into: &outcome)
    _ = takeAll(engine)
    return outcome
}

/// Ends an engine the way a connection does, whatever its state.
func finish(_ engine: TLSEngine) {
    engine.close()
    _ = takeAll(engine)
    engine.releaseBuffers()
}

func serverMeetsStream(_ stream: [UInt8], seed: UInt8) {
    let server: TLSEngine
    do { server = try TLSEngine(context: Contexts.shared.server) } catch { fail("TLSEngine(server): \(error)") }
    let outcome = feed(stream, seed: seed, to: server)
    if !outcome.plaintext.isEmpty, outcome.error == nil {
        // Plaintext from a peer that never saw our certificate would be a broken handshake.
        fail("a server produced \(outcome.plaintext.count) plaintext bytes from an unauthenticated stream")
    }
    finish(server)
}

func clientMeetsStream(_ stream: [UInt8], seed: UInt8) {
    let client: TLSEngine
    do { client = try TLSEngine(context: Contexts.shared.client) } catch { fail("TLSEngine(client): \(error)") }
    var outcome = ReadOutcome()
    readAll(client, into: &outcome)              // starts the handshake
    if takeAll(client).isEmpty { fail("the client sent no ClientHello") }
    let answer = feed(stream, seed: seed, to: client)
    if case .established = client.state {
        // Only a server holding the key of a certificate the CA signed can get here.
        fail("a client completed a handshake with a fuzzed server")
    }
    if !answer.plaintext.isEmpty { fail("a client read plaintext from a fuzzed server") }
    finish(client)
}

let message = Array("GET /fuzz HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8) + [UInt8](repeating: 0x5A, count: 300)

func recordsAfterHandshake(_ mutation: [UInt8], seed: UInt8) {
    let client: TLSEngine, server: TLSEngine
    do {
        client = try TLSEngine(context: Contexts.shared.client)
        server = try TLSEngine(context: Contexts.shared.server)
    } catch {
        fail("TLSEngine: \(error)")
    }
    var scratch = ReadOutcome()
    for _ in 0..<20 {
        readAll(client, into: &scratch)
        readAll(server, into: &scratch)
        if move(from: client, to: server) + move(from: server, to: client) == 0 { break }
    }
    guard case .established = client.state, case .established = server.state, scratch.error == nil else {
        fail("the in-memory handshake did not complete: client \(client.state), server \(server.state)")
    }
    do {
        try message.withUnsafeBytes { try client.writePlaintext($0) }
    } catch {
        fail("writePlaintext: \(error)")
    }
    // TLS 1.3 servers send tickets after the handshake: let the client take them.
    _ = move(from: server, to: client)
    readAll(client, into: &scratch)
    var records = takeAll(client)
    let original = records
    for (i, byte) in mutation.enumerated() {
        if i < records.count { records[i] ^= byte } else { records.append(byte) }
    }
    let changed = records.prefix(original.count) != original[...]
    let outcome = feed(records, seed: seed, to: server)
    if !message.starts(with: outcome.plaintext) {
        fail("the server returned plaintext that was never sent (\(outcome.plaintext.count) bytes)")
    }
    if changed && outcome.error == nil && !outcome.plaintext.isEmpty && outcome.plaintext.count == message.count {
        fail("a changed record was accepted whole")
    }
    if !changed && outcome.plaintext.count < message.count && outcome.error == nil && !outcome.closed {
        fail("unchanged records gave only \(outcome.plaintext.count) of \(message.count) bytes")
    }
    finish(client)
    finish(server)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size >= 2 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let stream = Array(input[2...])
    switch input[0] % 3 {
    case 0: serverMeetsStream(stream, seed: input[1])
    case 1: clientMeetsStream(stream, seed: input[1])
    default: recordsAfterHandshake(stream, seed: input[1])
    }
    if TLSResources.liveEngines != 0 || TLSResources.liveSessions != 0 {
        fail("live after the input: \(TLSResources.liveEngines) SSL*, \(TLSResources.liveSessions) SSL_SESSION*")
    }
    return 0
}
