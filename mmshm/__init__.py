"""mmshm: a market maker for crypto venues built as pinned processes over shared memory."""

__version__ = "0.1.0"
