import Testing
@testable import TorusWebSocket

@Suite struct UTF8ValidatorTests {
    /// (bytes, valid, index of the first byte at which a fail-fast validator
    /// must reject, or nil if only the end of input reveals the error).
    static let cases: [(String, [UInt8], Bool, Int?)] = [
        ("empty", [], true, nil),
        ("ascii", utf8("Hello-µ@ßöäüàá-UTF-8!!"), true, nil),
        ("kosme", hex("cebae1bdb9cf83cebcceb5"), true, nil),
        // Autobahn 6.3: kosme with a surrogate in the middle.
        ("kosme + surrogate", hex("cebae1bdb9cf83cebcceb5eda080656469746564"), false, 12),
        // 6.5-6.7 boundaries: first/last code points of each length.
        ("U+0000", [0x00], true, nil), ("U+0080", [0xC2, 0x80], true, nil),
        ("U+0800", [0xE0, 0xA0, 0x80], true, nil), ("U+10000", [0xF0, 0x90, 0x80, 0x80], true, nil),
        ("U+007F", [0x7F], true, nil), ("U+07FF", [0xDF, 0xBF], true, nil),
        ("U+FFFF", [0xEF, 0xBF, 0xBF], true, nil), ("U+10FFFF", [0xF4, 0x8F, 0xBF, 0xBF], true, nil),
        ("U+D7FF", [0xED, 0x9F, 0xBF], true, nil), ("U+E000", [0xEE, 0x80, 0x80], true, nil),
        ("U+FFFD", [0xEF, 0xBF, 0xBD], true, nil), ("U+FFFE (noncharacter, valid)", [0xEF, 0xBF, 0xBE], true, nil),
        // > U+10FFFF
        ("U+110000", [0xF4, 0x90, 0x80, 0x80], false, 1),
        ("F5 lead", [0xF5, 0x80, 0x80, 0x80], false, 0),
        ("5-byte form", [0xF8, 0x88, 0x80, 0x80, 0x80], false, 0),
        ("6-byte form", [0xFC, 0x84, 0x80, 0x80, 0x80, 0x80], false, 0),
        ("FE", [0xFE], false, 0), ("FF", [0xFF], false, 0),
        // Stray continuation bytes (6.8).
        ("lone 80", [0x80], false, 0), ("lone BF", [0x61, 0xBF], false, 1),
        ("2 continuations", [0x80, 0xBF], false, 0),
        // Sequences cut short by a non-continuation byte (6.9/6.10).
        ("C2 then space", [0xC2, 0x20], false, 1),
        ("E0 A0 then space", [0xE0, 0xA0, 0x20], false, 2),
        ("F0 90 80 then space", [0xF0, 0x90, 0x80, 0x20], false, 3),
        // Truncated at end (only the end reveals it).
        ("truncated 2", [0xC2], false, nil), ("truncated 3", [0xE0, 0xA0], false, nil),
        ("truncated 4", [0xF0, 0x90, 0x80], false, nil), ("truncated after text", utf8("abc") + [0xF4], false, nil),
        // Overlongs (6.11-6.12).
        ("overlong / 2", [0xC0, 0xAF], false, 0), ("overlong / 2 C1", [0xC1, 0xBF], false, 0),
        ("overlong / 3", [0xE0, 0x80, 0xAF], false, 1), ("overlong / 3 max", [0xE0, 0x9F, 0xBF], false, 1),
        ("overlong / 4", [0xF0, 0x80, 0x80, 0xAF], false, 1), ("overlong / 4 max", [0xF0, 0x8F, 0xBF, 0xBF], false, 1),
        ("overlong NUL 2", [0xC0, 0x80], false, 0),
        // Surrogates (6.13-6.14).
        ("U+D800", [0xED, 0xA0, 0x80], false, 1), ("U+DBFF", [0xED, 0xAF, 0xBF], false, 1),
        ("U+DC00", [0xED, 0xB0, 0x80], false, 1), ("U+DFFF", [0xED, 0xBF, 0xBF], false, 1),
        ("paired surrogates", [0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80], false, 1),
    ]

    @Test func table() {
        for (name, bytes, valid, failIndex) in Self.cases {
            var v = UTF8Validator()
            let prefixOK = bytes.withUnsafeBytes { v.validate($0) }
            let complete = v.finish()
            #expect(complete == valid, "\(name)")
            #expect(prefixOK == (failIndex == nil), "\(name)")
            // Agrees with the standard library.
            #expect((String(validating: bytes, as: UTF8.self) != nil) == valid, "\(name)")
            // Byte at a time: rejects exactly at `failIndex`.
            var w = UTF8Validator()
            var firstFailure: Int?
            for (i, b) in bytes.enumerated() where !w.validate([b]) {
                firstFailure = i
                break
            }
            #expect(firstFailure == failIndex, "\(name)")
        }
    }

    @Test func rejectionIsSticky() {
        var v = UTF8Validator()
        let first = v.validate([0xFF])
        let second = v.validate(utf8("abc"))
        #expect(!first && !second && !v.isValid)
        v.reset()
        let third = v.validate(utf8("abc"))
        #expect(third && v.isComplete)
    }

    @Test func splitAtEveryPosition() {
        let text = utf8("a€𝄞é" + String(repeating: "x", count: 20) + "κόσμε")
        for cut in 0...text.count {
            var v = UTF8Validator()
            let a = v.validate(Array(text[..<cut]))
            let b = v.validate(Array(text[cut...]))
            let done = v.finish()
            #expect(a && b && done, "cut at \(cut)")
        }
    }

    @Test func asciiFastPathThenInvalid() {
        for pos in 0..<40 {
            var bytes = [UInt8](repeating: 0x41, count: 40)
            bytes[pos] = 0x80
            var v = UTF8Validator()
            let ok = v.validate(bytes)
            #expect(!ok, "bad byte at \(pos)")
        }
    }

    @Test func exhaustiveOneAndTwoBytes() {
        for a in 0...255 {
            let one = [UInt8(a)]
            #expect(UTF8Validator.isValidUTF8Array(one) == (String(validating: one, as: UTF8.self) != nil))
            for b in 0...255 {
                let two = [UInt8(a), UInt8(b)]
                if UTF8Validator.isValidUTF8Array(two) != (String(validating: two, as: UTF8.self) != nil) {
                    Issue.record("mismatch for \(two)")
                }
            }
        }
    }

    @Test func exhaustiveThreeByteLeads() {
        for a in 0xE0...0xEF {
            for b in 0...255 {
                for c in stride(from: 0, through: 255, by: 1) {
                    let s = [UInt8(a), UInt8(b), UInt8(c)]
                    if UTF8Validator.isValidUTF8Array(s) != (String(validating: s, as: UTF8.self) != nil) {
                        Issue.record("mismatch for \(s)")
                        return
                    }
                }
            }
        }
    }

    @Test func fourByteLeads() {
        let samples: [UInt8] = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF]
        for a in 0xF0...0xFF {
            for b in 0...255 {
                for c in samples {
                    for d in samples {
                        let s = [UInt8(a), UInt8(b), c, d]
                        if UTF8Validator.isValidUTF8Array(s) != (String(validating: s, as: UTF8.self) != nil) {
                            Issue.record("mismatch for \(s)")
                            return
                        }
                    }
                }
            }
        }
    }
}

extension UTF8Validator {
    static func isValidUTF8Array(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { isValidUTF8($0) }
    }
}
