"""`mmshm halt`, `mmshm resume`, `mmshm pause`: act on a running instance (mmshm.supervisor.control).

- ``mmshm halt [--reason TEXT]``: HALT command + SIGUSR1 to risk and the executor (cancel-all).
  A manual halt lasts until ``mmshm resume``.
- ``mmshm resume``: risk's manual resume (re-entry at the reduced limits), clears a pause;
  asks the watchdog (SIGHUP) to clear its HALT if it raised one.
- ``mmshm pause [--off | --toggle]``: pull quotes without halting (risk sets the paused flag).

Each waits up to ``--timeout`` seconds to see the effect in the control block and says
so. Exit codes: 0 done and confirmed, 1 delivered but not confirmed, 3 instance not running.
"""
from __future__ import annotations

import argparse
import os
import sys

import orjson

EXIT_UNCONFIRMED = 1
EXIT_NOT_RUNNING = 3


def _report(args: argparse.Namespace, res) -> int:
    if args.json:
        print(orjson.dumps({"instance": args.instance, **res.to_json()}).decode())
    else:
        sig = ", ".join(f"{role} {pids}" for role, pids in res.signalled.items()) or "none"
        seq = res.command.seq if res.command else "-"
        state = "confirmed" if res.confirmed else "NOT confirmed"
        print(f"mmshm {args.command}: instance {args.instance}: command #{seq} sent, signalled: {sig}; "
              f"{state}: {res.detail}", file=sys.stdout if res.confirmed else sys.stderr)
    return 0 if res.confirmed else EXIT_UNCONFIRMED


def run(args: argparse.Namespace) -> int:
    from mmshm.supervisor import control

    try:
        if args.command == "halt":
            res = control.halt(args.instance, args.reason, timeout_s=args.timeout)
        elif args.command == "resume":
            res = control.resume(args.instance, timeout_s=args.timeout)
        else:
            on = None if args.toggle else not args.off
            res = control.pause(args.instance, on, timeout_s=args.timeout)
    except control.NotRunning as exc:
        if args.json:
            print(orjson.dumps({"instance": args.instance, "action": args.command, "error": str(exc)}).decode())
        print(f"mmshm {args.command}: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except TimeoutError as exc:
        print(f"mmshm {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNCONFIRMED
    return _report(args, res)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instance", default=os.environ.get("MMSHM_INSTANCE") or "main",
                   help="instance name (default $MMSHM_INSTANCE or 'main')")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds to wait for the effect in the control block (default 2)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def register(subparsers: argparse._SubParsersAction) -> None:
    tail = " Exit 0 when confirmed, 1 when delivered but not confirmed, 3 when the instance is not running."
    p = subparsers.add_parser("halt", help="emergency halt: risk HALT + executor cancel-all (until `mmshm resume`)",
                              description="Write the HALT command and send SIGUSR1 to risk and the executor "
                                          "(the executor cancels every order). Lasts until `mmshm resume`." + tail)
    p.add_argument("--reason", default="manual", help="why (kept in the command and risk's post-mortem)")
    _common(p)
    p = subparsers.add_parser("resume", help="a person restarts quoting after a halt (risk's manual resume)",
                              description="Write the RESUME command: risk re-enters (reduced limits first), "
                                          "the pause is cleared, and the watchdog is asked (SIGHUP) to clear "
                                          "its HALT when every critical role is OK." + tail)
    _common(p)
    p = subparsers.add_parser("pause", help="pull quotes without halting (--off to quote again)",
                              description="Write the PAUSE command: risk sets the paused flag in the control "
                                          "block and the quoter pulls its quotes; --off clears it, --toggle "
                                          "inverts the current flag." + tail)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--off", action="store_true", help="unpause")
    g.add_argument("--toggle", action="store_true", help="invert the current paused flag")
    _common(p)
