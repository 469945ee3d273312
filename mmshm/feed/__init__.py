"""The feed: venue market data into the ``md`` ring, the ``book`` table and ``instruments``.

``mmshm.feed.service.FeedService`` runs one source (``binance``: Binance USD-M and the
simulated venue; ``hyperliquid``; ``replay``: a capture file) on an asyncio (uvloop)
loop; ``procs/feed.py`` builds it from the config.
"""
from mmshm.feed.base import LatencyWindow
from mmshm.feed.endpoints import FeedConfigError, source_from_config
from mmshm.feed.service import FeedService, FeedSettings, settings_from_config

__all__ = ["FeedConfigError", "FeedService", "FeedSettings", "LatencyWindow", "settings_from_config",
           "source_from_config"]
