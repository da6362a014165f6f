"""`pipeline-playground`: start the playground's app on 127.0.0.1, print its URL, warm TensorFlow up behind it."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from pipeline.config.overrides import CONF_DIR
from pipeline.playground.app import LOOPBACK, create_app


def warm_up() -> None:
    """Import what a try needs (Keras and TensorFlow, MLflow, Hydra, Matplotlib) and train 2 untracked epochs once,
    while the page loads: the first try's first frame then comes in 0.15 s, not 3 s."""
    from pipeline import import_keras
    from pipeline.core import engines, plots  # noqa: F401
    from pipeline.playground import frames, state
    from pipeline.tracking import runs

    import_keras()
    chosen = state.prepare({"epochs": "2"})
    drawn = frames.Frames(chosen.plain, chosen.dataset)

    def draw(epoch: int, columns: dict[str, Any], parameters: list[Any]) -> None:
        drawn.frame(epoch, columns, parameters)

    engines.train(chosen.plain, chosen.dataset, engines.schedule_from(chosen.plain["trainer"]), watch=draw)
    runs.open_store(chosen.plain)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipeline-playground",
        description="The playground: change a knob, watch the boundary form; every try is an MLflow run.",
    )
    parser.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow --host other than loopback: anyone who reaches it can train and save"
    )
    parser.add_argument("--mlflow-ui", default="http://127.0.0.1:5000", help="where `mlflow ui` serves, for the run links")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Start the app, print its URL, import TensorFlow in the background."""
    import socket

    import uvicorn

    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.host not in LOOPBACK and not args.allow_remote:
        print(
            f"error: --host={args.host!r} is not allowed: 127.0.0.1 or localhost (another host needs --allow-remote)",
            file=sys.stderr,
        )
        sys.exit(2)
    if not 0 <= args.port <= 65535:
        print(f"error: --port={args.port} is not allowed: 0 to 65535", file=sys.stderr)
        sys.exit(2)
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: anyone who reaches it can train and write experiments here", file=sys.stderr)
    os.chdir(CONF_DIR.parent)  # runs/, mlflow.db and the presets of the project, wherever it was started
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as error:
        print(f"error: --port={args.port} is not allowed: a free port ({error.strerror})", file=sys.stderr)
        sys.exit(2)
    port = sock.getsockname()[1]
    ready = threading.Event()

    def warm() -> None:
        started = time.perf_counter()
        warm_up()
        ready.set()
        print(
            f"ready: TensorFlow, MLflow and Hydra imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True
        )

    app = create_app(args.host, port, args.mlflow_ui.rstrip("/"), ready)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"playground: http://{shown}:{port}/  (Ctrl-C stops it)", flush=True)
    threading.Thread(target=warm, name="warm-up", daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
