"""Order execution: order state, client ids, target diffing, rate budget, breaker,
cancel-all and reconciliation. The executor process (procs/executor.py) wires these to
the venue adapter (e.g. ``mmshm.venues.binance_usdm.trading``)."""
