"""Binance error codes and the exception that carries one to the wire as ``{"code", "msg"}``."""
from __future__ import annotations


class VenueError(Exception):
    """A request failure reported to the client exactly as Binance shapes it."""

    def __init__(self, code: int, msg: str, http_status: int = 400, retry_after: int | None = None):
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


UNKNOWN = -1000
INTERNAL = -1001
TOO_MANY_REQUESTS = -1003
TOO_MANY_ORDERS = -1015
TIMESTAMP_OUTSIDE_RECV_WINDOW = -1021
INVALID_SIGNATURE = -1022
ILLEGAL_CHARS = -1100
TOO_MANY_PARAMETERS = -1101
MANDATORY_PARAM = -1102
UNREAD_PARAMETERS = -1104
PARAM_NOT_REQUIRED = -1106
BAD_PRECISION = -1111
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
BAD_SYMBOL = -1121
INVALID_LISTEN_KEY = -1125
INVALID_PARAMETER = -1130
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FMT = -2014
REJECTED_MBX_KEY = -2015
REDUCE_ONLY_REJECT = -2022
PRICE_LESS_THAN_ZERO = -4001
QTY_LESS_THAN_ZERO = -4003
QTY_LESS_THAN_MIN_QTY = -4004
QTY_GREATER_THAN_MAX_QTY = -4005
PRICE_NOT_INCREASED_BY_TICK_SIZE = -4014
INVALID_CL_ORD_ID_LEN = -4015
QTY_NOT_INCREASED_BY_STEP_SIZE = -4023
DUPLICATED_CLIENT_ORDER_ID = -4116
MIN_NOTIONAL = -4164
FOK_ORDER_REJECT = -5021
GTX_ORDER_REJECT = -5022
SAME_ORDER = -5027

MSG_GTX = ("Due to the order could not be executed as maker, the Post Only order will be rejected. "
           "The order will not be recorded in the order history")
MSG_FOK = ("Due to the order could not be filled immediately, the FOK order has been rejected. "
           "The order will not be recorded in the order history")


def mandatory(name: str) -> VenueError:
    return VenueError(MANDATORY_PARAM, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str) -> VenueError:
    return VenueError(ILLEGAL_CHARS, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")


def unknown_order() -> VenueError:
    return VenueError(CANCEL_REJECTED, "Unknown order sent.")


def no_such_order() -> VenueError:
    return VenueError(NO_SUCH_ORDER, "Order does not exist.")
