# Binance WebSocket API order frames in C (see wsorder.pyx), for the fused order path.
from libc.stdint cimport int64_t, uint8_t

cdef extern from *:
    """
    /* OpenSSL's SHA-256 on a state copied by value (deprecated in 3.0, not removed): the
       keyed HMAC states are plain structs, copied per request without an allocation */
    #define OPENSSL_SUPPRESS_DEPRECATED 1
    #include <openssl/sha.h>
    """
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c) nogil
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n) nogil
    int SHA256_Final(unsigned char *md, SHA256_CTX *c) nogil

cdef enum:
    MAX_TEXT = 64           # symbol, client id: Binance allows 36; API keys are 64
    MAX_KEY = 128
    BUF = 1024              # one request's JSON (~420 bytes) or its signed payload
    FRAME_MAX = BUF + 8     # one request's whole frame (header, mask key, JSON)
    POOL = 4096
    MAX_INSTRUMENTS = 256

cdef enum Method:
    PLACE = 0
    MODIFY = 1
    CANCEL = 2

cdef enum FrameError:       # frame_into's refusals (0: framed)
    ERR_INSTRUMENT = 1
    ERR_SIDE = 2
    ERR_CLIENT_ID = 3
    ERR_PRICE = 4
    ERR_QTY = 5
    ERR_PARAMS = 6
    ERR_JSON = 7
    ERR_SPACE = 8

cdef struct Grid:
    char symbol[MAX_TEXT]
    int symbol_len
    int64_t tick_mantissa
    int price_exp
    int64_t lot_mantissa
    int qty_exp
    bint used


cdef struct Out:
    char *p
    int n
    int cap
    bint overflow


cdef class WsOrderEncoder:
    cdef Grid grids[MAX_INSTRUMENTS]
    cdef char api_key[MAX_KEY]
    cdef int api_key_len
    cdef int64_t recv_window                     # < 0: no recvWindow parameter
    cdef SHA256_CTX inner, outer                 # keyed HMAC states (after the key's pad block)
    cdef uint8_t pool[POOL]
    cdef int pool_pos

    cdef bytes _frame(self, int method, int64_t rid, int instrument, object client_id, int side,
                      int64_t price, int64_t qty, bint post_only, bint reduce_only, int64_t ts)
    cdef int frame_into(self, Out *out, int method, int64_t rid, int instrument, const char *cidp, int cidn,
                        int side, int64_t price, int64_t qty, bint post_only, bint reduce_only,
                        int64_t ts) except -1
    cdef void _refill(self) except *
