# Packed C views of the market-data records of mmshm/records.py (MARKET_EVENT, BOOK_ROW).
# tests/unit/test_book.py proves every offset and the size match the numpy dtypes; the
# Python side also checks the dtype when a buffer is bound (bind_events / bind_row).
from libc.stdint cimport uint8_t, uint16_t, uint64_t, int64_t

cdef enum:
    MD_BOOK_DEPTH = 20

cdef packed struct MarketEvent:
    uint64_t seq
    uint64_t md_seq
    uint8_t kind
    uint8_t side
    uint16_t instrument
    uint16_t status
    uint16_t venue
    int64_t venue_ts
    int64_t local_ts
    int64_t publish_mono
    uint64_t update_id
    int64_t bid_px
    int64_t bid_qty
    int64_t ask_px
    int64_t ask_qty
    int64_t trade_px
    int64_t trade_qty
    uint64_t trade_id
    uint8_t _pad[24]

cdef packed struct BookRow:
    uint64_t version
    uint16_t instrument
    uint16_t status
    uint16_t n_bids
    uint16_t n_asks
    uint64_t md_seq
    uint64_t update_id
    int64_t venue_ts
    int64_t local_ts
    int64_t publish_mono
    int64_t bid_px[MD_BOOK_DEPTH]
    int64_t bid_qty[MD_BOOK_DEPTH]
    int64_t ask_px[MD_BOOK_DEPTH]
    int64_t ask_qty[MD_BOOK_DEPTH]
    uint8_t _pad[8]
