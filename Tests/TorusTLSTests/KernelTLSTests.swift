import COpenSSL
import Foundation
import Testing
@testable import TorusTLS

extension TLSTests {
    @Suite struct KernelTLSProbe {
        /// The probe agrees with the kernel's own list of TCP upper-layer protocols.
        @Test func probeMatchesTheKernelsULPList() async throws {
            let list = try String(contentsOfFile: "/proc/sys/net/ipv4/tcp_available_ulp", encoding: .utf8)
            let kernelHasTLS = list.split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("tls")
            // The module may be loadable on demand even when not listed yet.
            if kernelHasTLS {
                #expect(KernelTLS.isAvailable)
            } else if case .unavailable(let reason) = KernelTLS.availability {
                #expect(reason.contains("ENOENT") || reason.contains("setsockopt"), "\(reason)")
            }
            #expect(KernelTLS.availability == KernelTLS.probe())
        }
    }
}

extension TLSTests.KernelTLSProbe {
    /// Decrypts one AES-GCM TLS 1.3 record (RFC 8446 5.2) with `keys` at sequence `sequence`;
    /// returns the inner plaintext (content, then its type byte) or nil when the tag fails.
    static func open(record: [UInt8], keys: KernelTLSKeys.Direction, sequence: UInt64) -> [UInt8]? {
        guard record.count > 5 + 16 else { return nil }
        var nonce = keys.iv
        for i in 0..<8 { nonce[4 + i] ^= UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64(i))) }
        let header = Array(record[0..<5])
        let body = Array(record[5..<(record.count - 16)])
        var tag = Array(record.suffix(16))
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let cipher = keys.key.count == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm()
        var out = [UInt8](repeating: 0, count: body.count + 16)
        var length: Int32 = 0
        var total: Int32 = 0
        guard EVP_DecryptInit_ex(ctx, cipher, nil, nil, nil) == 1,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nil) == 1,
              EVP_DecryptInit_ex(ctx, nil, nil, keys.key, nonce) == 1,
              EVP_DecryptUpdate(ctx, nil, &length, header, Int32(header.count)) == 1,
              EVP_DecryptUpdate(ctx, &out, &length, body, Int32(body.count)) == 1 else { return nil }
        total = length
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, &tag) == 1 else { return nil }
        let finished = out.withUnsafeMutableBufferPointer { buffer in
            EVP_DecryptFinal_ex(ctx, buffer.baseAddress.map { $0 + Int(total) }, &length) == 1
        }
        guard finished else { return nil }
        return Array(out.prefix(Int(total + length)))
    }

    /// The keys a kTLS hand-off would give the kernel decrypt the peer's real records.
    @Test(arguments: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"])
    func trafficKeysOpenRealRecords(suite: String) async throws {
        let certs = try await TestCertificates.get()
        try withoutLeaks {
            let server = try TLSContext(certs.server(min: .tls13))
            let pair = try EnginePair(client: TLSContext(certs.client()), server: server)
            #expect(KernelTLS.keys(of: pair.client) == nil) // not established
            pair.client.capturesTrafficSecrets = true
            pair.server.capturesTrafficSecrets = true
            #expect(pair.client.setCipherSuitesForTesting(suite))
            pair.handshake()
            #expect(pair.client.state.info?.cipher == suite)
            let client = try #require(KernelTLS.keys(of: pair.client))
            let serverKeys = try #require(KernelTLS.keys(of: pair.server))
            #expect(client.cipher == suite)
            #expect(client.send == serverKeys.receive && client.receive == serverKeys.send)
            #expect(client.send.key.count == (suite.contains("128") ? 16 : 32) && client.send.iv.count == 12)
            #expect(client.send != client.receive)
            // The client's first application record has sequence number 0.
            try pair.client.write(Array("kernel tls".utf8))
            let record = pair.client.takeAllCiphertext()
            #expect(Self.open(record: record, keys: client.send, sequence: 0) == Array("kernel tls".utf8) + [0x17])
            #expect(Self.open(record: record, keys: client.send, sequence: 1) == nil)
            // An engine that did not keep its secrets gives no keys.
            let plain = try EnginePair(client: TLSContext(certs.client()), server: server)
            plain.handshake()
            #expect(KernelTLS.keys(of: plain.client) == nil)
        }
    }
}
