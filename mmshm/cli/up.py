"""`mmshm up`: run the whole pipeline (simulated venue + every built role), supervised.

No arguments needed: the built-in defaults are the simulated venue with its synthetic
market in paper mode. Prints supervisor events (started, ready, restarted, gave up) on
stderr and a status line every ``--status-interval`` seconds on stdout, built from
shared memory only; children's output goes to JSON-lines files in the log directory.
Ctrl-C (SIGINT) or SIGTERM stops everything in order (executor first: cancel-all) and
removes every segment of the instance. ``--duration`` stops by itself after S seconds.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

import orjson

from mmshm.config import ConfigError, add_config_arguments, load_config


def _config_args(args: argparse.Namespace) -> list[str]:
    """The configuration arguments every child gets (so they all load the same config)."""
    out: list[str] = []
    if args.config:
        out += ["--config", args.config]
    if args.profile:
        out += ["--profile", args.profile]
    if args.override_file:
        out += ["--override", args.override_file]
    for item in args.set or []:
        out += ["--set", item]
    if args.instance:
        out += ["--set", f"instance={args.instance}"]
    return out


def run(args: argparse.Namespace) -> int:
    from mmshm.supervisor.backoff import RestartPolicy
    from mmshm.supervisor.sampler import StatusSampler
    from mmshm.supervisor.statusline import format_status_line
    from mmshm.supervisor.supervisor import Supervisor, SupervisorError

    if args.status_interval <= 0:
        print("mmshm up: --status-interval must be positive", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("mmshm up: --duration must be positive", file=sys.stderr)
        return 2
    overrides = list(args.set or []) + ([f"instance={args.instance}"] if args.instance else [])
    try:
        cfg = load_config(args.config, args.profile, args.override_file, overrides or None)
    except ConfigError as exc:
        print(f"mmshm up: {exc}", file=sys.stderr)
        return 2

    def emit(rec: dict) -> None:
        if args.json:
            sys.stdout.write(orjson.dumps({"type": "event", "ts": time.time(), **rec}, default=str).decode() + "\n")
            sys.stdout.flush()
        else:
            print(f"mmshm up: {rec['msg']}", file=sys.stderr, flush=True)

    try:
        only = [r for r in args.roles.split(",") if r] if args.roles else None
        sup = Supervisor(cfg, _config_args(args), log_dir=args.log_dir, on_event=emit,
                         policy=RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window),
                         only=only, ready_timeout_s=args.ready_timeout)
    except (KeyError, ValueError) as exc:
        print(f"mmshm up: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2

    stop_signal: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        stop_signal.append(signum)
        sup.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # SIGHUP (terminal closed) stops in order too; USR1/USR2 are for the roles, not for us.
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_signal)
    sampler = StatusSampler(cfg.instance)
    from mmshm.agent.sdnotify import SdNotifier

    notifier = SdNotifier()        # when `mmshm up` itself runs as a systemd Type=notify unit
    code = 0
    try:
        emit({"event": "up", "msg": f"instance {cfg.instance}: mode {cfg.mode}, venue {cfg.venue.name}, "
                                    f"roles {', '.join(r.name for r in sup.roles) or 'none'}; logs in {sup.log_dir}",
              "log_dir": str(sup.log_dir)})
        try:
            sup.start()
        except SupervisorError as exc:
            print(f"mmshm up: {exc}", file=sys.stderr)
            code = 1
            return code
        t0 = time.monotonic()
        next_status = t0 + args.status_interval
        up_count, total = sup.running_count()
        notifier.ready(status=f"mmshm up: {up_count}/{total} processes running")
        while not sup.stopping:
            sup.poll()
            now = time.monotonic()
            notifier.maybe_ping(time.monotonic_ns())
            if args.duration is not None and now - t0 >= args.duration:
                emit({"event": "duration", "msg": f"--duration {args.duration:g} s reached"})
                break
            if now >= next_status:
                next_status = now + args.status_interval
                values = sampler.sample(now)
                values.procs_up, values.procs_total = sup.running_count()
                notifier.status(format_status_line(values))
                if args.json:
                    sys.stdout.write(orjson.dumps({"type": "status", "ts": time.time(), **values.to_json(),
                                                   "children": sup.summary()}).decode() + "\n")
                else:
                    sys.stdout.write(time.strftime("%H:%M:%S ") + format_status_line(values) + "\n")
                sys.stdout.flush()
            time.sleep(0.1)
        if stop_signal:
            emit({"event": "signal", "msg": f"{signal.Signals(stop_signal[0]).name}: stopping in order"})
        return code
    finally:
        notifier.stopping(status="mmshm up: stopping in order")
        sup.stop()
        notifier.close()
        for s, h in previous.items():
            signal.signal(s, h)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "up", help="run the whole pipeline (sim venue + every role), supervised, with a status line",
        description="Start the simulated venue (venue.name = sim) and every role that exists, in order "
                    "(feed, risk, quoter, executor, recorder, watchdog, exporter), restart any that dies "
                    "(with backoff; after too many restarts: give up and HALT), print a status line every "
                    "--status-interval seconds, and on Ctrl-C stop in order (executor first: cancel-all) "
                    "and remove every shared-memory segment of the instance.")
    add_config_arguments(p)
    p.add_argument("--instance", help="instance name (default: config `instance`, $MMSHM_INSTANCE, 'main')")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (tests, demos)")
    p.add_argument("--status-interval", type=float, default=10.0, metavar="S", help="seconds between status lines")
    p.add_argument("--json", action="store_true", help="events and status as JSON lines on stdout")
    p.add_argument("--log-dir", help="children's JSON-lines logs (default <state_dir>/<instance>/logs)")
    p.add_argument("--roles", metavar="R1,R2", help="run only these roles (default: every role that exists)")
    p.add_argument("--ready-timeout", type=float, default=None, metavar="S",
                   help="seconds to wait for each role to be RUNNING before starting the next (default 20)")
    p.add_argument("--max-restarts", type=int, default=5, help="restarts within --restart-window before giving up")
    p.add_argument("--restart-window", type=float, default=120.0, metavar="S", help="window of --max-restarts")
    p.set_defaults(func=run)
