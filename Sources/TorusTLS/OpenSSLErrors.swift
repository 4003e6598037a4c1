import COpenSSL

/// Reads OpenSSL's thread-local error queue and turns it into a ``TLSError``.
/// The queue is always drained, so one connection's failure never leaks into the
/// next call on the same thread.
enum OpenSSLErrors {
    /// Empties the error queue (before an SSL call whose failure we will classify).
    /// It is almost always empty already (every failure drains it), and peeking is
    /// cheaper than clearing OpenSSL 3.0's sixteen slots on every record.
    static func clear() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }

    /// The queued errors as (library, reason code, reason string), oldest first;
    /// the queue is left empty.
    static func drain() -> [(lib: Int32, reason: Int32, text: String)] {
        var out: [(lib: Int32, reason: Int32, text: String)] = []
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            let text = ERR_reason_error_string(e).map { String(cString: $0) } ?? "error \(e)"
            out.append((torus_err_lib(e), torus_err_reason(e), text))
        }
        return out
    }

    /// A configuration error naming what failed and OpenSSL's reasons.
    static func configuration(_ what: String) -> TLSError {
        let reasons = drain().map(\.text)
        return .configuration(reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))")
    }

    /// Classifies a failed SSL call (`SSL_get_error` gave `code`).
    static func classify(ssl: OpaquePointer, code: Int32) -> TLSError {
        let errors = drain()
        if code == SSL_ERROR_SYSCALL && errors.isEmpty {
            // A memory BIO reports EOF (after feedEOF) as a syscall error with nothing queued.
            return .unexpectedEOF
        }
        guard let first = errors.first(where: { $0.lib == TORUS_ERR_LIB_SSL }) ?? errors.first else {
            return .handshakeFailure(reason: "SSL_get_error \(code)")
        }
        let r = first.reason
        switch r {
        case TORUS_SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, TORUS_SSL_R_DECRYPTION_FAILED:
            return .badRecordMAC
        case TORUS_SSL_R_ENCRYPTED_LENGTH_TOO_LONG, TORUS_SSL_R_DATA_LENGTH_TOO_LONG,
             TORUS_SSL_R_PACKET_LENGTH_TOO_LONG:
            return .recordOverflow
        case TORUS_SSL_R_HTTP_REQUEST, TORUS_SSL_R_HTTPS_PROXY_REQUEST:
            return .plaintextHTTP
        case TORUS_SSL_R_WRONG_VERSION_NUMBER:
            return .malformedRecord(reason: first.text)
        case TORUS_SSL_R_UNSUPPORTED_PROTOCOL, TORUS_SSL_R_NO_PROTOCOLS_AVAILABLE:
            return .protocolVersion(reason: first.text)
        case TORUS_SSL_R_CERTIFICATE_VERIFY_FAILED:
            return .certificateVerifyFailed(certificateProblem(Int(SSL_get_verify_result(ssl))))
        case TORUS_SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            return .peerCertificateRequired
        case TORUS_SSL_R_NO_RENEGOTIATION:
            return .renegotiationRefused
        case TORUS_SSL_R_UNEXPECTED_EOF_WHILE_READING:
            return .unexpectedEOF
        case TORUS_SSL_R_NO_APPLICATION_PROTOCOL:
            return .noApplicationProtocol
        default:
            break
        }
        // SSL_R_*ALERT* reasons are 1000 + the alert the peer sent.
        if first.lib == TORUS_ERR_LIB_SSL && r >= 1000 && r < 1256 {
            let alert = Int(r) - 1000
            switch alert {
            case 20: return .badRecordMAC
            case 22: return .recordOverflow
            case 70: return .protocolVersion(reason: first.text)
            case 120: return .noApplicationProtocol
            default: return .alertReceived(description: alertName(first.text), code: alert)
            }
        }
        if first.text.contains("record") && first.text.contains("length") {
            return .malformedRecord(reason: first.text)
        }
        return .handshakeFailure(reason: first.text)
    }

    /// "sslv3 alert certificate unknown" / "tlsv1 alert unknown ca" → "certificate unknown" / "unknown ca".
    private static func alertName(_ text: String) -> String {
        guard let range = text.firstRange(of: "alert ") else { return text }
        return String(text[range.upperBound...])
    }

    /// Names an X509 verify result.
    static func certificateProblem(_ code: Int) -> CertificateProblem {
        switch Int32(truncatingIfNeeded: code) {
        case X509_V_ERR_CERT_HAS_EXPIRED: return .expired
        case X509_V_ERR_CERT_NOT_YET_VALID: return .notYetValid
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH: return .hostnameMismatch
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
             X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            return .unknownCA
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return .selfSigned
        case X509_V_ERR_CERT_REVOKED: return .revoked
        default:
            let text = X509_verify_cert_error_string(code).map { String(cString: $0) } ?? "unknown"
            return .other(code: code, reason: text)
        }
    }
}
