"""The Prometheus exporter: a custom collector over shared memory, /health and /ready.

:mod:`mmshm.exporter.collector` reads the instance's segments at scrape time;
:mod:`mmshm.exporter.health` decides /health and /ready; :mod:`mmshm.exporter.server`
serves them (aiohttp on a background thread) under the agent runner.
Per-stage latency histograms are written by their stages with
:class:`mmshm.monitor.latency.LatencyRecorder`.
"""
from __future__ import annotations

from mmshm.exporter.collector import SharedMemoryCollector, metric_name
from mmshm.exporter.server import ExporterAgent, ExporterServer

__all__ = ["ExporterAgent", "ExporterServer", "SharedMemoryCollector", "metric_name"]
