"""Ring benchmark: cross-process one-way latency and throughput vs multiprocessing.Queue/Pipe.

    python bench/ring.py [--quick] [--out FILE]

Prints one JSON document (figures, the peers measured in the same run, and ratios).
The same code runs as `mmshm bench ring` (mmshm/shm/ringbench.py).
"""
from __future__ import annotations

import sys

from mmshm.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["ring", *sys.argv[1:]]))
