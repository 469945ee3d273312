"""Hyperliquid over a real (loopback) WebSocket: a tiny server replays the sample capture
after the client subscribes; the connection manager + adapter and `mmshm record` consume it."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import orjson
import pytest
from websockets.asyncio.server import serve

from mmshm.venues.capture import CaptureReader, load_capture
from mmshm.venues.connection import WsConnection
from mmshm.venues.hyperliquid.constants import instrument_spec
from mmshm.venues.hyperliquid.marketdata import HyperliquidMarketData, connection_config
from mmshm.venues.hyperliquid.parsing import subscription_messages


class HlReplay:
    """Answers subscribe with ``subscriptionResponse`` then replays the capture; answers pings."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.subscriptions: list[dict] = []
        self.pings = 0

    async def handler(self, ws) -> None:
        async for msg in ws:
            req = json.loads(msg)
            if req.get("method") == "ping":
                self.pings += 1
                await ws.send('{"channel":"pong"}')
                continue
            self.subscriptions.append(req["subscription"])
            await ws.send(json.dumps({"channel": "subscriptionResponse", "data": req}))
            if len(self.subscriptions) == 2:
                for f in self.frames:
                    await ws.send(f, text=True)


@pytest.mark.timeout(60)
def test_connection_manager_and_adapter_over_the_wire(hyperliquid_capture) -> None:
    _, frames = load_capture(hyperliquid_capture)

    async def main() -> None:
        replay = HlReplay(frames)
        async with serve(replay.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            md = HyperliquidMarketData(instrument_spec("BTC"))
            events = []

            async def on_connect(conn: WsConnection) -> None:
                for m in subscription_messages("BTC"):
                    await conn.send(m)

            cfg = connection_config(f"ws://127.0.0.1:{port}", app_ping_interval_s=0.05, silence_timeout_s=None)
            conn = WsConnection(cfg, lambda data, ns: events.extend(md.handle(data, ns)), on_connect=on_connect)
            task = asyncio.create_task(conn.run())
            for _ in range(500):
                if md.messages["l2Book"] == 46 and md.messages["trades"] == 9 and replay.pings:
                    break
                await asyncio.sleep(0.01)
            await conn.stop()
            await asyncio.wait_for(task, 5)
        assert [s["type"] for s in replay.subscriptions] == ["l2Book", "trades"]
        assert md.messages["l2Book"] == 46 and md.messages["trades"] == 9 and md.messages["subscriptionResponse"] == 2
        assert not md.drops and replay.pings >= 1 and md.messages["pong"] >= 1
        assert len(events) > 46

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_record_hyperliquid(tmp_path, hyperliquid_capture) -> None:
    _, frames = load_capture(hyperliquid_capture)
    out = tmp_path / "hl.gz"

    async def main() -> dict:
        replay = HlReplay(frames)
        async with serve(replay.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mmshm", "record", "--venue", "hyperliquid", "--symbols", "BTC", "-o", str(out),
                "--duration", "2", "--ws-url", f"ws://127.0.0.1:{port}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, stderr.decode()
            return json.loads(stdout.decode().strip().splitlines()[-1])

    summary = asyncio.run(main())
    recorded = [f for _, f in CaptureReader(out)]
    data = [f for f in recorded if orjson.loads(f)["channel"] in ("l2Book", "trades")]
    assert data == frames
    assert summary["frames"] == len(recorded) == len(frames) + 2  # + two subscriptionResponse
