/*
 * COpenSSL: the system OpenSSL 3 (libssl-dev) for TorusTLS. Only thin wrappers
 * live here: OpenSSL spells much of its API as macros over SSL_ctrl/BIO_ctrl,
 * which Swift cannot call, so each one used by TorusTLS gets a static inline
 * function of the same meaning. No policy lives in C.
 */
#ifndef TORUS_COPENSSL_SHIM_H
#define TORUS_COPENSSL_SHIM_H

#include <features.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

/* ---- SSL_CTX settings (macros over SSL_CTX_ctrl) ---- */
static inline long torus_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline int torus_ssl_ctx_set_min_proto(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_min_proto_version(ctx, v); }
static inline int torus_ssl_ctx_set_max_proto(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_max_proto_version(ctx, v); }
static inline long torus_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long m) { return SSL_CTX_set_session_cache_mode(ctx, m); }
static inline long torus_ssl_ctx_sess_number(SSL_CTX *ctx) { return SSL_CTX_sess_number(ctx); }

typedef int (*torus_servername_cb)(SSL *, int *, void *);
static inline void torus_ssl_ctx_set_servername_cb(SSL_CTX *ctx, torus_servername_cb cb, void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

/* ---- SSL settings ---- */
static inline long torus_ssl_set_mode(SSL *ssl, long mode) { return SSL_set_mode(ssl, mode); }
static inline long torus_ssl_clear_mode(SSL *ssl, long mode) { return SSL_clear_mode(ssl, mode); }
static inline int torus_ssl_set_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
static inline int torus_ssl_set_app_data(SSL *ssl, void *p) { return SSL_set_app_data(ssl, p); }
static inline void *torus_ssl_get_app_data(const SSL *ssl) { return SSL_get_app_data(ssl); }
static inline int torus_ssl_total_renegotiations(SSL *ssl) { return (int)SSL_total_renegotiations(ssl); }

/* SSL_OP_* and SSL_MODE_* are 64-bit macro expressions; give Swift constants. */
static const uint64_t TORUS_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t TORUS_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;
static const uint64_t TORUS_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t TORUS_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t TORUS_SSL_OP_IGNORE_UNEXPECTED_EOF = SSL_OP_IGNORE_UNEXPECTED_EOF;
static const uint64_t TORUS_SSL_OP_ENABLE_KTLS = SSL_OP_ENABLE_KTLS;
static const long TORUS_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;
static const long TORUS_SSL_MODE_ENABLE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long TORUS_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;

/* ---- memory BIOs ---- */
static inline long torus_bio_set_mem_eof_return(BIO *b, int v) { return BIO_set_mem_eof_return(b, v); }
static inline size_t torus_bio_pending(BIO *b) { return BIO_ctrl_pending(b); }
/* Whether this OpenSSL was built with kernel TLS support (OPENSSL_NO_KTLS unset). */
static inline int torus_openssl_has_ktls(void) {
#ifdef OPENSSL_NO_KTLS
    return 0;
#else
    return 1;
#endif
}

/* BIO_get_mem_ptr is a macro; the BUF_MEM tells how much a memory BIO holds (max). */
static inline size_t torus_bio_mem_capacity(BIO *b) {
    BUF_MEM *m = NULL;
    BIO_get_mem_ptr(b, &m);
    return m ? m->max : 0;
}

/* Info callback "where" values (expression macros). */
static const int TORUS_SSL_CB_WRITE_ALERT = SSL_CB_WRITE_ALERT;
static const int TORUS_SSL_CB_READ_ALERT = SSL_CB_READ_ALERT;
static const int TORUS_SSL_CB_HANDSHAKE_START = SSL_CB_HANDSHAKE_START;
static const unsigned long TORUS_XN_FLAG_RFC2253 = XN_FLAG_RFC2253;

/* ---- errors: ERR_GET_LIB/REASON are macros ---- */
static inline int torus_err_lib(unsigned long e) { return ERR_GET_LIB(e); }
static inline int torus_err_reason(unsigned long e) { return ERR_GET_REASON(e); }

/* Reason codes TorusTLS names (SSL_R_* are macros). */
static const int TORUS_ERR_LIB_SSL = ERR_LIB_SSL;
static const int TORUS_SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC = SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC;
static const int TORUS_SSL_R_DECRYPTION_FAILED = SSL_R_DECRYPTION_FAILED;
static const int TORUS_SSL_R_SSLV3_ALERT_BAD_RECORD_MAC = SSL_R_SSLV3_ALERT_BAD_RECORD_MAC;
static const int TORUS_SSL_R_ENCRYPTED_LENGTH_TOO_LONG = SSL_R_ENCRYPTED_LENGTH_TOO_LONG;
static const int TORUS_SSL_R_DATA_LENGTH_TOO_LONG = SSL_R_DATA_LENGTH_TOO_LONG;
static const int TORUS_SSL_R_PACKET_LENGTH_TOO_LONG = SSL_R_PACKET_LENGTH_TOO_LONG;
static const int TORUS_SSL_R_TLSV1_ALERT_RECORD_OVERFLOW = SSL_R_TLSV1_ALERT_RECORD_OVERFLOW;
static const int TORUS_SSL_R_HTTP_REQUEST = SSL_R_HTTP_REQUEST;
static const int TORUS_SSL_R_HTTPS_PROXY_REQUEST = SSL_R_HTTPS_PROXY_REQUEST;
static const int TORUS_SSL_R_WRONG_VERSION_NUMBER = SSL_R_WRONG_VERSION_NUMBER;
static const int TORUS_SSL_R_UNSUPPORTED_PROTOCOL = SSL_R_UNSUPPORTED_PROTOCOL;
static const int TORUS_SSL_R_TLSV1_ALERT_PROTOCOL_VERSION = SSL_R_TLSV1_ALERT_PROTOCOL_VERSION;
static const int TORUS_SSL_R_NO_PROTOCOLS_AVAILABLE = SSL_R_NO_PROTOCOLS_AVAILABLE;
static const int TORUS_SSL_R_CERTIFICATE_VERIFY_FAILED = SSL_R_CERTIFICATE_VERIFY_FAILED;
static const int TORUS_SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE = SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE;
static const int TORUS_SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED = SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED;
static const int TORUS_SSL_R_NO_RENEGOTIATION = SSL_R_NO_RENEGOTIATION;
static const int TORUS_SSL_R_UNEXPECTED_EOF_WHILE_READING = SSL_R_UNEXPECTED_EOF_WHILE_READING;
static const int TORUS_SSL_R_NO_APPLICATION_PROTOCOL = SSL_R_NO_APPLICATION_PROTOCOL;
static const int TORUS_SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL = SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL;

/* ---- kernel TLS probe ---- */
#ifndef TCP_ULP
#define TCP_ULP 31
#endif
/* setsockopt(fd, SOL_TCP, TCP_ULP, "tls"); returns 0 or -errno. */
static inline int torus_tcp_ulp_tls(int fd) {
    return setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0 ? 0 : -errno;
}

#endif
