# cdef API of the quote cycle (mmshm._native.quoter), for other Cython modules:
#
#   from mmshm._native.quoter cimport Quoter, quote_cycle
#   cdef Quoter q = <Quoter>py_quoter        # made by Quoter(params, spec, instrument)
#   with nogil:
#       reason = q.cycle_raw(book_ptr, ctrl_global_ptr, ctrl_inst_ptr, position, now_ns, target_ptr)
#
# Pointers are raw BOOK_ROW / CONTROL_ROW / TARGET_ROW records (records.pxd layouts).
# cython_src/mmshm._native.quoter.pxd is a symlink to this file (how Cython finds the
# .pxd of a module named mmshm._native.quoter).
from libc.stdint cimport int64_t, uint64_t
from mmshm._native.shm cimport SeqlockTable

cdef enum:
    QMAX_LEVELS = 5          # == mmshm.records.TARGET_LEVELS (checked at import)
    QMAX_BOOK = 20           # == mmshm.records.BOOK_DEPTH (checked at import)

ctypedef struct QuoterParamsC:
    int model                # mmshm.strategy.params.Model
    int fair_value           # FairValue
    double half_spread_bp
    double inventory_skew_bp
    double gamma
    double horizon_s
    double glft_delta
    double inventory_unit    # lots per inventory unit q
    double min_half_spread_bp
    double max_half_spread_bp
    double vol_tau_s         # half-life / ln 2
    double vol_prior_bp
    double vol_warmup_s
    int levels
    double level_spacing_bp
    int64_t level_sizes[QMAX_LEVELS]
    int imbalance_levels
    double imbalance_weight_bp
    double leadlag_weight
    double leadlag_max_bp
    double leadlag_tau_s
    int64_t leadlag_max_age_ns
    double cascade_tau_s
    double cascade_through_scale
    double cascade_volume_scale
    double cascade_burst_scale
    double cascade_widen_at
    double cascade_widen_bp
    double cascade_pull_at
    double widen_bp
    double max_book_age_ns   # 0 = off
    double min_qty_pad
    int64_t min_qty          # instrument spec
    int64_t max_qty
    int64_t min_notional
    double quote_per_tick_lot

ctypedef struct EwmaVolC:
    double tau_s
    double prior_bp
    double warmup_s
    double last_mid
    int64_t last_ns
    double sum_r2
    double sum_dt

ctypedef struct QuoterStateC:
    EwmaVolC vol
    EwmaVolC fast_vol
    double arrival_a
    double arrival_k
    double ref_mid
    int64_t ref_ns
    double basis
    int has_basis
    int64_t ll_last_ns
    double leadlag
    int64_t c_last_ns
    double through
    double buy
    double sell
    double t_fast
    double slow_vol
    double t_slow
    double c_through
    double c_flow
    double c_vol
    double severity
    int64_t best_bid
    int64_t best_ask
    double imbalance
    double fair_value
    double res_bp
    double half_bp
    double sigma_bp
    int reason
    uint64_t cycles
    uint64_t pulls


cdef int quote_cycle(const QuoterParamsC *p, QuoterStateC *s, int instrument,
                     const unsigned char *book, const unsigned char *cg,
                     const unsigned char *ci, int64_t position, int64_t now_ns,
                     unsigned char *out) noexcept nogil

cdef double quoter_on_trade(const QuoterParamsC *p, QuoterStateC *s, int side, int64_t px,
                            int64_t qty, int64_t now_ns) noexcept nogil

cdef void quoter_on_reference(QuoterStateC *s, int64_t bid_px, int64_t ask_px,
                              int64_t now_ns) noexcept nogil


cdef class Quoter:
    cdef QuoterParamsC p
    cdef QuoterStateC s
    cdef readonly int instrument
    cdef readonly object params
    cdef readonly object spec
    cdef int64_t _book[88]          # BOOK_ROW (704 bytes), 8-byte aligned local copies for step()
    cdef int64_t _cg[16]            # CONTROL_ROW (128)
    cdef int64_t _ci[16]
    cdef int64_t _out[32]           # TARGET_ROW (256)
    cdef int _step(self, SeqlockTable books, SeqlockTable control, SeqlockTable targets,
                   int64_t position, bint position_from_control, int64_t now_ns,
                   int64_t timeout_ns) noexcept nogil
    cdef int cycle_raw(self, const unsigned char *book, const unsigned char *ctrl_global,
                       const unsigned char *ctrl_inst, int64_t position, int64_t now_ns,
                       unsigned char *out) noexcept nogil
