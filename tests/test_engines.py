"""Engines: the registry, linear batching, and the sigmoid emulation that makes replicates equal standalone runs."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline.core import progress
from pipeline.core.progress import Progress
from pipeline.core import data, engines
from pipeline.errors import ConfigError


def test_the_registry_maps_each_name_to_an_engine_and_rejects_others():
    for name in engines.ENGINES:
        assert callable(engines.engine(name).train)
    with pytest.raises(ConfigError) as error:
        engines.engine("turbo")
    message = str(error.value)
    assert message.startswith("trainer.engine='turbo'") and all(name in message for name in engines.ENGINES)
    assert "\n" not in message
    with pytest.raises(ConfigError, match="trainer.replicates=3"):
        engines.check_copies("fit", 3)


def test_progress_is_quiet_on_short_runs_and_gives_a_rate_and_eta_on_long_ones(capsys, monkeypatch):
    clock = iter([0.0, 0.5, 0.6, 2.0, 4.0, 5.0, 6.5, 6.6])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    short = Progress(epochs=10, label="compiled")  # starts at 0.0
    short.update(5, 0.5, 0.75)  # 0.5 s: too soon
    short.update(10, 0.4, 1.0, final=True)  # 0.6 s: nothing was printed, so no final line either
    assert capsys.readouterr().err == ""
    long = Progress(epochs=100, label="numpy x3")  # starts at 2.0
    long.update(1, 0.3, 0.5)  # 2 s later, after the warm-up (tracing): its rate would promise an ETA of 198 s
    long.update(50, np.array([0.1, 0.2, 0.3]), np.array([1.0, 1.0, 0.5]))  # 1 s later: 49 epochs/s since, 1 s left
    line = capsys.readouterr().err.strip()
    assert line.startswith("[numpy x3] epoch 50/100") and "median loss 0.2" in line and "66.7%" in line
    assert "16.7 epochs/s" in line and "ETA 1 s" in line
    long.update(100, 0.1, 1.0)  # the last epoch's line (1.5 s later), then the final report: not a second line
    long.update(100, 0.1, 1.0, final=True)
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_initial_weights_of_many_copies_show_progress_while_created(capsys, monkeypatch):
    import itertools

    from conftest import compose_config

    from pipeline.core import keras_mlp as models

    ticks = itertools.count(0.0, 0.6)  # a slow machine: 0.6 s between clock readings
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(ticks))
    model_cfg = OmegaConf.to_container(compose_config(".", "experiment=xor_relu16").model, resolve=True)
    weights = models.initial_weights(model_cfg, 2, [0, 1, 2, 3])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(weights) == 4 and "[initial weights: seeding] copy 2/4  (1.2 s, 1.67 copies/s, ETA 1 s)" in lines
    assert lines[-1].startswith("[initial weights: drawing] copy 4/4  (") and "ETA" not in lines[-1]


def test_sigmoid_emulation_equals_tensorflows_single_element_path_bit_for_bit():
    import tensorflow as tf

    from pipeline.core.engines.exact_sigmoid import scalar_sigmoid

    z = np.concatenate([np.linspace(-30, 30, 601), np.random.default_rng(0).normal(0, 4, 400)]).astype(np.float32)
    singles = np.array([tf.sigmoid(tf.constant([v])).numpy()[0] for v in z])  # one element: TF's scalar path
    np.testing.assert_array_equal(scalar_sigmoid(tf.constant(z)).numpy(), singles)
    grads = []
    for v in z[::10]:
        x = tf.constant([v])
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.sigmoid(x)
        grads.append(tape.gradient(y, x).numpy()[0])
    x = tf.constant(z[::10])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = scalar_sigmoid(x)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), np.array(grads))


@pytest.mark.parametrize("batch, units", [(4, 1), (3, 5), (32, 4), (4, 16)])
def test_stacked_sigmoid_equals_each_copys_own_sigmoid_bit_for_bit(batch, units):
    import tensorflow as tf

    from pipeline.core.engines.exact_sigmoid import standalone_sigmoid

    z = np.random.default_rng(batch * units).normal(0, 3, (7, batch, units)).astype(np.float32)
    stacked = standalone_sigmoid(tf.constant(z)).numpy()
    for r in range(len(z)):
        np.testing.assert_array_equal(stacked[r], tf.sigmoid(tf.constant(z[r])).numpy())


def test_one_divergence_check_reads_numpy_values_and_graph_tensors_alike():
    import tensorflow as tf

    loss = [0.3, float("nan"), float("inf"), -float("inf"), 0.3]
    largest = [1.0, 1.0, 1.0, 1.0, 2e4]
    expected = [False, True, True, True, True]
    assert engines.diverged(np.array(loss), np.array(largest), 1e4).tolist() == expected
    assert engines.diverged(tf.constant(loss), tf.constant(largest), 1e4).numpy().tolist() == expected


def test_paced_cuts_chunks_by_the_measured_rate_and_keeps_their_ends():
    rates = iter([None, 0.01, 0.01, 0.001, 0.001, 0.001])
    pieces = list(engines.paced([(1, 20), (21, 5)], lambda: next(rates), budget=0.05))
    assert pieces == [(1, 1), (2, 5), (7, 5), (12, 9), (21, 5)]  # one epoch until measured; never across an end


def test_a_watch_sees_every_chunk_from_the_initial_weights_and_stops_the_run_by_raising(make_config):
    cfg = OmegaConf.to_container(
        make_config("experiment=xor_relu16", "trainer.epochs=300", "trainer.progress_every=50"), resolve=True
    )
    dataset = data.load(data.csv_path(cfg))
    seen: list[tuple[int, int]] = []

    def watch(epoch, columns, parameters):
        seen.append((epoch, len(columns.get("loss", []))))
        assert [p.shape[0] for p in parameters] == [1, 1, 1, 1]  # one copy
        if epoch >= 120:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        engines.train(cfg, dataset, engines.schedule_from(cfg["trainer"]), watch=watch)
    assert seen[0] == (0, 0) and seen[-1][0] >= 120
    assert [epoch for epoch, _ in seen] == sorted({epoch for epoch, _ in seen})  # every chunk once, in order
    assert all(epoch - previous == count for (previous, _), (epoch, count) in zip(seen, seen[1:]))
