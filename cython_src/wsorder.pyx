# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Binance WebSocket API order frames built in C: parameters, HMAC signature, JSON and the
RFC 6455 client frame (header, mask key, masked payload), ready for the socket.

Why: on the executor's path from "target seen" to "request on the socket", building one
``order.modify`` in Python (parameter dict, decimal strings, sorted ``k=v`` payload,
signature, ``orjson``, then ``websockets``' Frame objects and masking) cost ~30 us of the
~50 us before the write when the caches are cold after an idle wait; here it is one call.

What is signed is what is sent: the WebSocket API signs every parameter but
``signature``, sorted by name, as ``k=v`` joined by ``&`` (values not URL-encoded); this
writes the parameters into the JSON in that same order from the same bytes. Text fields
(symbol, client order id, API key) must be of Binance's client-id alphabet
(``[A-Za-z0-9._:/-]``), which needs no JSON escaping and cannot break the ``k=v`` payload;
anything else raises ``ValueError`` and the caller uses the Python encoder
(``mmshm.venues.binance_usdm.trading``: ``order_params``/``modify_params`` +
``auth.ws_signed_params`` + ``orjson``), which the tests hold this to, field for field.

The HMAC-SHA256 runs on OpenSSL's SHA-256 (libcrypto, as ``hashlib``) from the keyed
inner/outer states, computed once from the :class:`~mmshm.venues.binance_usdm.auth.Signer`'s
key blocks and copied by value per request (``hashlib``'s state copies, method calls and
digest objects cost ~1 us a request, several when the caches are cold). Mask keys come from a pool filled from ``os.urandom`` (RFC 6455: "derived
from a strong source of entropy"), 4 bytes a frame, refilled every 1,024 frames.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import os

cdef const char *HEX = b"0123456789abcdef"
cdef dict _ERRORS = {
    ERR_SIDE: "side is neither BUY (1) nor SELL (2)",
    ERR_CLIENT_ID: "client order id is empty, too long or outside [A-Za-z0-9._:/-]",
    ERR_PRICE: "price ticks are negative or the price overflows",
    ERR_QTY: "quantity lots are negative or the quantity overflows",
    ERR_PARAMS: "request parameters too long",
    ERR_JSON: "request JSON too long",
    ERR_SPACE: "no room left in the output buffer",
}


cdef inline void put(Out *o, const char *s, int n) noexcept nogil:
    if o.n + n > o.cap:
        o.overflow = True
        return
    memcpy(o.p + o.n, s, n)
    o.n += n


cdef inline void put_c(Out *o, const char *s) noexcept nogil:
    cdef int n = 0
    while s[n]:
        n += 1
    put(o, s, n)


cdef inline void put_int(Out *o, int64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef int i = 24
    cdef bint neg = v < 0
    cdef uint64_t u = <uint64_t>(-v) if neg else <uint64_t>v
    while True:
        i -= 1
        tmp[i] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if neg:
        i -= 1
        tmp[i] = b'-'
    put(o, tmp + i, 24 - i)


cdef inline bint put_decimal(Out *o, int64_t units, int64_t mantissa, int exp) noexcept nogil:
    """``units * mantissa * 10**exp`` exactly as ``mmshm.instruments._format`` writes it
    (all fraction digits kept: 10 lots of 0.001 is "0.010"); False on int64 overflow."""
    cdef char digits[40]
    cdef int nd = 0, i, width
    cdef uint64_t u
    cdef int64_t v
    if units < 0 or mantissa <= 0:
        return False
    if units != 0 and mantissa > <int64_t>0x7FFFFFFFFFFFFFFF // units:
        return False
    v = units * mantissa
    u = <uint64_t>v
    while True:                                  # digits, least significant first
        digits[nd] = <char>(48 + u % 10)
        nd += 1
        u //= 10
        if u == 0:
            break
    if exp >= 0:
        for i in range(nd - 1, -1, -1):
            put(o, &digits[i], 1)
        if v != 0:                               # (zero is "0", not "00")
            for i in range(exp):
                put(o, b"0", 1)
        return True
    width = -exp + 1                             # at least one digit before the point
    while nd < width:
        digits[nd] = b'0'
        nd += 1
    for i in range(nd - 1, -exp - 1, -1):
        put(o, &digits[i], 1)
    put(o, b".", 1)
    for i in range(-exp - 1, -1, -1):
        put(o, &digits[i], 1)
    return True


cdef bint _safe(const char *s, Py_ssize_t n) noexcept nogil:
    """Binance's client order id alphabet: no JSON escaping, no '&' or '='."""
    cdef Py_ssize_t i
    cdef char c
    if n <= 0:
        return False
    for i in range(n):
        c = s[i]
        if not ((b'a' <= c <= b'z') or (b'A' <= c <= b'Z') or (b'0' <= c <= b'9')
                or c == b'.' or c == b'_' or c == b':' or c == b'/' or c == b'-'):
            return False
    return True


cdef bytes _checked(object text, int limit, str what):
    cdef bytes b = text.encode() if isinstance(text, str) else bytes(text)
    if PyBytes_GET_SIZE(b) > limit or not _safe(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)):
        raise ValueError(f"{what} is empty, too long or outside [A-Za-z0-9._:/-]")
    return b


cdef class WsOrderEncoder:
    """Signed, masked ``order.place`` / ``order.modify`` / ``order.cancel`` frames for one
    API key; instruments registered once (symbol and grid) by their table index."""
    def __init__(self, str api_key, bytes inner_pad, bytes outer_pad, recv_window_ms=None) -> None:
        """``inner_pad``/``outer_pad``: the HMAC key blocks (RFC 2104: the key XOR ipad /
        opad, 64 bytes each; ``Signer.hmac_pads()``)."""
        cdef bytes k = _checked(api_key, MAX_KEY, "API key")
        if len(inner_pad) != 64 or len(outer_pad) != 64:
            raise ValueError("the HMAC key blocks are 64 bytes each")
        memcpy(self.api_key, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))
        self.api_key_len = <int>PyBytes_GET_SIZE(k)
        self.recv_window = -1 if recv_window_ms is None else int(recv_window_ms)
        SHA256_Init(&self.inner)
        SHA256_Update(&self.inner, PyBytes_AS_STRING(inner_pad), 64)
        SHA256_Init(&self.outer)
        SHA256_Update(&self.outer, PyBytes_AS_STRING(outer_pad), 64)
        self.pool_pos = POOL

    def add_instrument(self, int index, object symbol, int64_t tick_mantissa, int price_exp,
                       int64_t lot_mantissa, int qty_exp) -> None:
        if not 0 <= index < MAX_INSTRUMENTS:
            raise ValueError(f"instrument index {index} outside [0, {MAX_INSTRUMENTS})")
        if tick_mantissa <= 0 or lot_mantissa <= 0 or not (-18 <= price_exp <= 18 and -18 <= qty_exp <= 18):
            raise ValueError("tick and lot mantissas must be > 0 and exponents within [-18, 18]")
        cdef bytes s = _checked(symbol, MAX_TEXT, "symbol")
        cdef Grid *g = &self.grids[index]
        memcpy(g.symbol, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))
        g.symbol_len = <int>PyBytes_GET_SIZE(s)
        g.tick_mantissa, g.price_exp = tick_mantissa, price_exp
        g.lot_mantissa, g.qty_exp = lot_mantissa, qty_exp
        g.used = True

    def has_instrument(self, int index) -> bool:
        return 0 <= index < MAX_INSTRUMENTS and self.grids[index].used

    # ------------------------------------------------------------------ requests
    def place(self, int64_t rid, int instrument, object client_id, int side, int64_t price, int64_t qty,
              bint post_only, bint reduce_only, int64_t timestamp_ms) -> bytes:
        """``order.place`` of a LIMIT order (GTX when post-only, else GTC)."""
        return self._frame(PLACE, rid, instrument, client_id, side, price, qty, post_only, reduce_only, timestamp_ms)

    def modify(self, int64_t rid, int instrument, object client_id, int side, int64_t price, int64_t qty,
               int64_t timestamp_ms) -> bytes:
        """``order.modify`` by client order id (new price and quantity, same side)."""
        return self._frame(MODIFY, rid, instrument, client_id, side, price, qty, False, False, timestamp_ms)

    def cancel(self, int64_t rid, int instrument, object client_id, int64_t timestamp_ms) -> bytes:
        """``order.cancel`` by client order id."""
        return self._frame(CANCEL, rid, instrument, client_id, 0, 0, 0, False, False, timestamp_ms)

    cdef bytes _frame(self, int method, int64_t rid, int instrument, object client_id, int side,
                      int64_t price, int64_t qty, bint post_only, bint reduce_only, int64_t ts):
        cdef char buf[BUF + 16]
        cdef Out out
        cdef bytes cid = _checked(client_id, MAX_TEXT, "client order id")
        cdef int err
        out.p, out.n, out.cap, out.overflow = buf, 0, BUF + 16, False
        err = self.frame_into(&out, method, rid, instrument, PyBytes_AS_STRING(cid), <int>PyBytes_GET_SIZE(cid),
                              side, price, qty, post_only, reduce_only, ts)
        if err:
            raise ValueError(_ERRORS[err] if err != ERR_INSTRUMENT else
                             f"instrument {instrument} not registered with the encoder")
        return PyBytes_FromStringAndSize(buf, out.n)

    cdef int frame_into(self, Out *out, int method, int64_t rid, int instrument, const char *cidp, int cidn,
                        int side, int64_t price, int64_t qty, bint post_only, bint reduce_only,
                        int64_t ts) except -1:
        """Append one request's whole masked frame to ``out``: 0, or an ERR_* code (nothing
        appended: the request is outside what this encoder frames; the caller uses the
        Python encoder)."""
        cdef char pbuf[BUF]
        cdef char jbuf[BUF]
        cdef char sig[64]
        cdef Out pay, js
        cdef Grid *g
        cdef SHA256_CTX ctx
        cdef unsigned char mac[32]
        cdef int i, n, hdr
        cdef uint8_t *f
        cdef const uint8_t *d
        if not 0 <= instrument < MAX_INSTRUMENTS or not self.grids[instrument].used:
            return ERR_INSTRUMENT
        if side != 1 and side != 2 and method != CANCEL:
            return ERR_SIDE
        if cidn > MAX_TEXT or not _safe(cidp, cidn):
            return ERR_CLIENT_ID
        g = &self.grids[instrument]
        # --- the signed payload: every parameter but signature, sorted by name
        pay.p, pay.n, pay.cap, pay.overflow = pbuf, 0, BUF, False
        put_c(&pay, b"apiKey=")
        put(&pay, self.api_key, self.api_key_len)
        if method == PLACE:
            put_c(&pay, b"&newClientOrderId=")
        else:
            put_c(&pay, b"&origClientOrderId=")
        put(&pay, cidp, cidn)
        if method != CANCEL:
            put_c(&pay, b"&price=")
            if not put_decimal(&pay, price, g.tick_mantissa, g.price_exp):
                return ERR_PRICE
            put_c(&pay, b"&quantity=")
            if not put_decimal(&pay, qty, g.lot_mantissa, g.qty_exp):
                return ERR_QTY
        if self.recv_window >= 0:
            put_c(&pay, b"&recvWindow=")
            put_int(&pay, self.recv_window)
        if reduce_only:
            put_c(&pay, b"&reduceOnly=true")
        if method != CANCEL:
            if side == 1:
                put_c(&pay, b"&side=BUY")
            else:
                put_c(&pay, b"&side=SELL")
        put_c(&pay, b"&symbol=")
        put(&pay, g.symbol, g.symbol_len)
        if method == PLACE:
            if post_only:
                put_c(&pay, b"&timeInForce=GTX")
            else:
                put_c(&pay, b"&timeInForce=GTC")
        put_c(&pay, b"&timestamp=")
        put_int(&pay, ts)
        if method == PLACE:
            put_c(&pay, b"&type=LIMIT")
        if pay.overflow:
            return ERR_PARAMS
        # --- HMAC-SHA256 on copies of the keyed states, hex
        ctx = self.inner
        SHA256_Update(&ctx, pbuf, pay.n)
        SHA256_Final(mac, &ctx)
        ctx = self.outer
        SHA256_Update(&ctx, mac, 32)
        SHA256_Final(mac, &ctx)
        d = mac
        for i in range(32):
            sig[2 * i] = HEX[d[i] >> 4]
            sig[2 * i + 1] = HEX[d[i] & 15]
        # --- the JSON: the payload's k=v pairs as "k":"v" (numbers bare), then the signature
        js.p, js.n, js.cap, js.overflow = jbuf, 0, BUF, False
        put_c(&js, b'{"id":"')
        put_int(&js, rid)
        put_c(&js, b'","method":"')
        if method == PLACE:
            put_c(&js, b"order.place")
        elif method == MODIFY:
            put_c(&js, b"order.modify")
        else:
            put_c(&js, b"order.cancel")
        put_c(&js, b'","params":{')
        _pairs_to_json(&js, pbuf, pay.n)
        put_c(&js, b',"signature":"')
        put(&js, sig, 64)
        put_c(&js, b'"}}')
        if js.overflow:
            return ERR_JSON
        # --- RFC 6455 client frame: FIN + text, masked, 7- or 16-bit length
        n = js.n
        hdr = 2 + (2 if n >= 126 else 0)
        if out.n + hdr + 4 + n > out.cap:
            return ERR_SPACE
        f = <uint8_t *>(out.p + out.n)
        f[0] = 0x81
        if n < 126:
            f[1] = 0x80 | n
        else:
            f[1] = 0x80 | 126
            f[2] = (n >> 8) & 0xFF
            f[3] = n & 0xFF
        if self.pool_pos + 4 > POOL:
            self._refill()
        memcpy(f + hdr, &self.pool[self.pool_pos], 4)
        self.pool_pos += 4
        for i in range(n):
            f[hdr + 4 + i] = (<uint8_t>jbuf[i]) ^ f[hdr + (i & 3)]
        out.n += hdr + 4 + n
        return 0

    cdef void _refill(self) except *:
        cdef bytes fresh = os.urandom(POOL)
        memcpy(self.pool, PyBytes_AS_STRING(fresh), POOL)
        self.pool_pos = 0


cdef void _pairs_to_json(Out *js, const char *p, int n) noexcept nogil:
    """``a=1&b=x`` -> ``"a":1,"b":"x"``: timestamp and recvWindow as JSON numbers (Binance's
    documented types), every other value a string."""
    cdef int i = 0, k0, k1, v0
    cdef bint number
    while i < n:
        k0 = i
        while i < n and p[i] != b'=':
            i += 1
        k1 = i
        i += 1
        v0 = i
        while i < n and p[i] != b'&':
            i += 1
        number = ((k1 - k0 == 9 and _eq(p + k0, b"timestamp", 9))
                  or (k1 - k0 == 10 and _eq(p + k0, b"recvWindow", 10)))
        if k0:
            put(js, b",", 1)
        put(js, b'"', 1)
        put(js, p + k0, k1 - k0)
        put(js, b'":', 2)
        if not number:
            put(js, b'"', 1)
        put(js, p + v0, i - v0)
        if not number:
            put(js, b'"', 1)
        i += 1


cdef inline bint _eq(const char *a, const char *b, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True
