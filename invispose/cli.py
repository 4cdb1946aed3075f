"""The `invispose` command: config checks, CSI tools, simulator, model, benchmarks, runtime."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from invispose import __version__
from invispose.errors import ConfigError, InvisPoseError
from invispose.output import json_stdout, print_json

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSI_DATA = PROJECT_ROOT.parent / "shared" / "data" / "csi"


def _config_check(args: argparse.Namespace) -> int:
    from invispose.config import load_config

    try:
        config = load_config(args.path)
    except ConfigError as exc:
        if exc.problems:
            print(f"{args.path}: {len(exc.problems)} problem(s)", file=sys.stderr)
            for loc, msg in exc.problems:
                print(f"  {loc}: {msg}", file=sys.stderr)
        else:
            print(f"{args.path}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.path}: ok ({len(config.spaces)} spaces, {len(config.routers)} routers, "
        f"{len(config.zones)} zones)"
    )
    return 0


def _int_list(text: str, option: str) -> list[int]:
    """``8`` or ``1,2,4,8`` as a list of non-negative integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise InvisPoseError(f"{option} takes a number or a comma-separated list, got {text!r}")
    return values


def _bench(args: argparse.Namespace) -> int:
    result: object
    if args.target == "csi":
        from invispose.csi.bench import bench_csi

        if not args.data.is_dir():
            raise InvisPoseError(f"no captures at {args.data} (use --data DIR)")
        result = bench_csi(args.data)
    elif args.target == "sim":
        from invispose.sim.bench import bench_sim

        result = bench_sim(seconds=args.seconds)
    elif args.target == "model":
        from invispose.model.bench import bench_model

        sizes = tuple(int(b) for b in args.batch.split(",") if b.strip())
        if args.space:
            from invispose.model.bench import bench_space_model

            result = bench_space_model(sizes, seconds=args.seconds, num_threads=args.threads)
        else:
            result = bench_model(sizes, seconds=args.seconds, num_threads=args.threads)
    elif args.target == "pipeline":
        from deployments.bench import run_pipeline_bench  # Ray only for this benchmark

        result = run_pipeline_bench(
            _int_list(args.routers, "--routers"), _int_list(args.clients, "--clients"),
            args.duration, args.checkpoint, integrations=args.integrations,
        )
    else:
        raise InvisPoseError(f"bench {args.target}: not implemented yet")
    print_json(result, indent=None if args.json else 2)
    return 0


def _up(args: argparse.Namespace) -> int:
    from invispose.config import DEFAULT_CONFIG, load_config, resolve_paths

    site = resolve_paths(load_config(args.config or DEFAULT_CONFIG))
    if args.port is not None:
        site = site.model_copy(update={"serve": site.serve.model_copy(update={"port": args.port})})
    if not site.model.checkpoint.exists():
        raise InvisPoseError(
            f"no model weights at {site.model.checkpoint}; train them with `invispose train` "
            "or set model.checkpoint in the config"
        )
    from invispose.service import is_worker, run_in_own_session, stop_on_signals

    if not is_worker():  # a signal to our process group must not reach Ray's processes
        argv = ["--verbose"] if args.verbose else []
        argv += ["up", "--config", str(args.config or DEFAULT_CONFIG)]
        argv += ["--port", str(args.port)] if args.port is not None else []
        argv += ["--address", args.address] if args.address else []
        return run_in_own_session([sys.executable, "-m", "invispose.cli", *argv])
    import threading

    stop = threading.Event()  # a signal before Ray is even imported is kept, not fatal
    stop_on_signals(stop)
    from deployments.app import run_forever  # Ray is imported only for this command

    run_forever(site, args.address, stop)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command group."""
    from invispose import keys as keys_commands
    from invispose.csi import commands as csi_commands
    from invispose.localise import commands as localise_commands
    from invispose.model import commands as model_commands
    from invispose.sim import commands as sim_commands

    parser = argparse.ArgumentParser(prog="invispose", description=__doc__)
    parser.add_argument("--version", action="version", version=f"invispose {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="configuration files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file, listing every error")
    check.add_argument("path", type=Path)
    check.set_defaults(func=_config_check)

    csi_commands.register(sub)
    keys_commands.register(sub)
    localise_commands.register(sub)
    model_commands.register(sub)
    sim_commands.register(sub)

    bench = sub.add_parser("bench", help="benchmarks (JSON output)")
    bench.add_argument("target", choices=["csi", "sim", "model", "pipeline"])
    bench.add_argument("--json", action="store_true", help="compact one-line JSON")
    bench.add_argument("--data", type=Path, default=DEFAULT_CSI_DATA, help="captures (csi)")
    bench.add_argument("--batch", default="1,8,32", help="batch sizes (model)")
    bench.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    bench.add_argument("--threads", type=int, default=1, help="torch CPU threads (model)")
    bench.add_argument(
        "--space", action="store_true",
        help="the space-input model on space windows (Intel 3x3 + ESP32), maps timed apart",
    )
    bench.add_argument(
        "--routers", default="8", help="simulated routers (pipeline), e.g. 8 or 1,2,4,8,16"
    )
    bench.add_argument(
        "--clients", default="100", help="WebSocket clients (pipeline), e.g. 100 or 0,100,1000"
    )
    bench.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    bench.add_argument(
        "--integrations", action="store_true",
        help="pipeline: the MQTT bridge (embedded broker) and a webhook of every event too",
    )
    bench.add_argument(
        "--checkpoint", type=Path, default=Path("models/invispose-space.pt"), help="weights"
    )
    bench.set_defaults(func=_bench)

    up = sub.add_parser("up", help="start the runtime (embedded default)")
    up.add_argument("--config", type=Path, default=None)
    up.add_argument("--address", default=None)
    up.add_argument("--port", type=int, default=None)
    up.set_defaults(func=_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command; project errors become one line and exit status 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if getattr(args, "json", None) is True:  # stdout carries the JSON document alone
            with json_stdout():
                return int(args.func(args))
        return int(args.func(args))
    except InvisPoseError as exc:
        print(f"invispose: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
