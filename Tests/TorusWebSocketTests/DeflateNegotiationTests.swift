import Testing
@testable import TorusWebSocket

@Suite struct DeflateNegotiationTests {
    static let pmd = "permessage-deflate"

    /// (offer header values, configuration, expected response header or nil = declined)
    static let serverTable: [([String], PerMessageDeflateConfiguration, String?)] = [
        ([pmd], .init(), pmd),
        (["permessage-deflate; client_max_window_bits"], .init(), pmd),
        (["permessage-deflate; client_max_window_bits"], .init(clientMaxWindowBits: 10),
         "permessage-deflate; client_max_window_bits=10"),
        (["permessage-deflate; client_max_window_bits=9"], .init(clientMaxWindowBits: 10),
         "permessage-deflate; client_max_window_bits=9"),
        (["permessage-deflate; client_max_window_bits=12"], .init(), "permessage-deflate; client_max_window_bits=12"),
        ([pmd], .init(clientMaxWindowBits: 10), pmd),  // client did not allow it: must not send it
        (["permessage-deflate; server_max_window_bits=10"], .init(), "permessage-deflate; server_max_window_bits=10"),
        (["permessage-deflate; server_max_window_bits=12"], .init(serverMaxWindowBits: 9),
         "permessage-deflate; server_max_window_bits=9"),
        ([pmd], .init(serverMaxWindowBits: 11), "permessage-deflate; server_max_window_bits=11"),
        (["permessage-deflate; server_max_window_bits=8"], .init(), "permessage-deflate; server_max_window_bits=8"),
        (["permessage-deflate; server_no_context_takeover; client_no_context_takeover"], .init(),
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ([pmd], .init(serverNoContextTakeover: true, clientNoContextTakeover: true),
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        (["permessage-deflate; server_max_window_bits=\"10\""], .init(), "permessage-deflate; server_max_window_bits=10"),
        (["Permessage-Deflate; Server_No_Context_Takeover"], .init(), "permessage-deflate; server_no_context_takeover"),
        // Invalid offers are declined.
        (["permessage-deflate; server_max_window_bits"], .init(), nil),
        (["permessage-deflate; server_max_window_bits=7"], .init(), nil),
        (["permessage-deflate; server_max_window_bits=16"], .init(), nil),
        (["permessage-deflate; server_max_window_bits=010"], .init(), nil),
        (["permessage-deflate; server_max_window_bits=abc"], .init(), nil),
        (["permessage-deflate; client_max_window_bits=16"], .init(), nil),
        (["permessage-deflate; client_max_window_bits=0"], .init(), nil),
        (["permessage-deflate; server_no_context_takeover=1"], .init(), nil),
        (["permessage-deflate; client_no_context_takeover=true"], .init(), nil),
        (["permessage-deflate; unknown_param"], .init(), nil),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], .init(), nil),
        (["permessage-deflate; client_max_window_bits; client_max_window_bits=10"], .init(), nil),
        (["x-webkit-deflate-frame"], .init(), nil),
        ([], .init(), nil),
        (["permessage-deflate;"], .init(), nil),  // malformed header
        // The first acceptable offer wins.
        (["permessage-deflate; foo, permessage-deflate; client_max_window_bits=11, permessage-deflate"], .init(),
         "permessage-deflate; client_max_window_bits=11"),
        (["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=13"], .init(),
         "permessage-deflate; server_max_window_bits=13"),
        (["permessage-deflate; server_max_window_bits=20", "permessage-deflate"], .init(), pmd),
    ]

    @Test func serverTable() {
        for (offers, config, expected) in Self.serverTable {
            let agreement = PerMessageDeflate.negotiate(offerHeaderValues: offers, configuration: config)
            #expect(agreement?.responseHeaderValue == expected, "offer \(offers)")
        }
    }

    @Test func extensionHeaderParsing() {
        let parsed = WebSocketExtension.parse(headerValues: ["foo; a=1 ; b=\"x,y\", bar", "baz;c"])
        #expect(parsed == [
            WebSocketExtension(name: "foo", parameters: [.init(name: "a", value: "1"), .init(name: "b", value: "x,y")]),
            WebSocketExtension(name: "bar"),
            WebSocketExtension(name: "baz", parameters: [.init(name: "c")]),
        ])
        #expect(WebSocketExtension.parse(headerValues: ["foo bar"]) == nil)
        #expect(WebSocketExtension.parse(headerValues: ["foo; a=\"unterminated"]) == nil)
        #expect(WebSocketExtension.parse(headerValues: ["foo; =1"]) == nil)
        #expect(WebSocketExtension.parse(headerValues: [" , foo ,, "]) == [WebSocketExtension(name: "foo")])
    }

    @Test func clientOffer() {
        #expect(PerMessageDeflate.offerHeaderValue(configuration: .init()) == "permessage-deflate; client_max_window_bits")
        #expect(PerMessageDeflate.offerHeaderValue(
            configuration: .init(serverNoContextTakeover: true, clientNoContextTakeover: true,
                                 serverMaxWindowBits: 10, clientMaxWindowBits: 9))
            == "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9")
    }

    /// (configuration the client offered, response values, expected agreement or nil=declined, or throws)
    @Test func clientResponseTable() {
        func check(_ config: PerMessageDeflateConfiguration, _ response: [String]) -> Result<PerMessageDeflateAgreement?, PerMessageDeflate.ResponseError> {
            do throws(PerMessageDeflate.ResponseError) {
                return .success(try PerMessageDeflate.validateResponse(headerValues: response, configuration: config))
            } catch {
                return .failure(error)
            }
        }
        func ok(_ r: Result<PerMessageDeflateAgreement?, PerMessageDeflate.ResponseError>) -> PerMessageDeflateAgreement?? {
            if case .success(let a) = r { return .some(a) }
            return nil
        }
        #expect(ok(check(.init(), [])) == .some(nil))  // declined
        #expect(ok(check(.init(), [Self.pmd])) == .some(PerMessageDeflateAgreement()))
        #expect(ok(check(.init(), ["permessage-deflate; client_max_window_bits=8"]))
                == .some(PerMessageDeflateAgreement(clientMaxWindowBits: 8)))
        #expect(ok(check(.init(), ["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"]))
                == .some(PerMessageDeflateAgreement(serverNoContextTakeover: true, serverMaxWindowBits: 9)))
        #expect(ok(check(.init(clientNoContextTakeover: true), [Self.pmd]))
                == .some(PerMessageDeflateAgreement(clientNoContextTakeover: true)))
        // Failures.
        #expect(ok(check(.init(), ["permessage-deflate; client_max_window_bits"])) == nil)  // needs a value
        #expect(ok(check(.init(clientMaxWindowBits: 10), ["permessage-deflate; client_max_window_bits=11"])) == nil)
        #expect(ok(check(.init(serverMaxWindowBits: 10), [Self.pmd])) == nil)
        #expect(ok(check(.init(serverMaxWindowBits: 10), ["permessage-deflate; server_max_window_bits=12"])) == nil)
        #expect(ok(check(.init(serverNoContextTakeover: true), [Self.pmd])) == nil)
        #expect(ok(check(.init(), ["permessage-deflate, permessage-deflate"])) == nil)
        #expect(ok(check(.init(), ["x-other"])) == nil)
        #expect(ok(check(.init(), ["permessage-deflate; bogus"])) == nil)
    }

    @Test func agreementRoles() {
        let a = PerMessageDeflateAgreement(serverNoContextTakeover: true, clientNoContextTakeover: false,
                                           serverMaxWindowBits: 10, clientMaxWindowBits: nil)
        #expect(a.compressorResetsPerMessage(role: .server))
        #expect(!a.compressorResetsPerMessage(role: .client))
        #expect(a.decompressorResetsPerMessage(role: .client))
        #expect(!a.decompressorResetsPerMessage(role: .server))
        #expect(a.compressorWindowBits(role: .server) == 10)
        #expect(a.compressorWindowBits(role: .client) == 15)
    }
}
