# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Binance USD-M market-data frames -> typed int64 fields, without json.loads, float or Decimal.

One pass over the raw bytes with a small validating JSON scanner: keys are found by name
(Binance does not promise an order), values of the keys we use are converted on the spot
(integers, decimal strings straight to ticks/lots of the instrument, level arrays into
preallocated int64 buffers), everything else is skipped but still checked to be
well-formed JSON. Anything we cannot take exactly is a counted drop with a reason code
(``drops[reason]``), never an exception: a hostile or broken frame costs one counter.

Accepted frames: combined-stream ``{"stream":..,"data":{...}}`` or a bare event object
(``depthUpdate``, ``bookTicker``, ``trade``, ``aggTrade``), the REST depth snapshot
``{"lastUpdateId":..,"bids":..,"asks":..}``, and subscription replies (``result``/``id``/
``error``) which are reported as K_CONTROL for the caller to look at.
"""
from libc.stdint cimport uint8_t, uint16_t, int64_t, uint64_t, INT64_MAX
from libc.string cimport memcmp, memset, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from atomics cimport mm_monotonic_ns
from records cimport MarketEvent

import numpy as np

# ------------------------------------------------------------------ public codes
cdef enum:
    CK_NONE = 0
    CK_DEPTH = 1
    CK_BOOK_TICKER = 2
    CK_TRADE = 3
    CK_AGG_TRADE = 4
    CK_SNAPSHOT = 5
    CK_CONTROL = 6
cdef enum:
    CD_NONE = 0
    CD_MALFORMED = 1
    CD_UNKNOWN_STREAM = 2
    CD_MISSING_FIELD = 3
    CD_BAD_NUMBER = 4
    CD_NEGATIVE = 5
    CD_OVERFLOW = 6
    CD_OFF_TICK = 7
    CD_OFF_LOT = 8
    CD_TOO_MANY_LEVELS = 9
    CD_WRONG_SYMBOL = 10
    CD_ZERO_PRICE = 11

# Kinds (K_*): what a parsed frame is. Index into `messages`.
K_NONE = 0
K_DEPTH = 1
K_BOOK_TICKER = 2
K_TRADE = 3
K_AGG_TRADE = 4
K_SNAPSHOT = 5
K_CONTROL = 6
KIND_NAMES = ("dropped", "depth", "bookTicker", "trade", "aggTrade", "snapshot", "control")

# Drop reasons (D_*): index into `drops`.
D_NONE = 0
D_MALFORMED = 1        # not well-formed JSON (or nested too deep, trailing bytes)
D_UNKNOWN_STREAM = 2   # well-formed, but an event type we do not handle
D_MISSING_FIELD = 3    # a field the event type needs is absent
D_BAD_NUMBER = 4       # not a plain decimal/integer (NaN, inf, 1e5, empty, wrong type)
D_NEGATIVE = 5         # a negative number where none is allowed
D_OVERFLOW = 6         # does not fit int64 (after scaling to ticks/lots)
D_OFF_TICK = 7         # price not a whole number of ticks
D_OFF_LOT = 8          # quantity not a whole number of lots
D_TOO_MANY_LEVELS = 9  # more levels in one side than the parser's buffers hold
D_WRONG_SYMBOL = 10    # `s` is not the parser's symbol
D_ZERO_PRICE = 11      # a price of zero
DROP_NAMES = ("none", "malformed", "unknown_stream", "missing_field", "bad_number", "negative",
              "overflow", "off_tick", "off_lot", "too_many_levels", "wrong_symbol", "zero_price")

cdef enum:
    N_KINDS = 7
    N_DROPS = 12
    MAX_DEPTH = 16
    # number token status
    NS_OK = 0
    NS_BAD = 4
    NS_NEG = 5
    NS_OVF = 6
    # event types seen in "e"
    EV_NONE = 0
    EV_UNKNOWN = -1
    # field bits
    F_E = 1 << 0          # E
    F_T = 1 << 1          # T
    F_UF = 1 << 2         # U
    F_UL = 1 << 3         # u
    F_PU = 1 << 4         # pu
    F_BARR = 1 << 5       # b as levels
    F_AARR = 1 << 6       # a as levels
    F_BPX = 1 << 7        # b as price string
    F_BQ = 1 << 8         # B
    F_APX = 1 << 9        # a as price string
    F_AQ = 1 << 10        # A
    F_P = 1 << 11
    F_Q = 1 << 12
    F_TID = 1 << 13       # t
    F_AGG = 1 << 14       # a as integer (aggTrade id)
    F_M = 1 << 15
    F_LID = 1 << 16
    F_BIDS = 1 << 17
    F_ASKS = 1 << 18
    F_CTRL = 1 << 19      # result / id / error
    F_SYM = 1 << 20

cdef unsigned int REQ_DEPTH = F_UF | F_UL | F_PU | F_BARR | F_AARR | F_E
cdef unsigned int REQ_TICKER = F_UL | F_BPX | F_BQ | F_APX | F_AQ
cdef unsigned int REQ_TRADE = F_P | F_Q | F_TID | F_T | F_M
cdef unsigned int REQ_AGG = F_P | F_Q | F_AGG | F_T | F_M
cdef unsigned int REQ_SNAPSHOT = F_LID | F_BIDS | F_ASKS

cdef int64_t I64_DIV10 = INT64_MAX // 10   # overflow test per digit without a division
cdef int64_t[19] POW10
cdef int64_t[19] MAX_BEFORE_POW10   # INT64_MAX // POW10[k]: no division in the hot path
POW10[0] = 1
for _i in range(1, 19):
    POW10[_i] = POW10[_i - 1] * 10
for _i in range(19):
    MAX_BEFORE_POW10[_i] = INT64_MAX // POW10[_i]


# ------------------------------------------------------------------ scanner primitives
cdef inline const uint8_t *ws(const uint8_t *p, const uint8_t *end) noexcept nogil:
    while p < end and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p


cdef inline bint is_digit(uint8_t c) noexcept nogil:
    return 48 <= c <= 57


cdef const uint8_t *skip_string(const uint8_t *p, const uint8_t *end) noexcept nogil:
    """`p` at the opening quote; returns just past the closing quote, NULL if malformed."""
    p += 1
    while p < end:
        if p[0] == 34:
            return p + 1
        if p[0] == 92:
            p += 2
            continue
        if p[0] < 32:
            return NULL
        p += 1
    return NULL


cdef const uint8_t *skip_number(const uint8_t *p, const uint8_t *end) noexcept nogil:
    """A JSON number per the grammar; NULL if it is not one."""
    if p < end and p[0] == 45:
        p += 1
    if p >= end or not is_digit(p[0]):
        return NULL
    while p < end and is_digit(p[0]):
        p += 1
    if p < end and p[0] == 46:
        p += 1
        if p >= end or not is_digit(p[0]):
            return NULL
        while p < end and is_digit(p[0]):
            p += 1
    if p < end and (p[0] == 101 or p[0] == 69):
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            p += 1
        if p >= end or not is_digit(p[0]):
            return NULL
        while p < end and is_digit(p[0]):
            p += 1
    return p


cdef const uint8_t *skip_value(const uint8_t *p, const uint8_t *end, int depth) noexcept nogil:
    """Skip one JSON value starting at `p` (no leading whitespace); NULL if malformed."""
    cdef uint8_t c
    if p >= end:
        return NULL
    c = p[0]
    if c == 34:
        return skip_string(p, end)
    if c == 123 or c == 91:
        if depth >= MAX_DEPTH:
            return NULL
        p = ws(p + 1, end)
        if p < end and p[0] == c + 2:   # '}' = '{'+2, ']' = '['+2
            return p + 1
        while True:
            if c == 123:
                if p >= end or p[0] != 34:
                    return NULL
                p = skip_string(p, end)
                if p == NULL:
                    return NULL
                p = ws(p, end)
                if p >= end or p[0] != 58:
                    return NULL
                p = ws(p + 1, end)
            p = skip_value(p, end, depth + 1)
            if p == NULL:
                return NULL
            p = ws(p, end)
            if p >= end:
                return NULL
            if p[0] == 44:
                p = ws(p + 1, end)
                continue
            if p[0] == c + 2:
                return p + 1
            return NULL
    if c == 45 or is_digit(c):
        return skip_number(p, end)
    if c == 116 and end - p >= 4 and memcmp(p, b"true", 4) == 0:
        return p + 4
    if c == 102 and end - p >= 5 and memcmp(p, b"false", 5) == 0:
        return p + 5
    if c == 110 and end - p >= 4 and memcmp(p, b"null", 4) == 0:
        return p + 4
    return NULL


cdef const uint8_t *scan_decimal(const uint8_t *p, const uint8_t *end, int64_t *digits,
                                 int *frac, int *status) noexcept nogil:
    """A decimal in a string ("61800.20") or bare: digits as an integer and the number of
    significant fraction digits (trailing zeros dropped, so long zero padding cannot
    overflow). Returns the position after the token (NULL if structurally malformed);
    `status` says whether the value is a usable non-negative plain decimal."""
    cdef const uint8_t *q
    cdef const uint8_t *stop
    cdef int64_t d = 0
    cdef int f = 0, zeros = 0, nd = 0, j
    cdef bint in_frac = False
    cdef uint8_t c
    status[0] = NS_OK
    if p[0] == 34:
        # one pass over the string: digits, one '.', the closing quote; anything else
        # (sign, exponent, escape, NaN...) ends in skip_string for the structure.
        q = p + 1
        while True:
            if q >= end:
                return NULL
            c = q[0]
            if 48 <= c <= 57:
                nd += 1
                if in_frac and c == 48:
                    zeros += 1
                else:
                    if in_frac:
                        for j in range(zeros):
                            if d > INT64_MAX // 10:
                                status[0] = NS_OVF
                                return skip_string(p, end)
                            d *= 10
                        f += zeros + 1
                        zeros = 0
                    if d >= I64_DIV10 and (d > I64_DIV10 or c > 55):   # would pass INT64_MAX (...807)
                        status[0] = NS_OVF
                        return skip_string(p, end)
                    d = d * 10 + (c - 48)
            elif c == 34:
                stop = q + 1
                break
            elif c == 46 and not in_frac:
                in_frac = True
            else:
                status[0] = NS_NEG if (c == 45 and q == p + 1) else NS_BAD
                return skip_string(p, end)
            q += 1
    else:
        stop = skip_value(p, end, MAX_DEPTH - 2)   # a number, or some other well-formed value
        if stop == NULL:
            return NULL
        if not (p[0] == 45 or is_digit(p[0])):
            status[0] = NS_BAD
            return stop
        if p[0] == 45:
            status[0] = NS_NEG
            return stop
        q = p
        while q < stop:
            c = q[0]
            if is_digit(c):
                nd += 1
                if in_frac and c == 48:
                    zeros += 1
                else:
                    if in_frac:
                        for j in range(zeros):
                            if d > INT64_MAX // 10:
                                status[0] = NS_OVF
                                return stop
                            d *= 10
                        f += zeros + 1
                        zeros = 0
                    if d >= I64_DIV10 and (d > I64_DIV10 or c > 55):   # would pass INT64_MAX (...807)
                        status[0] = NS_OVF
                        return stop
                    d = d * 10 + (c - 48)
            elif c == 46 and not in_frac:
                in_frac = True
            else:
                status[0] = NS_BAD
                return stop
            q += 1
    if nd == 0:
        status[0] = NS_BAD
        return stop
    digits[0] = d
    frac[0] = f
    return stop


cdef const uint8_t *scan_int(const uint8_t *p, const uint8_t *end, int64_t *out, int *status) noexcept nogil:
    """A non-negative JSON integer (bare). Strings, fractions, exponents: NS_BAD."""
    cdef const uint8_t *stop
    cdef const uint8_t *q = p
    cdef int64_t v = 0
    cdef uint8_t c
    status[0] = NS_OK
    # fast path: 1..18 digits ended by anything that cannot continue a JSON number (the
    # token skip_value would find); otherwise the general path below.
    cdef int nd = 0
    q = fast_digits(p, end, &v, &nd, True)
    if 0 < nd <= 18 and (q >= end or not (48 <= q[0] <= 57 or q[0] == 46 or q[0] == 101 or q[0] == 69)):
        out[0] = v
        return q
    v = 0
    stop = skip_value(p, end, MAX_DEPTH - 2)
    if stop == NULL:
        return NULL
    if p[0] == 45:
        status[0] = NS_NEG
        return stop
    if not is_digit(p[0]):
        status[0] = NS_BAD
        return stop
    while p < stop:
        c = p[0]
        if not is_digit(c):
            status[0] = NS_BAD
            return stop
        if v >= I64_DIV10 and (v > I64_DIV10 or c > 55):
            status[0] = NS_OVF
            return stop
        v = v * 10 + (c - 48)
        p += 1
    out[0] = v
    return stop


cdef inline int to_units(int64_t digits, int frac, int unit_exp, int64_t unit_mantissa,
                         int64_t *out) noexcept nogil:
    """digits * 10**-frac / (unit_mantissa * 10**unit_exp) exactly: 0 ok, 1 off grid, 2 overflow."""
    cdef int k = -frac - unit_exp
    cdef int64_t v
    if k >= 0:
        if k > 18:
            if digits == 0:
                out[0] = 0
                return 0
            return 2
        if digits > MAX_BEFORE_POW10[k]:
            return 2
        v = digits * POW10[k]
    else:
        if -k > 18:
            if digits == 0:
                out[0] = 0
                return 0
            return 1
        if digits % POW10[-k] != 0:
            return 1
        v = digits // POW10[-k]
    if unit_mantissa != 1:
        if v % unit_mantissa != 0:
            return 1
        v = v // unit_mantissa
    out[0] = v
    return 0


import sys as _sys
cdef bint LITTLE_ENDIAN = _sys.byteorder == "little"


cdef inline int eight_digits(const uint8_t *q, int64_t *out) noexcept nogil:
    """1 and their value if the 8 bytes at q are all ASCII digits (little-endian SWAR), else 0."""
    cdef uint64_t x
    memcpy(&x, q, 8)
    if ((x & 0xF0F0F0F0F0F0F0F0ULL) | (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) \
            != 0x3333333333333333ULL:
        return 0
    x -= 0x3030303030303030ULL
    x = x * 10 + (x >> 8)
    x = (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)))
         + (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32
    out[0] = <int64_t>x
    return 1


cdef inline const uint8_t *fast_digits(const uint8_t *q, const uint8_t *end, int64_t *v, int *nd,
                                       bint swar) noexcept nogil:
    """Accumulate the digits at q into v (nd counts them), stopping at 19 digits at most so
    v cannot overflow as long as the caller rejects nd > 18. Returns the first non-digit.
    swar: try 8 digits at a time first (for long runs such as ids and ms timestamps; a
    price like 61800.20 never has 8 digits in a row, so the decimal scans skip the test)."""
    cdef int64_t e
    while swar and LITTLE_ENDIAN and nd[0] <= 10 and end - q >= 8 and eight_digits(q, &e):
        v[0] = v[0] * 100000000 + e
        nd[0] += 8
        q += 8
    while q < end and 48 <= q[0] <= 57 and nd[0] < 19:
        v[0] = v[0] * 10 + (q[0] - 48)
        nd[0] += 1
        q += 1
    return q


cdef inline const uint8_t *fast_decimal(const uint8_t *p, const uint8_t *end, int64_t *digits,
                                        int *frac) noexcept nogil:
    """The common plain form "123.4500" (p at the quote): at least one integer digit, at
    most 18 digits in all (no overflow), an optional '.', the closing quote. Returns past
    the quote with the same digits/frac scan_decimal gives, or NULL for anything else (the
    caller then runs scan_decimal)."""
    cdef int64_t d = 0
    cdef int nd = 0, f
    cdef const uint8_t *q
    if p[0] != 34:
        return NULL
    q = fast_digits(p + 1, end, &d, &nd, False)
    f = nd
    if nd and q < end and q[0] == 46:
        q = fast_digits(q + 1, end, &d, &nd, False)
    f = nd - f
    if nd == 0 or nd > 18 or q >= end or q[0] != 34:
        return NULL
    while f and d % 10 == 0:         # trailing fraction zeros are not significant
        d //= 10
        f -= 1
    digits[0] = d
    frac[0] = f
    return q + 1


cdef inline const uint8_t *decimal_units(const uint8_t *p, const uint8_t *end, int unit_exp,
                                         int64_t unit_mantissa, int64_t *out, int *status,
                                         int *r) noexcept nogil:
    """A decimal token to units: `status` NS_*, and when NS_OK `r` from to_units (out is
    written only when both are 0). NULL if structurally malformed."""
    cdef int64_t d = 0
    cdef int f = 0
    cdef const uint8_t *q = fast_decimal(p, end, &d, &f)
    status[0] = NS_OK
    r[0] = 0
    if q == NULL:
        q = scan_decimal(p, end, &d, &f, status)
        if q == NULL or status[0] != NS_OK:
            return q
    r[0] = to_units(d, f, unit_exp, unit_mantissa, out)
    return q


cdef class BinanceParser:
    """Parses frames for ONE instrument (its tick/lot grid and, optionally, its symbol).

    ``parse(frame)`` returns the kind (K_*, > 0) or 0 for a drop (reason in
    ``drop_reason``); the fields of the last parse are attributes, the level arrays of a
    depth diff or snapshot are ``bids_px[:n_bids]``, ``bids_qty[:n_bids]`` (and asks), in
    the order the venue sent them. ``messages[kind]`` and ``drops[reason]`` count every
    call. A multi-symbol feed keeps one parser per symbol.
    """

    def __init__(self, int price_exp, int64_t tick_mantissa, int qty_exp, int64_t lot_mantissa,
                 symbol=None, Py_ssize_t max_levels=5000):
        if tick_mantissa <= 0 or lot_mantissa <= 0:
            raise ValueError("tick and lot mantissas must be positive")
        if not (-18 <= price_exp <= 18 and -18 <= qty_exp <= 18):
            raise ValueError("exponents must be in [-18, 18]")
        if max_levels <= 0:
            raise ValueError("max_levels must be positive")
        self.price_exp = price_exp
        self.qty_exp = qty_exp
        self.tick_mantissa = tick_mantissa
        self.lot_mantissa = lot_mantissa
        self.max_levels = max_levels
        self.bids_px = np.zeros(max_levels, np.int64)
        self.bids_qty = np.zeros(max_levels, np.int64)
        self.asks_px = np.zeros(max_levels, np.int64)
        self.asks_qty = np.zeros(max_levels, np.int64)
        self.messages = np.zeros(N_KINDS, np.int64)
        self.drops = np.zeros(N_DROPS, np.int64)
        cdef int64_t[::1] mv
        mv = self.bids_px; self._bpx = &mv[0]
        mv = self.bids_qty; self._bqty = &mv[0]
        mv = self.asks_px; self._apx = &mv[0]
        mv = self.asks_qty; self._aqty = &mv[0]
        mv = self.messages; self._msgs = &mv[0]
        mv = self.drops; self._drops = &mv[0]
        if symbol is None:
            self._symbol = None
            self._sym = NULL
            self._sym_len = 0
        else:
            self._symbol = symbol.encode() if isinstance(symbol, str) else bytes(symbol)
            self._sym = <const uint8_t *>PyBytes_AS_STRING(self._symbol)
            self._sym_len = len(self._symbol)
        self._events = NULL
        self._n_events = 0

    @classmethod
    def for_spec(cls, spec, Py_ssize_t max_levels=5000):
        """A parser for an ``mmshm.instruments.InstrumentSpec`` (checks its symbol too)."""
        return cls(spec.price_exp, spec.tick_mantissa, spec.qty_exp, spec.lot_mantissa,
                   symbol=spec.symbol, max_levels=max_levels)

    # -------------------------------------------------------------- python entry points
    def parse(self, frame):
        """Parse one frame (bytes; str or any buffer also accepted, slower). Returns kind or 0."""
        cdef const uint8_t[::1] mv
        cdef int k
        if PyBytes_CheckExact(frame):
            return self.parse_c(<const uint8_t *>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
        if isinstance(frame, str):
            frame = (<str>frame).encode("utf-8", "surrogatepass")
            return self.parse_c(<const uint8_t *>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
        mv = memoryview(frame).cast("B")
        if mv.shape[0] == 0:
            return self.parse_c(<const uint8_t *>b"", 0)
        with nogil:
            k = self.parse_c(&mv[0], mv.shape[0])
        return k

    def bind_events(self, events):
        """Write trade events into ``events`` (a C-contiguous MARKET_EVENT array) from now on."""
        from mmshm.records import MARKET_EVENT
        if events.dtype != MARKET_EVENT or not events.flags.c_contiguous or events.ndim != 1 or len(events) == 0:
            raise TypeError("events must be a non-empty 1-D C-contiguous MARKET_EVENT array")
        if events.dtype.itemsize != sizeof(MarketEvent):
            raise TypeError("MARKET_EVENT layout differs from records.pxd")
        cdef uint8_t[::1] raw = events.view(np.uint8)
        self._events = <MarketEvent *>&raw[0]
        self._n_events = len(events)
        self._events_ref = events

    def emit_trade(self, Py_ssize_t slot, uint64_t md_seq, int instrument, int venue, int status,
                   int64_t local_ts):
        """Fill ``events[slot]`` with the last parsed trade/aggTrade (MdKind.TRADE). Returns 1."""
        if self._events == NULL or not (0 <= slot < self._n_events):
            raise IndexError("no bound events buffer or slot out of range")
        if self.kind != CK_TRADE and self.kind != CK_AGG_TRADE:
            raise ValueError("last parse was not a trade")
        return self.emit_trade_c(slot, md_seq, instrument, venue, status, local_ts)

    def counters(self):
        """``{"messages": {kind: n}, "drops": {reason: n}}`` (non-zero entries only)."""
        return {
            "messages": {KIND_NAMES[i]: int(self.messages[i]) for i in range(1, N_KINDS) if self.messages[i]},
            "drops": {DROP_NAMES[i]: int(self.drops[i]) for i in range(1, N_DROPS) if self.drops[i]},
        }

    @property
    def symbol(self):
        return None if self._symbol is None else self._symbol.decode()

    # -------------------------------------------------------------- C core
    cdef int emit_trade_c(self, Py_ssize_t slot, uint64_t md_seq, int instrument, int venue,
                          int status, int64_t local_ts) noexcept nogil:
        cdef MarketEvent *ev = &self._events[slot]
        memset(ev, 0, sizeof(MarketEvent))
        ev.md_seq = md_seq
        ev.kind = 2   # MdKind.TRADE
        ev.side = 2 if self.buyer_maker else 1   # buyer is maker -> the seller aggressed
        ev.instrument = <uint16_t>instrument
        ev.status = <uint16_t>status
        ev.venue = <uint16_t>venue
        ev.venue_ts = self.transaction_time * 1000000
        ev.local_ts = local_ts
        ev.trade_px = self.trade_px
        ev.trade_qty = self.trade_qty
        ev.trade_id = <uint64_t>self.trade_id
        ev.publish_mono = mm_monotonic_ns()
        return 1

    cdef void _err_set(self, int reason) noexcept nogil:
        if self._err == 0:
            self._err = reason

    cdef const uint8_t *_price(self, const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil:
        cdef int st, r
        p = decimal_units(p, end, self.price_exp, self.tick_mantissa, out, &st, &r)
        if p == NULL:
            return NULL
        if st != NS_OK:
            self._err_set(st)
        elif r == 1:
            self._err_set(CD_OFF_TICK)
        elif r == 2:
            self._err_set(CD_OVERFLOW)
        elif out[0] == 0:
            self._err_set(CD_ZERO_PRICE)
        return p

    cdef const uint8_t *_qty(self, const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil:
        cdef int st, r
        p = decimal_units(p, end, self.qty_exp, self.lot_mantissa, out, &st, &r)
        if p == NULL:
            return NULL
        if st != NS_OK:
            self._err_set(st)
        elif r == 1:
            self._err_set(CD_OFF_LOT)
        elif r == 2:
            self._err_set(CD_OVERFLOW)
        return p

    cdef const uint8_t *_int(self, const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil:
        cdef int st
        p = scan_int(p, end, out, &st)
        if p != NULL and st != NS_OK:
            self._err_set(st)
        return p

    cdef const uint8_t *_levels(self, const uint8_t *p, const uint8_t *end, int64_t *px, int64_t *qty,
                                Py_ssize_t *count) noexcept nogil:
        """`[[px, qty], ...]` into px/qty; extra elements in a level are skipped."""
        cdef Py_ssize_t n = 0
        cdef int64_t tp = 0, tq = 0
        cdef int st, r
        count[0] = 0
        p = ws(p + 1, end)
        if p < end and p[0] == 93:
            return p + 1
        while True:
            if p >= end or p[0] != 91:
                if p < end:   # a level that is not an array: skip it if well-formed
                    p = skip_value(p, end, 2)
                    if p == NULL:
                        return NULL
                    self._err_set(CD_BAD_NUMBER)
                else:
                    return NULL
            else:
                p = ws(p + 1, end)
                if p >= end:
                    return NULL
                p = decimal_units(p, end, self.price_exp, self.tick_mantissa, &tp, &st, &r)
                if p == NULL:
                    return NULL
                if st != NS_OK or r != 0 or tp == 0:    # rare: the same checks as _price
                    self._err_set(st if st != NS_OK else (CD_OFF_TICK if r == 1 else
                                                          (CD_OVERFLOW if r == 2 else CD_ZERO_PRICE)))
                p = ws(p, end)
                if p >= end or p[0] != 44:
                    return NULL
                p = ws(p + 1, end)
                if p >= end:
                    return NULL
                p = decimal_units(p, end, self.qty_exp, self.lot_mantissa, &tq, &st, &r)
                if p == NULL:
                    return NULL
                if st != NS_OK or r != 0:
                    self._err_set(st if st != NS_OK else (CD_OFF_LOT if r == 1 else CD_OVERFLOW))
                p = ws(p, end)
                while p < end and p[0] == 44:
                    p = skip_value(ws(p + 1, end), end, 2)
                    if p == NULL:
                        return NULL
                    p = ws(p, end)
                if p >= end or p[0] != 93:
                    return NULL
                p += 1
                if n < self.max_levels:
                    px[n] = tp
                    qty[n] = tq
                else:
                    self._err_set(CD_TOO_MANY_LEVELS)
                n += 1
            p = ws(p, end)
            if p >= end:
                return NULL
            if p[0] == 44:
                p = ws(p + 1, end)
                continue
            if p[0] == 93:
                count[0] = n if n <= self.max_levels else self.max_levels
                return p + 1
            return NULL

    cdef const uint8_t *_object(self, const uint8_t *p, const uint8_t *end, int depth) noexcept nogil:
        """Fields of an object (p just past '{'); returns past the '}' or NULL if malformed."""
        cdef const uint8_t *k
        cdef Py_ssize_t kl
        cdef uint8_t c0, c
        cdef int64_t dummy
        p = ws(p, end)
        if p < end and p[0] == 125:
            return p + 1
        while True:
            if p >= end or p[0] != 34:
                return NULL
            k = p + 1
            p = skip_string(p, end)
            if p == NULL:
                return NULL
            kl = (p - 1) - k
            p = ws(p, end)
            if p >= end or p[0] != 58:
                return NULL
            p = ws(p + 1, end)
            if p >= end:
                return NULL
            c = p[0]
            c0 = k[0] if kl > 0 else 0
            if kl == 1:
                if c0 == 101:        # e
                    if c == 34:
                        self._event_type(p, end)
                    p = skip_value(p, end, depth + 1)
                elif c0 == 69:       # E
                    p = self._int(p, end, &self.event_time); self._have |= F_E
                elif c0 == 84:       # T
                    p = self._int(p, end, &self.transaction_time); self._have |= F_T
                elif c0 == 85:       # U
                    p = self._int(p, end, &self.first_update_id); self._have |= F_UF
                elif c0 == 117:      # u
                    p = self._int(p, end, &self.update_id); self._have |= F_UL
                elif c0 == 116:      # t
                    p = self._int(p, end, &self.trade_id); self._have |= F_TID
                elif c0 == 98:       # b: levels (depth) or price (bookTicker)
                    if c == 91:
                        p = self._levels(p, end, self._bpx, self._bqty, &self.n_bids); self._have |= F_BARR
                    else:
                        p = self._price(p, end, &self.bid_px); self._have |= F_BPX
                elif c0 == 97:       # a: levels, price, or aggTrade id
                    if c == 91:
                        p = self._levels(p, end, self._apx, self._aqty, &self.n_asks); self._have |= F_AARR
                    elif c == 34:
                        p = self._price(p, end, &self.ask_px); self._have |= F_APX
                    else:
                        p = self._int(p, end, &self.trade_id); self._have |= F_AGG
                elif c0 == 66:       # B
                    p = self._qty(p, end, &self.bid_qty); self._have |= F_BQ
                elif c0 == 65:       # A
                    p = self._qty(p, end, &self.ask_qty); self._have |= F_AQ
                elif c0 == 112:      # p
                    p = self._price(p, end, &self.trade_px); self._have |= F_P
                elif c0 == 113:      # q
                    p = self._qty(p, end, &self.trade_qty); self._have |= F_Q
                elif c0 == 109:      # m
                    if c == 116 and end - p >= 4 and memcmp(p, b"true", 4) == 0:
                        self.buyer_maker = True; p += 4; self._have |= F_M
                    elif c == 102 and end - p >= 5 and memcmp(p, b"false", 5) == 0:
                        self.buyer_maker = False; p += 5; self._have |= F_M
                    else:
                        p = skip_value(p, end, depth + 1)
                        if p != NULL:
                            self._err_set(CD_BAD_NUMBER)
                elif c0 == 115:      # s
                    if c == 34:
                        p = self._symbol_field(p, end)
                    else:
                        p = skip_value(p, end, depth + 1)
                        if p != NULL:
                            self._err_set(CD_WRONG_SYMBOL)
                else:
                    p = skip_value(p, end, depth + 1)
            elif kl == 2 and k[0] == 112 and k[1] == 117:      # pu
                p = self._int(p, end, &self.prev_update_id); self._have |= F_PU
            elif kl == 4 and memcmp(k, b"bids", 4) == 0 and c == 91:
                p = self._levels(p, end, self._bpx, self._bqty, &self.n_bids); self._have |= F_BIDS
            elif kl == 4 and memcmp(k, b"asks", 4) == 0 and c == 91:
                p = self._levels(p, end, self._apx, self._aqty, &self.n_asks); self._have |= F_ASKS
            elif kl == 4 and memcmp(k, b"data", 4) == 0 and c == 123 and depth == 0:
                p = self._object(p + 1, end, 1)
            elif kl == 12 and memcmp(k, b"lastUpdateId", 12) == 0:
                p = self._int(p, end, &self.last_update_id); self._have |= F_LID
            elif (kl == 6 and memcmp(k, b"result", 6) == 0) or (kl == 5 and memcmp(k, b"error", 5) == 0) \
                    or (kl == 2 and k[0] == 105 and k[1] == 100):
                self._have |= F_CTRL
                p = skip_value(p, end, depth + 1)
            else:
                p = skip_value(p, end, depth + 1)
            if p == NULL:
                return NULL
            p = ws(p, end)
            if p >= end:
                return NULL
            if p[0] == 44:
                p = ws(p + 1, end)
                continue
            if p[0] == 125:
                return p + 1
            return NULL

    cdef void _event_type(self, const uint8_t *p, const uint8_t *end) noexcept nogil:
        cdef const uint8_t *stop = skip_string(p, end)
        cdef Py_ssize_t n
        if stop == NULL:
            return
        p += 1
        n = (stop - 1) - p
        if n == 11 and memcmp(p, b"depthUpdate", 11) == 0:
            self._ev = CK_DEPTH
        elif n == 10 and memcmp(p, b"bookTicker", 10) == 0:
            self._ev = CK_BOOK_TICKER
        elif n == 5 and memcmp(p, b"trade", 5) == 0:
            self._ev = CK_TRADE
        elif n == 8 and memcmp(p, b"aggTrade", 8) == 0:
            self._ev = CK_AGG_TRADE
        else:
            self._ev = EV_UNKNOWN

    cdef const uint8_t *_symbol_field(self, const uint8_t *p, const uint8_t *end) noexcept nogil:
        cdef const uint8_t *stop = skip_string(p, end)
        if stop == NULL:
            return NULL
        self._have |= F_SYM
        if self._sym != NULL:
            if (stop - 1) - (p + 1) != self._sym_len or memcmp(p + 1, self._sym, self._sym_len) != 0:
                self._err_set(CD_WRONG_SYMBOL)
        return stop

    cdef int parse_c(self, const uint8_t *buf, Py_ssize_t n) noexcept nogil:
        """Parse `buf[:n]`; returns the kind (> 0) or 0 with `drop_reason` set. Never fails."""
        cdef const uint8_t *end = buf + n
        cdef const uint8_t *p = ws(buf, end)
        cdef int kind = CK_NONE
        cdef unsigned int req = 0
        self._have = 0
        self._ev = EV_NONE
        self._err = 0
        self.n_bids = 0
        self.n_asks = 0
        self.event_time = 0
        self.transaction_time = 0
        self.trade_qty = 0
        if p < end and p[0] == 123:
            p = self._object(p + 1, end, 0)
            if p != NULL:
                p = ws(p, end)
                if p != end:
                    p = NULL
        else:
            p = NULL
        if p == NULL:
            self._err = CD_MALFORMED
        elif self._ev == CK_DEPTH:
            kind = CK_DEPTH; req = REQ_DEPTH
        elif self._ev == CK_BOOK_TICKER:
            kind = CK_BOOK_TICKER; req = REQ_TICKER
        elif self._ev == CK_TRADE:
            kind = CK_TRADE; req = REQ_TRADE
        elif self._ev == CK_AGG_TRADE:
            kind = CK_AGG_TRADE; req = REQ_AGG
        elif self._ev == EV_NONE and (self._have & F_LID):
            kind = CK_SNAPSHOT; req = REQ_SNAPSHOT
        elif self._ev == EV_NONE and (self._have & F_CTRL):
            kind = CK_CONTROL; self._err = 0
        else:
            self._err = CD_UNKNOWN_STREAM
        if kind != CK_NONE and kind != CK_CONTROL:
            if self._err == 0 and (self._have & req) != req:
                self._err = CD_MISSING_FIELD
            if self._err == 0 and (kind == CK_TRADE or kind == CK_AGG_TRADE) and self.trade_qty == 0:
                self._err = CD_BAD_NUMBER
            if self._err == 0 and self.event_time > INT64_MAX // 1000000:
                self._err = CD_OVERFLOW
            if self._err == 0 and self.transaction_time > INT64_MAX // 1000000:
                self._err = CD_OVERFLOW
            if self._err == 0 and not (self._have & F_E):
                self.event_time = self.transaction_time if (self._have & F_T) else 0
            if self._err == 0 and not (self._have & F_T):
                self.transaction_time = self.event_time
        if self._err != 0:
            self.drop_reason = self._err
            self._drops[self._err] += 1
            self.kind = CK_NONE
            self._msgs[0] += 1
            return CK_NONE
        self.drop_reason = CD_NONE
        self.kind = kind
        self._msgs[kind] += 1
        return kind
