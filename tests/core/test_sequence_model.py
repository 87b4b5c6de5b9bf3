"""The sequence model (fercore.training.sequence): the LSTM learns, runs are cached beside the CNN
run, the protocol and the CNN baseline are reported, the CLI prints them."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
import torch.nn.functional as F

from fercore.data.phantom import generate_faceset
from fercore.data.phantom.sequences import generate_sequences
from fercore.store.faceset_h5 import save_faceset
from fercore.training import sequence as seqmod
from fercore.training.loop import TrainConfig, train
from fercore.training.models import ModelSpec
from fercore.training.sequence import (
    LSTMSpec,
    SequenceConfig,
    SequenceNet,
    load_sequence_model,
    train_sequence,
)

TINY_LSTM = LSTMSpec(hidden=8)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A tiny CNN trained for one epoch on 96 still phantom faces (rounds 0 and 1)."""
    root = tmp_path_factory.mktemp("seqmodel")
    path = root / "still.h5"
    save_faceset(generate_faceset(96, size=32, seed=1, n_folds=4), path)
    spec = ModelSpec(in_size=32, width=0.125, n_classes=8, channels=(4, 8, 16))
    return train(path, spec, TrainConfig(epochs=1, batch_size=16, folds=(0, 1)), root=root / "runs")


@pytest.fixture(scope="module")
def seq_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqdata")
    expr, micro = root / "expr.h5", root / "micro.h5"
    save_faceset(generate_sequences(8, per_subject=4, n_frames=8, size=32, seed=3, n_folds=4), expr)
    save_faceset(generate_sequences(8, per_subject=4, n_frames=10, size=32, seed=3, n_folds=4, kind="micro",
                                    micro_frames=(2, 3)), micro)
    return expr, micro


@pytest.fixture()
def one_thread():
    """The LSTM is tiny: two torch threads on a loaded 2-core machine only spin (train_sequence
    trains on one thread too)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lstm_loss_falls_on_a_tiny_set(one_thread):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 6, 5, generator=g)
    y = torch.arange(24) % 3
    x[:, 3:, 0] += 2.0 * y[:, None]  # the class shows in the last frames
    frames = torch.zeros(24, 6)
    frames[:, 3:] = (y[:, None] > 0).float()
    lengths = torch.full((24,), 6)
    torch.manual_seed(0)
    model = SequenceNet(5, 3, LSTMSpec(hidden=8, dropout=0.0), frame_head=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(25):
        seq, frame = model(x, lengths)
        loss = F.cross_entropy(seq, y) + F.binary_cross_entropy_with_logits(frame, frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert seq.shape == (24, 3) and frame.shape == (24, 6)


def test_cnn_head_starts_as_the_cnn_on_the_last_frame(cnn_run, one_thread):
    from fercore.training.models import load_model

    cnn = load_model(cnn_run, 0)
    rest = seqmod.cnn_rest(cnn, "classifier.relu4")
    x = torch.randn(3, 5, 300).abs()
    model = SequenceNet(300, 2, TINY_LSTM, frame_head=False, cnn_head=rest, class_index=[4, 1]).eval()
    seq, _ = model(x, torch.tensor([5, 3, 4]))
    want = cnn.classifier[-1](x[torch.arange(3), torch.tensor([4, 2, 3])])[:, [4, 1]]
    torch.testing.assert_close(seq, want)
    assert all(not p.requires_grad for p in model.cnn_head.parameters())


def test_expression_run_cached_with_protocol_and_baseline(cnn_run, seq_files, monkeypatch):
    expr, _ = seq_files
    config = SequenceConfig(epochs=2, folds=(0, 1))
    out = train_sequence(cnn_run, expr, spec=TINY_LSTM, config=config)
    assert out.parent == cnn_run / "sequence" and out.name.startswith("expr-expression-")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layer"] == "classifier.relu4" and cfg["head"] == "cnn" and cfg["kind"] == "sequence"
    assert cfg["faceset"]["n_sequences"] == 32 and cfg["cnn_run"]["folds"] == [0]
    m = json.loads((out / "metrics.json").read_text())
    assert [f["fold"] for f in m["folds"]] == [0, 1]
    assert all(0 <= f["cnn_apex_acc"] <= 1 and f["cnn_subjects_seen"] == 0 for f in m["folds"])
    p = m["protocol"]
    assert p["subject_independent"] and p["n_sequences"] == 32 and p["frames_per_sequence"] == [8, 8]
    assert "no test subject was among the CNN's training" in p["text"] and "4 folds over whole sequences" in p["text"]
    assert m["cnn_apex"]["mean_acc"] is not None and "apex frame alone" in m["summary"]
    assert list((cnn_run / "sequence" / "features").glob("classifier.relu4-max-fold0-*.npy"))
    # same inputs: a cache hit (nothing computed); a new LSTM setting reuses the cached features
    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(seqmod, "_train_round", boom)
    assert train_sequence(cnn_run, expr, spec=TINY_LSTM, config=config) == out
    monkeypatch.undo()
    monkeypatch.setattr(seqmod, "frame_features", boom)
    other = train_sequence(cnn_run, expr, spec=TINY_LSTM, config=SequenceConfig(epochs=1, folds=(0,), lr=1e-2))
    assert other != out and (other / "metrics.json").exists()
    model = load_sequence_model(out, 1)
    assert model.cnn_head is not None


def test_micro_run_detects_and_locates(cnn_run, seq_files):
    _, micro = seq_files
    out = train_sequence(cnn_run, micro, spec=TINY_LSTM, config=SequenceConfig(layer="features", epochs=2, folds=(0,)))
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "micro" and m["classes"] == ["none", "micro"]
    f = m["folds"][0]
    assert {"frame_f1", "onset_errors", "onset_within_2", "cnn_any_frame_detection_acc"} <= set(f)
    assert 0 <= m["micro"]["detection_acc"] <= 1 and "micro-expression detection" in m["protocol"]["text"]
    model = load_sequence_model(out, 0)
    assert model.frame_head is not None and model.cnn_head is None


def test_errors_name_the_argument(cnn_run, seq_files):
    expr, micro = seq_files
    with pytest.raises(ValueError, match="layer 'nope'"):
        train_sequence(cnn_run, expr, config=SequenceConfig(layer="nope", epochs=1))
    with pytest.raises(ValueError, match="head 'cnn'"):
        train_sequence(cnn_run, expr, config=SequenceConfig(layer="features.conv3", head="cnn", epochs=1))
    with pytest.raises(ValueError, match="task 'micro'"):
        train_sequence(cnn_run, expr, config=SequenceConfig(task="micro", epochs=1))
    with pytest.raises(ValueError, match="cnn_fold"):
        train_sequence(cnn_run, expr, config=SequenceConfig(cnn_fold=3, epochs=1))
    with pytest.raises(ValueError, match="SequenceConfig.pool"):
        SequenceConfig(pool="mean")


def test_cli_prints_rounds_protocol_and_baseline(cnn_run, seq_files, capsys):
    from fercore.cli import sequence as cli

    expr, _ = seq_files
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--run", str(cnn_run), "--data", str(expr), "--epochs", "1", "--folds", "1",
                         "--hidden", "8", "--quiet"])
    assert cli.run(args) == 0
    text = capsys.readouterr().out
    assert "round 0: test" in text and "protocol: " in text and "CNN on the apex frame alone" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--run", "x", "--data", "y", "--cnn-fold", "last"])
