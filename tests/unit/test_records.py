"""The Cython structs in cython_src/records.pxd have exactly the numpy dtypes' layout."""
from __future__ import annotations

import numpy as np
import pytest

from mmshm._native.records_layout import layouts
from mmshm.records import ALL_RECORDS
from mmshm.shm import pxdgen


def test_generated_files_are_current():
    assert pxdgen.main(["--check"]) == 0, "run `python -m mmshm.shm.pxdgen` and rebuild records_layout"


@pytest.mark.parametrize("record", sorted(ALL_RECORDS))
def test_struct_size_and_offsets_match_dtype(record):
    dt = ALL_RECORDS[record]
    size, offsets = layouts()[record]
    assert size == dt.itemsize
    assert offsets == {name: dt.fields[name][1] for name in dt.names}


@pytest.mark.parametrize("record", sorted(ALL_RECORDS))
def test_record_rules(record):
    """Sizes are multiples of 64; every 8-byte field is 8-byte aligned (atomic loads/stores)."""
    dt = ALL_RECORDS[record]
    assert dt.itemsize % 64 == 0
    first = dt.names[0]
    assert first in ("seq", "version") and dt.fields[first][1] == 0
    for name in dt.names:
        fdt, off = dt.fields[name][:2]
        base = fdt.base
        if base.kind in "iuf" and base.itemsize == 8:
            assert off % 8 == 0, f"{record}.{name} at offset {off} is not 8-byte aligned"


def test_struct_names():
    assert pxdgen.struct_name("MARKET_EVENT") == "MarketEvent"
    assert set(layouts()) == set(ALL_RECORDS)
    assert np.dtype(ALL_RECORDS["PROCESS_ROW"]).itemsize == layouts()["PROCESS_ROW"][0]
