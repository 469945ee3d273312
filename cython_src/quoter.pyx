# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The quote cycle in C: one BOOK_ROW (+ two CONTROL_ROWs, a position) in, one TARGET_ROW out.

Records are read and written as raw bytes at field offsets taken from the numpy dtypes in
mmshm.records when this module is imported, so the C side cannot drift from the one
declaration of each record. Inside the cycle: no Python objects, no allocation, no GIL;
the models run in C doubles and rounding to ticks happens exactly once, in int64 (bids
down, asks up, post-only clamps). ``mmshm.strategy.cycle.PyQuoter`` states the same cycle
in Python; the tests hold the two to identical output.
"""
from libc.math cimport exp, log, sqrt, pow, floor, ceil, fabs, isfinite, NAN
from libc.stdint cimport int64_t, uint64_t, uint32_t, int32_t, uint16_t, uint8_t
from libc.string cimport memset

from atomics cimport mm_monotonic_ns
from records cimport MarketEvent
from mmshm._native.shm cimport SeqlockTable

import numpy as np

from mmshm.records import BOOK_DEPTH, BOOK_ROW, CONTROL_ROW, TARGET_LEVELS, TARGET_ROW

# Enum values mirrored from Python (checked against mmshm.strategy.params at import).
cdef enum:
    M_FIXED = 0
    M_AS = 1
    M_GLFT = 2
    FV_MID = 0
    FV_MICRO = 1
    R_NONE = 0
    R_BOOK_NOT_LIVE = 1
    R_BOOK_EMPTY = 2
    R_BOOK_CROSSED = 3
    R_BOOK_OLD = 4
    R_MODE_HALT = 5
    R_PAUSED = 6
    R_RISK_PULL = 7
    R_CASCADE = 8
    R_MODEL_INVALID = 9
    R_NO_SIDE = 10
    R_BOOK_BUSY = 11
    R_CONTROL_BUSY = 12
    TF_PULL = 1
    TF_REDUCE_ONLY = 2
    TF_WIDENED = 4
    CF_PAUSED = 1
    CF_PULL = 2
    MD_LIVE = 2
    MODE_WIDEN = 1
    MODE_REDUCE_ONLY = 2
    MODE_HALT = 3
    SIDE_BUY = 1
    SIDE_SELL = 2

cdef double LN2 = log(2.0)
cdef double MAX_PRICE = <double>(1LL << 62)

# --------------------------------------------------------------------------- layouts
cdef Py_ssize_t B_STATUS, B_NBIDS, B_NASKS, B_MDSEQ, B_PUB, B_BPX, B_BQTY, B_APX, B_AQTY
cdef Py_ssize_t C_MODE, C_FLAGS, C_MAXPOS, C_MAXORD, C_WIDEN, C_POS
cdef Py_ssize_t T_INSTR, T_NB, T_NA, T_FLAGS, T_MDSEQ, T_QMONO, T_PUB, T_BPX, T_BQTY, T_APX, T_AQTY
cdef Py_ssize_t BOOK_SIZE, CONTROL_SIZE, TARGET_SIZE


def _offset(dt, name, fmt):
    f = dt.fields[name]
    if f[0].base.str != fmt:
        raise ImportError(f"quoter: {name} is {f[0].base.str}, expected {fmt}")
    return f[1]


if (TARGET_LEVELS != QMAX_LEVELS or BOOK_DEPTH != QMAX_BOOK or BOOK_ROW.itemsize != 704
        or CONTROL_ROW.itemsize != 128 or TARGET_ROW.itemsize != 256):
    raise ImportError("quoter.pxd QMAX_LEVELS/QMAX_BOOK differ from mmshm.records")
B_STATUS = _offset(BOOK_ROW, "status", "<u2")
B_NBIDS = _offset(BOOK_ROW, "n_bids", "<u2")
B_NASKS = _offset(BOOK_ROW, "n_asks", "<u2")
B_MDSEQ = _offset(BOOK_ROW, "md_seq", "<u8")
B_PUB = _offset(BOOK_ROW, "publish_mono", "<i8")
B_BPX = _offset(BOOK_ROW, "bid_px", "<i8")
B_BQTY = _offset(BOOK_ROW, "bid_qty", "<i8")
B_APX = _offset(BOOK_ROW, "ask_px", "<i8")
B_AQTY = _offset(BOOK_ROW, "ask_qty", "<i8")
C_MODE = _offset(CONTROL_ROW, "mode", "<u4")
C_FLAGS = _offset(CONTROL_ROW, "flags", "<u8")
C_MAXPOS = _offset(CONTROL_ROW, "max_position", "<i8")
C_MAXORD = _offset(CONTROL_ROW, "max_order_qty", "<i8")
C_WIDEN = _offset(CONTROL_ROW, "widen_bp", "<i8")
C_POS = _offset(CONTROL_ROW, "position", "<i8")
T_INSTR = _offset(TARGET_ROW, "instrument", "<u2")
T_NB = _offset(TARGET_ROW, "n_bids", "|u1")
T_NA = _offset(TARGET_ROW, "n_asks", "|u1")
T_FLAGS = _offset(TARGET_ROW, "flags", "<u4")
T_MDSEQ = _offset(TARGET_ROW, "md_seq", "<u8")
T_QMONO = _offset(TARGET_ROW, "quote_mono", "<i8")
T_PUB = _offset(TARGET_ROW, "md_publish_mono", "<i8")
T_BPX = _offset(TARGET_ROW, "bid_px", "<i8")
T_BQTY = _offset(TARGET_ROW, "bid_qty", "<i8")
T_APX = _offset(TARGET_ROW, "ask_px", "<i8")
T_AQTY = _offset(TARGET_ROW, "ask_qty", "<i8")
BOOK_SIZE = BOOK_ROW.itemsize
CONTROL_SIZE = CONTROL_ROW.itemsize
TARGET_SIZE = TARGET_ROW.itemsize


cdef inline int64_t rd_i64(const unsigned char *b, Py_ssize_t off) noexcept nogil:
    return (<const int64_t *>(b + off))[0]

cdef inline uint64_t rd_u64(const unsigned char *b, Py_ssize_t off) noexcept nogil:
    return (<const uint64_t *>(b + off))[0]

cdef inline uint32_t rd_u32(const unsigned char *b, Py_ssize_t off) noexcept nogil:
    return (<const uint32_t *>(b + off))[0]

cdef inline uint16_t rd_u16(const unsigned char *b, Py_ssize_t off) noexcept nogil:
    return (<const uint16_t *>(b + off))[0]

cdef inline int64_t bk(const unsigned char *b, Py_ssize_t off, int i) noexcept nogil:
    return (<const int64_t *>(b + off))[i]


# --------------------------------------------------------------------------- pieces
cdef inline void vol_update(EwmaVolC *v, double mid, int64_t now_ns) noexcept nogil:
    cdef double dt, decay, r
    if mid <= 0.0:
        return
    if v.last_mid > 0.0:
        dt = (now_ns - v.last_ns) * 1e-9
        if dt < 0.0:
            dt = 0.0
        decay = exp(-dt / v.tau_s)
        r = log(mid / v.last_mid)
        v.sum_r2 = v.sum_r2 * decay + r * r
        v.sum_dt = v.sum_dt * decay + dt
    v.last_mid = mid
    v.last_ns = now_ns

cdef inline bint vol_warm(const EwmaVolC *v) noexcept nogil:
    return v.sum_dt >= v.warmup_s and v.sum_dt > 0.0

cdef inline double vol_sigma(const EwmaVolC *v) noexcept nogil:
    if not vol_warm(v):
        return v.prior_bp
    return sqrt(v.sum_r2 / v.sum_dt) * 1e4


cdef inline void cascade_advance(const QuoterParamsC *p, QuoterStateC *s, int64_t now_ns) noexcept nogil:
    cdef double dt, df, ds
    if s.c_last_ns:
        dt = (now_ns - s.c_last_ns) * 1e-9
        if dt > 0.0:
            df = exp(-dt / p.cascade_tau_s)
            ds = exp(-dt / p.vol_tau_s)
            s.through *= df
            s.buy *= df
            s.sell *= df
            s.t_fast = s.t_fast * df + dt
            s.slow_vol *= ds
            s.t_slow = s.t_slow * ds + dt
    if now_ns > s.c_last_ns:
        s.c_last_ns = now_ns


cdef double cascade_evaluate(const QuoterParamsC *p, QuoterStateC *s, int64_t now_ns) noexcept nogil:
    cdef double c_through = 0.0, c_flow = 0.0, c_vol = 0.0, flow, ratio, burst
    cascade_advance(p, s, now_ns)
    if s.t_fast > 0.0:
        c_through = s.through / s.t_fast / p.cascade_through_scale
        flow = s.buy + s.sell
        if flow > 0.0 and s.slow_vol > 0.0 and s.t_slow > 0.0:
            ratio = (flow / s.t_fast) / (s.slow_vol / s.t_slow)
            c_flow = fabs(s.buy - s.sell) / flow * ratio / p.cascade_volume_scale
    if vol_warm(&s.vol) and s.fast_vol.sum_dt > 0.0 and s.vol.sum_r2 > 0.0:
        burst = sqrt((s.fast_vol.sum_r2 / s.fast_vol.sum_dt) / (s.vol.sum_r2 / s.vol.sum_dt))
        if burst > 1.0:
            c_vol = (burst - 1.0) / p.cascade_burst_scale
    s.c_through = c_through
    s.c_flow = c_flow
    s.c_vol = c_vol
    s.severity = c_through + c_flow + c_vol
    return s.severity


cdef double leadlag_update(const QuoterParamsC *p, QuoterStateC *s, double own_mid, int64_t now_ns) noexcept nogil:
    cdef double b, dev, dt, w
    if s.ref_mid <= 0.0 or own_mid <= 0.0 or now_ns - s.ref_ns > p.leadlag_max_age_ns:
        s.leadlag = 0.0
        return 0.0
    b = log(s.ref_mid / own_mid) * 1e4
    if not s.has_basis:
        s.basis = b
        s.has_basis = 1
        dev = 0.0
    else:
        dt = (now_ns - s.ll_last_ns) * 1e-9
        if dt < 0.0:
            dt = 0.0
        dev = b - s.basis
        w = 1.0 - exp(-dt / p.leadlag_tau_s)
        s.basis += w * (b - s.basis)
    s.ll_last_ns = now_ns
    if dev > p.leadlag_max_bp:
        dev = p.leadlag_max_bp
    elif dev < -p.leadlag_max_bp:
        dev = -p.leadlag_max_bp
    s.leadlag = dev
    return dev


cdef inline int64_t min_lots(int64_t px, const QuoterParamsC *p) noexcept nogil:
    cdef double need = <double>p.min_qty, by_notional
    if p.min_notional > 0:
        by_notional = ceil(<double>p.min_notional / (<double>px * p.quote_per_tick_lot))
        if by_notional > need:
            need = by_notional
    return <int64_t>need


cdef int side_prices(const QuoterParamsC *p, double fv, double center, double half, bint is_bid,
                     int64_t best_bid, int64_t best_ask, int64_t *out) noexcept nogil:
    """Prices of up to p.levels levels into out; returns how many (see ladder.side_prices)."""
    cdef int i, n = 0
    cdef double off, x
    cdef int64_t px, prev = 0
    for i in range(p.levels):
        off = half + i * p.level_spacing_bp
        if is_bid:
            x = fv * (1.0 + (center - off) * 1e-4)
            if not (x >= 1.0 and x < MAX_PRICE):
                break
            px = <int64_t>floor(x)
            if px > best_ask - 1:
                px = best_ask - 1
            if i and px > prev - 1:
                px = prev - 1
            if px < 1:
                break
        else:
            x = fv * (1.0 + (center + off) * 1e-4)
            if not (x >= 1.0 and x < MAX_PRICE):
                break
            px = <int64_t>ceil(x)
            if px < best_bid + 1:
                px = best_bid + 1
            if i and px < prev + 1:
                px = prev + 1
        out[n] = px
        n += 1
        prev = px
    return n


cdef int side_sizes(const QuoterParamsC *p, const int64_t *prices, int n, int64_t room,
                    int64_t max_order, int64_t *out) noexcept nogil:
    cdef int64_t cap = max_order, q, need
    cdef int i, m = 0
    if p.max_qty > 0 and p.max_qty < cap:
        cap = p.max_qty
    for i in range(n):
        q = p.level_sizes[i]
        if q > cap:
            q = cap
        need = min_lots(prices[i], p)
        if q < need:
            q = <int64_t>ceil(<double>need * (1.0 + p.min_qty_pad))
        if q > cap or q > room or q <= 0:
            break
        out[m] = q
        m += 1
        room -= q
    return m


cdef inline int pull(QuoterStateC *s, unsigned char *out, int reason) noexcept nogil:
    (<uint32_t *>(out + T_FLAGS))[0] = TF_PULL
    out[T_NB] = 0
    out[T_NA] = 0
    memset(out + T_BPX, 0, 8 * QMAX_LEVELS)
    memset(out + T_BQTY, 0, 8 * QMAX_LEVELS)
    memset(out + T_APX, 0, 8 * QMAX_LEVELS)
    memset(out + T_AQTY, 0, 8 * QMAX_LEVELS)
    s.reason = reason
    s.pulls += 1
    return reason


# --------------------------------------------------------------------------- the cycle
cdef int quote_cycle(const QuoterParamsC *p, QuoterStateC *s, int instrument,
                     const unsigned char *book, const unsigned char *cg,
                     const unsigned char *ci, int64_t position, int64_t now_ns,
                     unsigned char *out) noexcept nogil:
    cdef int nb, na, mode, i, n_bp, n_ap, n_bq, n_aq, lv
    cdef int64_t bb, ba, pub, max_pos, max_order, bid_room, ask_room, w, b_sum = 0, a_sum = 0
    cdef uint64_t cflags
    cdef uint32_t flags = 0
    cdef double m, sigma, ll, severity, fv, adj, q, res, half, gd, c1, c2, s2t, qf, center, bq0, aq0
    cdef int64_t bids[QMAX_LEVELS]
    cdef int64_t asks[QMAX_LEVELS]
    cdef int64_t bqty[QMAX_LEVELS]
    cdef int64_t aqty[QMAX_LEVELS]

    s.cycles += 1
    (<uint16_t *>(out + T_INSTR))[0] = <uint16_t>instrument
    (<uint64_t *>(out + T_MDSEQ))[0] = rd_u64(book, B_MDSEQ)
    pub = rd_i64(book, B_PUB)
    (<int64_t *>(out + T_PUB))[0] = pub
    (<int64_t *>(out + T_QMONO))[0] = now_ns
    # (1) the book
    nb = rd_u16(book, B_NBIDS)
    na = rd_u16(book, B_NASKS)
    if nb > QMAX_BOOK:          # a corrupt count must not walk off the row
        nb = QMAX_BOOK
    if na > QMAX_BOOK:
        na = QMAX_BOOK
    if rd_u16(book, B_STATUS) != MD_LIVE:
        return pull(s, out, R_BOOK_NOT_LIVE)
    if nb == 0 or na == 0:
        return pull(s, out, R_BOOK_EMPTY)
    bb = bk(book, B_BPX, 0)
    ba = bk(book, B_APX, 0)
    if bb <= 0 or bb >= ba:
        return pull(s, out, R_BOOK_CROSSED)
    if p.max_book_age_ns > 0 and pub > 0 and now_ns - pub > p.max_book_age_ns:
        return pull(s, out, R_BOOK_OLD)
    s.best_bid = bb
    s.best_ask = ba
    # (2) signals
    m = 0.5 * <double>(bb + ba)
    vol_update(&s.vol, m, now_ns)
    vol_update(&s.fast_vol, m, now_ns)
    sigma = vol_sigma(&s.vol)
    s.sigma_bp = sigma
    lv = p.imbalance_levels
    for i in range(min(lv, nb)):
        b_sum += bk(book, B_BQTY, i)
    for i in range(min(lv, na)):
        a_sum += bk(book, B_AQTY, i)
    s.imbalance = (<double>(b_sum - a_sum)) / <double>(b_sum + a_sum) if b_sum + a_sum > 0 else 0.0
    ll = leadlag_update(p, s, m, now_ns)
    severity = cascade_evaluate(p, s, now_ns)
    # (3) control
    mode = <int>rd_u32(cg, C_MODE)
    if <int>rd_u32(ci, C_MODE) > mode:
        mode = <int>rd_u32(ci, C_MODE)
    cflags = rd_u64(cg, C_FLAGS) | rd_u64(ci, C_FLAGS)
    if cflags & CF_PAUSED:
        return pull(s, out, R_PAUSED)
    if mode >= MODE_HALT:
        return pull(s, out, R_MODE_HALT)
    if cflags & CF_PULL:
        return pull(s, out, R_RISK_PULL)
    if severity >= p.cascade_pull_at:
        return pull(s, out, R_CASCADE)
    # (4) model
    if p.fair_value == FV_MICRO:
        bq0 = <double>bk(book, B_BQTY, 0)
        aq0 = <double>bk(book, B_AQTY, 0)
        if bk(book, B_BQTY, 0) + bk(book, B_AQTY, 0) > 0:
            fv = (bb * aq0 + ba * bq0) / <double>(bk(book, B_BQTY, 0) + bk(book, B_AQTY, 0))
        else:
            fv = m
    else:
        fv = m
    s.fair_value = fv
    adj = s.imbalance * p.imbalance_weight_bp + p.leadlag_weight * ll
    max_pos = rd_i64(ci, C_MAXPOS)
    q = <double>position / p.inventory_unit
    if p.model == M_AS:
        s2t = sigma * sigma * p.horizon_s
        res = -q * p.gamma * s2t
        half = 0.5 * (p.gamma * s2t + (2.0 / p.gamma) * log(1.0 + p.gamma / s.arrival_k))
    elif p.model == M_GLFT:
        gd = p.gamma * p.glft_delta
        c1 = log(1.0 + gd / s.arrival_k) / gd
        c2 = sqrt(p.gamma * sigma * sigma / (2.0 * s.arrival_a * p.glft_delta * s.arrival_k)
                  * pow(1.0 + gd / s.arrival_k, s.arrival_k / gd + 1.0))
        res = -q * c2
        half = c1 + 0.5 * p.glft_delta * c2
    else:
        res = 0.0
        half = p.half_spread_bp
    if max_pos > 0:
        qf = <double>position / <double>max_pos
        if qf > 1.0:
            qf = 1.0
        elif qf < -1.0:
            qf = -1.0
        res -= p.inventory_skew_bp * qf
    if half > p.max_half_spread_bp:
        half = p.max_half_spread_bp
    if half < p.min_half_spread_bp:
        half = p.min_half_spread_bp
    if mode == MODE_WIDEN:
        w = rd_i64(ci, C_WIDEN)
        if w == 0:
            w = rd_i64(cg, C_WIDEN)
        half += <double>w if w > 0 else p.widen_bp
        flags |= TF_WIDENED
    if severity >= p.cascade_widen_at:
        half += p.cascade_widen_bp
        flags |= TF_WIDENED
    center = adj + res
    s.res_bp = res
    s.half_bp = half
    if not (isfinite(center) and isfinite(half) and isfinite(fv)):
        return pull(s, out, R_MODEL_INVALID)
    # (5) prices: the one rounding
    n_bp = side_prices(p, fv, center, half, 1, bb, ba, bids)
    n_ap = side_prices(p, fv, center, half, 0, bb, ba, asks)
    # (6) sizes
    bid_room = max_pos - position
    ask_room = max_pos + position
    if mode == MODE_REDUCE_ONLY:
        if bid_room > (-position if position < 0 else 0):
            bid_room = -position if position < 0 else 0
        if ask_room > (position if position > 0 else 0):
            ask_room = position if position > 0 else 0
        flags |= TF_REDUCE_ONLY
    max_order = rd_i64(ci, C_MAXORD)
    n_bq = side_sizes(p, bids, n_bp, bid_room, max_order, bqty)
    n_aq = side_sizes(p, asks, n_ap, ask_room, max_order, aqty)
    if n_bq == 0 and n_aq == 0:
        return pull(s, out, R_NO_SIDE)
    memset(out + T_BPX, 0, 8 * QMAX_LEVELS)
    memset(out + T_BQTY, 0, 8 * QMAX_LEVELS)
    memset(out + T_APX, 0, 8 * QMAX_LEVELS)
    memset(out + T_AQTY, 0, 8 * QMAX_LEVELS)
    for i in range(n_bq):
        (<int64_t *>(out + T_BPX))[i] = bids[i]
        (<int64_t *>(out + T_BQTY))[i] = bqty[i]
    for i in range(n_aq):
        (<int64_t *>(out + T_APX))[i] = asks[i]
        (<int64_t *>(out + T_AQTY))[i] = aqty[i]
    out[T_NB] = <uint8_t>n_bq
    out[T_NA] = <uint8_t>n_aq
    (<uint32_t *>(out + T_FLAGS))[0] = flags
    s.reason = R_NONE
    return R_NONE


cdef double quoter_on_trade(const QuoterParamsC *p, QuoterStateC *s, int side, int64_t px,
                            int64_t qty, int64_t now_ns) noexcept nogil:
    """Cascade accounting for a public trade; returns its distance from our mid in bp (NaN if none)."""
    cdef double m
    if qty > 0 and px > 0:
        cascade_advance(p, s, now_ns)
        if side == SIDE_SELL:
            s.sell += qty
            if 0 < px < s.best_bid:
                s.through += (<double>(s.best_bid - px)) / <double>s.best_bid * 1e4
        elif side == SIDE_BUY:
            s.buy += qty
            if s.best_ask > 0 and px > s.best_ask:
                s.through += (<double>(px - s.best_ask)) / <double>s.best_ask * 1e4
        s.slow_vol += qty
    if s.best_bid <= 0 or s.best_ask <= s.best_bid:
        return NAN
    m = 0.5 * <double>(s.best_bid + s.best_ask)
    return fabs(<double>px - m) / m * 1e4


cdef void quoter_on_reference(QuoterStateC *s, int64_t bid_px, int64_t ask_px, int64_t now_ns) noexcept nogil:
    if bid_px > 0 and ask_px > bid_px:
        s.ref_mid = 0.5 * <double>(bid_px + ask_px)
        s.ref_ns = now_ns


# --------------------------------------------------------------------------- Python API
cdef class Quoter:
    """Native quoter for one instrument.

    ``Quoter(params: QuoterParams, spec: InstrumentSpec, instrument: int)``. Per market
    event the process calls ``on_trade`` (public trades), ``on_reference`` (the lead
    venue's top of book) and ``cycle`` (after each book update), then writes ``out`` to
    the targets table. Buffers are the raw bytes of 1-element record arrays
    (``arr.view(np.uint8)``); see :func:`mmshm.strategy.row_buffer`.
    """

    def __init__(self, params, spec, int instrument=0):
        self.instrument = instrument
        self.spec = spec
        self.set_params(params)

    def set_params(self, params):
        """Copy validated QuoterParams (and the spec) into the C struct; signal state restarts."""
        from mmshm.strategy.params import FairValue, Model, PullReason
        if ((Model.FIXED, Model.AS, Model.GLFT) != (M_FIXED, M_AS, M_GLFT)
                or PullReason.CONTROL_BUSY != R_CONTROL_BUSY):
            raise RuntimeError("quoter.pyx enums differ from mmshm.strategy.params")
        cdef QuoterParamsC p
        cdef int i
        memset(&p, 0, sizeof(p))
        p.model = int(params.model)
        p.fair_value = int(params.fair_value)
        p.half_spread_bp = params.half_spread_bp
        p.inventory_skew_bp = params.inventory_skew_bp
        p.gamma = params.gamma
        p.horizon_s = params.horizon_s
        p.glft_delta = params.glft_delta
        p.inventory_unit = params.inventory_unit
        p.min_half_spread_bp = params.min_half_spread_bp
        p.max_half_spread_bp = params.max_half_spread_bp
        p.vol_tau_s = params.vol_half_life_s / LN2
        p.vol_prior_bp = params.vol_prior_bp
        p.vol_warmup_s = params.vol_warmup_s
        p.levels = params.levels
        p.level_spacing_bp = params.level_spacing_bp
        for i in range(p.levels):
            p.level_sizes[i] = params.level_sizes[i]
        p.imbalance_levels = params.imbalance_levels
        p.imbalance_weight_bp = params.imbalance_weight_bp
        p.leadlag_weight = params.leadlag_weight
        p.leadlag_max_bp = params.leadlag_max_bp
        p.leadlag_tau_s = params.leadlag_half_life_s / LN2
        p.leadlag_max_age_ns = int(params.leadlag_max_age_ms * 1e6)
        p.cascade_tau_s = params.cascade_half_life_s / LN2
        p.cascade_through_scale = params.cascade_through_scale_bp_s
        p.cascade_volume_scale = params.cascade_volume_ratio_scale
        p.cascade_burst_scale = params.cascade_vol_burst_scale
        p.cascade_widen_at = params.cascade_widen_at
        p.cascade_widen_bp = params.cascade_widen_bp
        p.cascade_pull_at = params.cascade_pull_at
        p.widen_bp = params.widen_bp
        p.max_book_age_ns = params.max_book_age_ms * 1e6
        p.min_qty_pad = params.min_qty_pad
        p.min_qty = self.spec.min_qty
        p.max_qty = self.spec.max_qty
        p.min_notional = self.spec.min_notional
        p.quote_per_tick_lot = self.spec.quote_per_tick_lot
        self.p = p
        self.params = params
        memset(&self.s, 0, sizeof(self.s))
        self.s.vol.tau_s = p.vol_tau_s
        self.s.vol.prior_bp = p.vol_prior_bp
        self.s.vol.warmup_s = p.vol_warmup_s
        self.s.fast_vol.tau_s = p.cascade_tau_s
        self.s.arrival_a = params.arrival_a
        self.s.arrival_k = params.arrival_k

    def set_arrival(self, double a, double k):
        """Install an online fit of λ(δ) = A·exp(-kδ) (A per second, k per bp)."""
        if not (a > 0 and k > 0 and isfinite(a) and isfinite(k)):
            raise ValueError(f"arrival parameters must be finite and > 0, got A={a} k={k}")
        self.s.arrival_a = a
        self.s.arrival_k = k

    def on_trade(self, int side, int64_t px, int64_t qty, int64_t now_ns):
        """A public trade (aggressor side, ticks, lots, monotonic ns); returns distance from mid in bp."""
        return quoter_on_trade(&self.p, &self.s, side, px, qty, now_ns)

    def on_reference(self, int64_t bid_px, int64_t ask_px, int64_t now_ns):
        """Top of book of the reference (leading) venue, in its own ticks."""
        quoter_on_reference(&self.s, bid_px, ask_px, now_ns)

    cdef int cycle_raw(self, const unsigned char *book, const unsigned char *ctrl_global,
                       const unsigned char *ctrl_inst, int64_t position, int64_t now_ns,
                       unsigned char *out) noexcept nogil:
        return quote_cycle(&self.p, &self.s, self.instrument, book, ctrl_global, ctrl_inst,
                           position, now_ns, out)

    def cycle(self, const unsigned char[::1] book, const unsigned char[::1] ctrl_global,
              const unsigned char[::1] ctrl_inst, int64_t position, int64_t now_ns,
              unsigned char[::1] out):
        """One quote cycle over raw BOOK_ROW / CONTROL_ROW / TARGET_ROW bytes; returns a PullReason."""
        if (book.shape[0] < BOOK_SIZE or ctrl_global.shape[0] < CONTROL_SIZE
                or ctrl_inst.shape[0] < CONTROL_SIZE or out.shape[0] < TARGET_SIZE):
            raise ValueError("quoter.cycle: a buffer is shorter than its record")
        cdef int r
        with nogil:
            r = quote_cycle(&self.p, &self.s, self.instrument, &book[0], &ctrl_global[0],
                            &ctrl_inst[0], position, now_ns, &out[0])
        return r

    def step(self, SeqlockTable books, SeqlockTable control, SeqlockTable targets,
             position=None, int64_t now_ns=0, double timeout_s=0.001):
        """The whole per-event step of the quoter process, in one call and without the GIL:
        seqlock-read book row ``instrument`` and control rows 0 and 1 + ``instrument``, run
        the cycle, seqlock-write target row ``instrument``. ``position`` None = risk's view
        from the instrument's control row; ``now_ns`` 0 = CLOCK_MONOTONIC.
        A row that cannot be read consistently within ``timeout_s`` pulls (BOOK_BUSY /
        CONTROL_BUSY). Returns the PullReason; ValueError if a row index is out of range."""
        cdef int r
        cdef int64_t t = <int64_t>(timeout_s * 1e9)
        cdef bint from_control = position is None
        cdef int64_t pos = 0 if from_control else <int64_t>position
        if books.dtype != BOOK_ROW or control.dtype != CONTROL_ROW or targets.dtype != TARGET_ROW:
            raise ValueError("quoter.step: tables must be BOOK_ROW, CONTROL_ROW and TARGET_ROW")
        with nogil:
            if now_ns == 0:
                now_ns = mm_monotonic_ns()
            r = self._step(books, control, targets, pos, from_control, now_ns, t)
        if r < 0:
            raise ValueError(f"quoter.step: row out of range for instrument {self.instrument}")
        return r

    cdef int _step(self, SeqlockTable books, SeqlockTable control, SeqlockTable targets,
                   int64_t position, bint position_from_control, int64_t now_ns,
                   int64_t timeout_ns) noexcept nogil:
        cdef int r, rb, rg, ri
        cdef unsigned char *out = <unsigned char *>self._out
        rb = books.read_ptr(self.instrument, self._book, timeout_ns)
        rg = control.read_ptr(0, self._cg, timeout_ns)
        ri = control.read_ptr(1 + self.instrument, self._ci, timeout_ns)
        if rb < 0 or rg < 0 or ri < 0:
            return -1
        if rb == 0:
            (<uint16_t *>(out + T_INSTR))[0] = <uint16_t>self.instrument
            (<int64_t *>(out + T_QMONO))[0] = now_ns
            r = pull(&self.s, out, R_BOOK_BUSY)
        elif rg == 0 or ri == 0:
            (<uint16_t *>(out + T_INSTR))[0] = <uint16_t>self.instrument
            (<uint64_t *>(out + T_MDSEQ))[0] = rd_u64(<unsigned char *>self._book, B_MDSEQ)
            (<int64_t *>(out + T_PUB))[0] = rd_i64(<unsigned char *>self._book, B_PUB)
            (<int64_t *>(out + T_QMONO))[0] = now_ns
            r = pull(&self.s, out, R_CONTROL_BUSY)
        else:
            if position_from_control:
                position = rd_i64(<unsigned char *>self._ci, C_POS)
            r = quote_cycle(&self.p, &self.s, self.instrument, <unsigned char *>self._book,
                            <unsigned char *>self._cg, <unsigned char *>self._ci, position, now_ns, out)
        if targets.write_ptr(self.instrument, self._out) < 0:
            return -1
        return r

    def last_target(self):
        """A copy of the last TARGET_ROW ``step`` wrote (np.void)."""
        return np.frombuffer(bytes((<unsigned char *>self._out)[:TARGET_SIZE]), dtype=TARGET_ROW)[0]

    @property
    def reason(self):
        return self.s.reason

    @property
    def cycles(self):
        return self.s.cycles

    @property
    def pulls(self):
        return self.s.pulls

    def signals(self):
        """Current signal and model values for the dashboard / status line."""
        return {
            "fair_value": self.s.fair_value, "sigma_bp": vol_sigma(&self.s.vol),
            "imbalance": self.s.imbalance, "leadlag_bp": self.s.leadlag,
            "cascade": self.s.severity, "cascade_through": self.s.c_through,
            "cascade_flow": self.s.c_flow, "cascade_vol": self.s.c_vol,
            "res_bp": self.s.res_bp, "half_bp": self.s.half_bp,
            "arrival_a": self.s.arrival_a, "arrival_k": self.s.arrival_k, "reason": self.s.reason,
        }


# --------------------------------------------------------------------------- event routing
cdef enum:
    MDK_BOOK_TOP = 1           # == mmshm.records.MdKind (checked in EventRouter.__init__)
    MDK_TRADE = 2
    MDK_STATUS = 3


cdef class EventRouter:
    """A batch of MARKET_EVENT records routed to the native quoters in one C loop.

    Why: the quoter process woke per book with a Python loop over numpy records
    (``QuoteEngine.on_market_event`` per event), which on a 2-core VM, right after a sleep,
    cost several times the quote cycle itself. Here, per event and with no Python object
    touched: a BOOK_TOP marks its instrument for a requote and feeds the lead-lag of the
    instruments that follow it; a TRADE goes to the cascade detector and its distance
    from mid is kept for the A/k fit (which the process runs after the requote, off the
    tick's path); a STATUS marks its instrument. What ``route`` leaves behind:
    ``dirty[slot]`` (1 = requote ``instruments[slot]``), ``dirty_pub[slot]`` = publish_mono
    of the newest event that marked it, and ``n_trades`` fit samples in ``trade_slot`` /
    ``trade_d`` / ``trade_ns``.
    """

    cdef list _quoters                # Quoter per slot
    cdef public object instruments    # the instrument of each slot (tuple)
    cdef int32_t[::1] _slot_of        # instrument -> slot, -1 = not quoted
    cdef int32_t[::1] _follow_start   # instrument -> first index into _follow_slots
    cdef int32_t[::1] _follow_slots
    cdef public uint8_t[::1] dirty
    cdef public int64_t[::1] dirty_pub
    cdef public int32_t[::1] trade_slot
    cdef public double[::1] trade_d
    cdef public int64_t[::1] trade_ns
    cdef public Py_ssize_t n_trades
    cdef public uint64_t ignored
    cdef public uint64_t trades_dropped   # fit samples beyond the buffer in one batch

    def __init__(self, quoters, followers, Py_ssize_t max_trades=256):
        """``quoters``: {instrument: Quoter}; ``followers``: {reference instrument:
        [followed instruments]} (each follower quoted)."""
        from mmshm.records import MdKind
        if (int(MdKind.BOOK_TOP), int(MdKind.TRADE), int(MdKind.STATUS)) != (MDK_BOOK_TOP, MDK_TRADE, MDK_STATUS):
            raise RuntimeError("quoter.pyx MdKind values differ from mmshm.records")
        if max_trades < 1:
            raise ValueError(f"max_trades must be >= 1, got {max_trades}")
        insts = sorted(int(i) for i in quoters)
        refs = sorted(int(r) for r in followers)
        top = max(insts + refs + [0]) + 1
        if top > 65536:
            raise ValueError("instrument indices must fit uint16")
        self._quoters = [quoters[i] for i in insts]
        for q in self._quoters:
            if not isinstance(q, Quoter):
                raise TypeError(f"EventRouter routes to native Quoter objects, got {type(q).__name__}")
        self.instruments = tuple(insts)
        self._slot_of = np.full(top, -1, dtype=np.int32)
        for k, i in enumerate(insts):
            self._slot_of[i] = k
        self._follow_start = np.zeros(top + 1, dtype=np.int32)
        flat = []
        for i in range(top):
            self._follow_start[i] = len(flat)
            for f in followers.get(i, ()):
                if int(f) not in quoters:
                    raise ValueError(f"follower {f} of instrument {i} is not quoted")
                flat.append(self._slot_of[int(f)])
        self._follow_start[top] = len(flat)
        self._follow_slots = np.asarray(flat or [0], dtype=np.int32)
        self.dirty = np.zeros(len(insts), dtype=np.uint8)
        self.dirty_pub = np.zeros(len(insts), dtype=np.int64)
        self.trade_slot = np.zeros(max_trades, dtype=np.int32)
        self.trade_d = np.zeros(max_trades, dtype=np.float64)
        self.trade_ns = np.zeros(max_trades, dtype=np.int64)
        self.n_trades = 0

    def route(self, const unsigned char[::1] raw, Py_ssize_t n):
        """Route the first ``n`` MARKET_EVENT records of ``raw`` (the bytes of a
        MARKET_EVENT array, ``buf.view(np.uint8)``). Clears the dirty
        marks and the trade samples first; returns how many slots are dirty."""
        if n < 0 or n * <Py_ssize_t>sizeof(MarketEvent) > raw.shape[0]:
            raise ValueError(f"route: {n} events do not fit a buffer of {raw.shape[0]} bytes")
        cdef Py_ssize_t k, j, top = self._slot_of.shape[0], max_trades = self.trade_d.shape[0]
        cdef Py_ssize_t nslots = self.dirty.shape[0]
        cdef const MarketEvent *ev
        cdef int slot, f
        cdef double d
        cdef Quoter q
        cdef int dirty = 0
        for k in range(nslots):
            self.dirty[k] = 0
            self.dirty_pub[k] = 0
        self.n_trades = 0
        for k in range(n):
            ev = <const MarketEvent *>&raw[k * sizeof(MarketEvent)]
            slot = self._slot_of[ev.instrument] if ev.instrument < top else -1
            if ev.kind == MDK_BOOK_TOP:
                if ev.instrument < top:
                    for j in range(self._follow_start[ev.instrument], self._follow_start[ev.instrument + 1]):
                        f = self._follow_slots[j]
                        q = <Quoter>self._quoters[f]
                        quoter_on_reference(&q.s, ev.bid_px, ev.ask_px, ev.publish_mono)
                if slot >= 0:
                    self.dirty[slot] = 1
                    self.dirty_pub[slot] = ev.publish_mono
                continue
            if slot < 0:
                self.ignored += 1
                continue
            if ev.kind == MDK_TRADE:
                q = <Quoter>self._quoters[slot]
                d = quoter_on_trade(&q.p, &q.s, ev.side, ev.trade_px, ev.trade_qty, ev.publish_mono)
                if isfinite(d):
                    if self.n_trades < max_trades:
                        self.trade_slot[self.n_trades] = slot
                        self.trade_d[self.n_trades] = d
                        self.trade_ns[self.n_trades] = ev.publish_mono
                        self.n_trades += 1
                    else:
                        self.trades_dropped += 1
            elif ev.kind == MDK_STATUS:
                self.dirty[slot] = 1
                self.dirty_pub[slot] = ev.publish_mono
            else:
                self.ignored += 1
        for k in range(nslots):
            dirty += self.dirty[k]
        return dirty
