"""Shared fixtures: configs composed from the real conf/ with Hydra's compose API, outputs in tmp dirs."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import pipeline  # noqa: F401  (sets the TensorFlow environment before anything imports it)
from pipeline.config.overrides import CONF_DIR
from pipeline.stages.generate import generate

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pipeline"


def imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in a file, those inside functions too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> tuple[dict[str, Path], dict[str, set[str]]]:
    """The package's modules (name -> file) and which of them each imports, at any place in its file."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, names in imports(ast.parse(path.read_text())):
            candidates = [f"{module}.{n}" for n in names] + [module]
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return modules, graph


@contextlib.contextmanager
def hydra_on_conf() -> Iterator[GlobalHydra]:
    """Hydra initialized on the real conf/ (compose works inside), cleared before and after."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            yield GlobalHydra.instance()
    finally:
        GlobalHydra.instance().clear()


def compose_config(root: Path, *overrides: str):
    """The real config composed with `overrides`, its paths under `root`."""
    with hydra_on_conf():
        return compose("config", overrides=[f"paths.root={root}", *overrides])


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """One folder per test process holding each dataset config generated so far, in a folder named by its values."""
    return tmp_path_factory.mktemp("generated")


def generated_copy(dataset_cfg: dict, data_dir: str | Path, generated: Path) -> None:
    """Copy the files `generate(dataset_cfg)` writes into `data_dir`, generating them once per test process."""
    made = generated / hashlib.sha256(json.dumps(dataset_cfg, sort_keys=True).encode()).hexdigest()[:16]
    if not made.exists():
        generate(dataset_cfg, made)
    shutil.copytree(made, data_dir, dirs_exist_ok=True)


@pytest.fixture
def make_config(tmp_path, generated):
    """compose(overrides...) with outputs under tmp_path and the datasets it needs generated there."""

    def make(*overrides: str, tracking: bool = False):
        cfg = compose_config(tmp_path, *overrides, f"tracking.enabled={str(tracking).lower()}")
        csv = Path(cfg.paths.data) / f"{cfg.dataset.name}.csv"
        if not csv.exists():
            generated_copy(dict(cfg.dataset), cfg.paths.data, generated)
        return cfg

    return make


@pytest.fixture
def refused(monkeypatch, capsys):
    """Call a command's `main()` in this process with `args` as its command line, expecting it to exit (the
    SystemExit is asserted); return (exit status, stderr)."""

    def run(main, *args: str) -> tuple[int | str | None, str]:
        monkeypatch.setattr(sys, "argv", ["pipeline", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code, capsys.readouterr().err

    return run


def run_cli(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """Run `python -m pipeline.stages.<module> args` in `cwd` with `env` added (None removes a variable)."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.stages.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in merged.items() if v is not None},
    )


def files_under(path: Path) -> set[str]:
    """Every file below `path`, relative."""
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def run_sweep(root: Path, *overrides: str):
    """Generate XOR under `root`, run `python -m pipeline.stages.train -m overrides` there against its own
    SQLite store; return (client, parent run, child runs) of the xor_relu16 experiment."""
    from mlflow.tracking import MlflowClient

    assert run_cli("generate", "dataset=xor", "paths.root=.", cwd=root).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.train", "-m", "experiment=xor_relu16", *overrides, "paths.root=."],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("xor_relu16").experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep") == "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(runs) == len(children) + 1  # no loose run
    return client, parents[0], children


def installed(found: str | Path | None, what: str, how: str) -> str:
    """`found` as a string; if it is missing, fail under CI (`.ci/run` installs it) and skip elsewhere, saying how to get it."""
    if found:
        return str(found)
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{what} is missing under CI=true: {how} (.ci/run does)")
    pytest.skip(f"{what} is missing: {how}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], ready_path: str, cwd: Path, env: dict | None = None, timeout: float = 240) -> Iterator[str]:
    """Run a server command (`{port}` in it becomes a free port) in `env` (default: this one); yield its URL once
    `ready_path` answers 200."""
    port = free_port()
    env = dict(os.environ if env is None else env)
    # `mlflow models serve` starts `uvicorn` by name: the venv's bin on PATH, also when pytest runs without `uv run`
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its workers are stopped with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, f"{command[:4]} exited: {server.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, f"{command[:4]} did not answer {ready_path} within {timeout} s"
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(url + ready_path, timeout=2).status == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, cwd: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with proxied artifacts; yields its URL once it answers /health."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts), "--workers", "1"]
    with serving(command, "/health", cwd, timeout=120) as url:
        yield url


def snapshot(folder):
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


COMPLETE = ("experiment=xor_relu16", "trainer.epochs=50", "paths.results=${paths.root}/results")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, generated) -> Path:
    """A root with the XOR data and a complete, evaluated results folder of xor_relu16 (seed 0, 50 epochs), made once."""
    from omegaconf import OmegaConf

    from pipeline.stages import evaluate, train

    root = tmp_path_factory.mktemp("complete")
    cfg = compose_config(root, *COMPLETE, "tracking.enabled=false")
    generated_copy(dict(cfg.dataset), cfg.paths.data, generated)
    train.train(cfg, out=root / "results" / "xor_relu16")
    evaluate.evaluate_folder(OmegaConf.to_container(cfg, resolve=True), root / "results" / "xor_relu16")
    return root


@pytest.fixture
def complete(evaluated, make_config, tmp_path):
    """A copy of `evaluated` in this test's folder: its results folder of xor_relu16 and its config."""
    shutil.copytree(evaluated, tmp_path, dirs_exist_ok=True)
    return make_config(*COMPLETE), tmp_path / "results" / "xor_relu16"
