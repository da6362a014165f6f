"""The reference pipeline for small neural networks: DVC stages, Hydra configs, Keras models, MLflow runs."""

import functools
import gc
import os
import signal
import sys
import types

# Must be set before TensorFlow is first imported, or every command prints CUDA and oneDNN noise;
# oneDNN off also keeps CPU results bitwise reproducible.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's matmuls run oneDNN's sgemm even with its opts off, and it picks its kernels by CPU: an AVX-512 host
# summed in another order than an AVX2 one (history.csv differed in 3 of 7 runs, up to 2.5e-6 relative). Capped at
# AVX2 (a cap: older CPUs keep their own), AVX-512 hosts run the kernels AVX2 hosts run, for the same bits.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


def interrupted_while_importing(signum: int, frame: types.FrameType | None) -> None:
    """Ctrl-C before a command's main() starts: one line, as main() prints it, not an import traceback."""
    sys.stderr.write("error: interrupted (Ctrl-C)\n")
    os._exit(130)  # nothing is written yet; main() puts Python's own handler back first thing


if os.path.basename(sys.argv[0]).startswith("pipeline-") or sys.argv[0] == "-m":  # a command, not an import
    signal.signal(signal.SIGINT, interrupted_while_importing)


@functools.cache
def import_keras() -> types.ModuleType:
    """Import Keras and TensorFlow once per process; keep the objects alive then out of every later cycle collection."""
    # Their ~400k objects live as long as the process, yet the collector walked them during the import (~1.2 s)
    # and in every full collection after it (~0.2 s, about once per job of a sweep).
    enabled = gc.isenabled()
    gc.disable()
    try:
        import keras
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    return keras
