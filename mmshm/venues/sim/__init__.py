"""A loopback venue that speaks Binance USD-M futures' wire protocol (REST, WebSocket API,
user-data and market streams), with queue-position matching, rate limits and fault
injection. Start it with :class:`mmshm.venues.sim.server.SimVenue` or ``mmshm venue``.
"""
