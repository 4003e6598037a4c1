#!/usr/bin/env python3
"""Writes the seed corpora Fuzz/corpus/websocket, Fuzz/corpus/hub and Fuzz/corpus/tls
(small inputs).

Run from the repository root: python3 Fuzz/make-seeds.py. The files are committed;
rerun only to change the seeds. Input layouts are described in the harnesses.
"""
import os
import ssl
import struct
import subprocess
import tempfile
import zlib

def deflate(data, wbits=15):
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4] or b"\x00"

def frame(opcode, payload, fin=True, rsv1=False, key=None):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mask = 0x80 if key else 0
    if n <= 125:
        h = bytes([b0, mask | n])
    elif n <= 0xFFFF:
        h = bytes([b0, mask | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mask | 127]) + struct.pack(">Q", n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        h += key
    return h + payload

def ws(role_client, deflate_on=False, no_ctx=False, limits=1, bomb=False, c1=0x2A):
    c0 = (1 if role_client else 0) | (2 if deflate_on else 0) | (4 if no_ctx else 0) | (limits << 3)
    if bomb:
        c0 |= 0x60
    return bytes([c0, c1])

K = b"\x37\xfa\x21\x3d"

def seeds_websocket():
    s = {}
    # Server role: masked frames; client role: unmasked.
    s["server-text"] = ws(False) + frame(1, b"Hello", key=K)
    s["client-text"] = ws(True) + frame(1, b"Hello")
    s["client-fragments-ping"] = ws(True) + frame(1, b"Hel", fin=False) + frame(9, b"p") + frame(0, b"lo")
    s["server-binary-16bit"] = ws(False, limits=2) + frame(2, bytes(range(200)), key=K)
    s["server-control"] = ws(False) + frame(9, b"ping", key=K) + frame(10, b"", key=K) + \
        frame(8, struct.pack(">H", 1000) + "bye ü".encode(), key=K)
    s["client-close-empty"] = ws(True) + frame(2, b"\x00\x01") + frame(8, b"")
    s["client-utf8-split"] = ws(True) + frame(1, "€".encode()[:2], fin=False) + frame(0, "€".encode()[2:] + "😀".encode())
    s["client-invalid-utf8"] = ws(True) + frame(1, b"\xed\xa0\x80")
    s["client-too-big"] = ws(True, limits=0) + frame(2, b"x" * 100)
    s["client-64bit-len"] = ws(True) + bytes([0x82, 127]) + struct.pack(">Q", 1 << 40)
    # permessage-deflate (RFC 7692 7.2.3 examples and context takeover).
    s["client-deflate-hello"] = ws(True, True) + frame(1, deflate(b"Hello"), rsv1=True)
    s["client-deflate-shared"] = ws(True, True, limits=2) + bytes.fromhex("c107f248cdc9c90700") + bytes.fromhex("c105f200110000")
    s["server-deflate-frag"] = ws(False, True, limits=2) + frame(1, deflate(b"Hello Hello Hello")[:4], fin=False, rsv1=True, key=K) + \
        frame(9, b"", key=K) + frame(0, deflate(b"Hello Hello Hello")[4:], key=K)
    s["client-deflate-noctx"] = ws(True, True, no_ctx=True, limits=2) + frame(2, deflate(b"abcabc"), rsv1=True) + frame(2, deflate(b"abcabc"), rsv1=True)
    s["client-deflate-uncompressed"] = ws(True, True) + frame(2, b"plain")
    # Compression bombs: 100 KB and 256 KiB of zeros in a few hundred bytes (limit sets 2 and 3).
    s["client-bomb-100k"] = ws(True, True, limits=2) + frame(2, deflate(bytes(100_000)), rsv1=True)
    s["server-bomb-256k"] = ws(False, True, limits=3) + frame(2, deflate(bytes(256 << 10)), rsv1=True, key=K)
    s["client-bomb-text-256k"] = ws(True, True, limits=3) + frame(1, deflate(b"a" * ((256 << 10) + 1)), rsv1=True)
    # Bomb mode: the harness builds the message (pattern "ab", (c1 + 1) * 2 KiB).
    s["bomb-mode-256k"] = ws(True, True, limits=3, bomb=True, c1=127) + b"ab"
    s["bomb-mode-512k"] = ws(False, True, limits=3, bomb=True, c1=255) + b"\x00"
    return s

def hub(limit_index, *frames):
    return bytes([limit_index]) + b"".join(frames)

def hf(kind, payload=b""):
    return struct.pack(">I", len(payload) + 1) + bytes([kind]) + payload

def seeds_hub():
    s = {}
    s["hello-welcome"] = hub(3, hf(1, b"router-1"), hf(2, struct.pack(">I", 30000)))
    s["session"] = hub(3, hf(1, b"r.kitchen:1"), hf(3), hf(4, b'{"t":21.5}'), hf(6, struct.pack(">I", 7) + b"ok"),
                       hf(5, struct.pack(">I", 8) + b'{"on":true}'), hf(7, b"shutting down"))
    s["partial-tail"] = hub(3, hf(3), hf(4, b"abcdef")[:7])
    s["limit-64"] = hub(2, hf(4, b"x" * 63), hf(4, b"y" * 64))
    s["limit-1"] = hub(0, hf(3), hf(3), hf(4))
    s["empty-frame"] = hub(3, hf(3), b"\x00\x00\x00\x00")
    s["bad-id"] = hub(3, hf(1, b"bad id!"))
    s["v2-handshake"] = hub(3, hf(1, b"\x02router-1"), hf(2, struct.pack(">I", 30000) + bytes(range(32))),
                            hf(8, bytes(range(100, 132))), hf(9), hf(10, b"authentication failed"))
    s["v2-bad"] = hub(3, hf(1, b"\x01r1"), hf(8, b"short"), hf(9, b"x"))
    s["unknown-type"] = hub(3, hf(9, b"??"))
    s["bye-invalid-utf8"] = hub(3, hf(7, b"\xff\xfe"))
    s["short-welcome"] = hub(1, hf(2, b"\x00\x01"))
    return s

def tls_flights():
    """A real ClientHello and a real server answer to one (Python's ssl over memory
    BIOs, with a throwaway self-signed certificate made by the openssl command)."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        flights = {}
        for name, version in (("13", ssl.TLSVersion.TLSv1_3), ("12", ssl.TLSVersion.TLSv1_2)):
            client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client_ctx.check_hostname = False
            client_ctx.verify_mode = ssl.CERT_NONE
            client_ctx.maximum_version = version
            client_ctx.set_alpn_protocols(["http/1.1"])
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain(cert, key)
            c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
            client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
            server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            hello = c_out.read()
            s_in.write(hello)
            try:
                server.do_handshake()
            except ssl.SSLWantReadError:
                pass
            flights[name] = (hello, s_out.read())
        return flights

def seeds_tls():
    # Byte 0: mode (0 server, 1 client, 2 records after a handshake); byte 1: the cuts.
    s = {}
    flights = tls_flights()
    for name, (hello, answer) in flights.items():
        s["server-clienthello-" + name] = bytes([0, 0]) + hello
        s["server-clienthello-cut-" + name] = bytes([0, 3]) + hello
        s["server-clienthello-truncated-" + name] = bytes([0, 1]) + hello[: len(hello) // 2]
        s["client-server-answer-" + name] = bytes([1, 0]) + answer
        s["client-server-answer-cut-" + name] = bytes([1, 2]) + answer
    s["server-plaintext-http"] = bytes([0, 0]) + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    s["server-alert"] = bytes([0, 0]) + b"\x15\x03\x03\x00\x02\x02\x28"
    s["server-huge-length"] = bytes([0, 0]) + b"\x16\x03\x01\xff\xff" + b"\x01" * 64
    s["records-unchanged"] = bytes([2, 0])
    s["records-unchanged-cut"] = bytes([2, 3])
    s["records-flip-payload"] = bytes([2, 0]) + b"\x00" * 40 + b"\x01"
    s["records-flip-length"] = bytes([2, 1]) + b"\x00\x00\x00\x00\x01"
    s["records-flip-type"] = bytes([2, 0]) + b"\x03"
    s["records-trailing-garbage"] = bytes([2, 2]) + b"\x00" * 400 + b"\x17\x03\x03\x00\x05hello"
    s["records-trailing-alert"] = bytes([2, 0]) + b"\x00" * 400 + b"\x15\x03\x03\x00\x02\x01\x00"
    return s

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
for name, seeds in (("websocket", seeds_websocket()), ("hub", seeds_hub()), ("tls", seeds_tls())):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    for f, data in seeds.items():
        with open(os.path.join(d, f), "wb") as fh:
            fh.write(data)
    print(name, len(seeds), "seeds,", sum(len(v) for v in seeds.values()), "bytes")
