"""Constants of the matching core (cimported by matching.pyx; usable by other Cython code)."""

# Sides (same numbering as mmshm.records.Side)
cdef enum:
    M_BUY = 1
    M_SELL = 2

# Time in force
cdef enum:
    TIF_GTC = 0
    TIF_IOC = 1
    TIF_FOK = 2
    TIF_GTX = 3

# Self-trade prevention modes
cdef enum:
    STP_NONE = 0
    STP_EXPIRE_TAKER = 1
    STP_EXPIRE_MAKER = 2
    STP_EXPIRE_BOTH = 3

# Outcome of submit()
cdef enum:
    R_RESTING = 0        # rests on the book (maybe after partial fills)
    R_FILLED = 1         # fully filled on entry
    R_EXPIRED = 2        # IOC/FOK/market remainder expired (maybe after partial fills)
    R_GTX_REJECT = 3     # post-only order would have taken liquidity; nothing changed
    R_STP_EXPIRED = 4    # taker expired by self-trade prevention (maybe after partial fills)
    R_FULL = 5           # no room for another resting order; nothing changed
    R_DUPLICATE = 6      # order id already resting; nothing changed

# Event kinds in the event buffer
cdef enum:
    EV_FILL = 1          # own order filled: id, px, qty, maker flag, counter order (0 = outside), match id
    EV_STP_CANCEL = 2    # resting own order removed by self-trade prevention (EXPIRE_MAKER/BOTH)
