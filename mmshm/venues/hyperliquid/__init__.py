"""Hyperliquid perpetuals: market data (``l2Book`` full snapshots, ``trades``) over its WebSocket."""
