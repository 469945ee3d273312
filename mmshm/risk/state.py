"""Risk's decisions survive a restart: halt, re-entry, pause and flatten state on disk.

Why: a halt must not be undone by restarting (or crash-looping) the risk process. A
manual halt would otherwise vanish, a "third halt of the day" would reset its count, a
4-hour losing-fills pause would end early. Positions and PnL are rebuilt from fills
(mmshm.risk.recovery); this file holds only what fills cannot tell.

Format: one small JSON object, written atomically (temp file, fsync, rename) whenever it
changes. Times are absolute realtime ns, so waits keep running while risk is down; the
UTC-day rollover of the halt count is the HaltController's own (``_roll_day``).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from mmshm.risk.engine import RiskEngine
from mmshm.risk.params import TriggerCode

log = logging.getLogger("mmshm.risk")

VERSION = 1
_HALT_FIELDS = ("halted", "since_ns", "resume_at_ns", "manual_required", "day", "halts_today", "last_reentry_ns",
                "scale_bp", "restore_at_ns")


def snapshot(engine: RiskEngine) -> dict:
    """The persisted part of ``engine`` (compare two snapshots to know when to save)."""
    h = engine.halts
    doc = {k: getattr(h, k) for k in _HALT_FIELDS}
    doc["reason"] = int(h.reason)
    doc["manual_pause"] = engine.manual_pause
    doc["paused_until_ns"] = engine.paused_until_ns
    doc["flatten_requested"] = engine.flatten_requested
    return doc


def save(path: Path, doc: dict) -> None:
    """Atomic write of ``doc`` (plus the format version) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"version": VERSION, **doc}, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def restore(engine: RiskEngine, path: Path) -> bool:
    """Load ``path`` into ``engine``; False if absent. A corrupt or foreign file is logged
    and ignored rather than trusted (risk then starts NORMAL, as on first start)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        log.error("risk: state file unreadable, ignored", extra={"path": str(path), "error": str(exc)})
        return False
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        log.error("risk: state file of another version, ignored", extra={"path": str(path)})
        return False
    try:                       # validate everything before touching the engine
        halt = {k: doc[k] for k in _HALT_FIELDS}
        reason = TriggerCode(int(doc["reason"]))
        pause = (bool(doc["manual_pause"]), int(doc["paused_until_ns"]), bool(doc["flatten_requested"]))
    except (KeyError, ValueError, TypeError) as exc:
        log.error("risk: state file incomplete, ignored", extra={"path": str(path), "error": str(exc)})
        return False
    h = engine.halts
    for k, v in halt.items():
        setattr(h, k, v)
    h.reason = reason
    engine.manual_pause, engine.paused_until_ns, engine.flatten_requested = pause
    engine.evaluate()          # modes and control rows from the restored state
    log.warning("risk: state restored", extra={"path": str(path), "halted": h.halted,
                                                "reason": h.reason.name, "halts_today": h.halts_today})
    return True


__all__ = ["restore", "save", "snapshot"]
