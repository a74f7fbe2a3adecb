"""Stream runner, `vadapters adapt` and save/load of every TTA wrapper."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from vadapters.errors import BadInputError
from vadapters.tta import LAME, METHODS, Source, build_method
from vadapters.tta.runner import PeakMemory, StreamResult, error_table, make_stream, run_stream

pytestmark = pytest.mark.usefixtures("one_thread")


def test_make_stream_kinds_and_resets():
    continual = make_stream("continual", ["brightness", "clean"], batch_size=8, num_samples=20, repeats=2)
    assert [b["reset"] for b in continual].count(True) == 1
    assert [b["domain"] for b in continual if b["x"].shape[0]][::3] == ["brightness", "clean", "brightness", "clean"]
    iid = make_stream("iid", ["brightness", "clean"], batch_size=8, num_samples=20)
    assert sum(b["reset"] for b in iid) == 2 and len(iid) == 6
    sorted_stream = make_stream("non-iid", ["clean"], batch_size=20, num_samples=20)
    assert sorted_stream[0]["y"].tolist() == sorted(sorted_stream[0]["y"].tolist())
    shifted = make_stream("label-shift", ["clean"], batch_size=8, num_samples=100)
    counts = torch.bincount(torch.cat([b["y"] for b in shifted]), minlength=10)
    assert counts.max() > 2 * counts[counts > 0].min()
    with pytest.raises(BadInputError, match="stream"):
        make_stream("shuffled")


def test_run_stream_counts_errors_per_segment_and_pass(cnn):
    batches = make_stream("continual", ["contrast", "clean"], batch_size=10, num_samples=20, repeats=2)
    result = run_stream(Source(cnn), batches, progress=False)
    assert [(s["domain"], s["pass"], s["n"]) for s in result.segments] == [
        ("contrast", 0, 20),
        ("clean", 0, 20),
        ("contrast", 1, 20),
        ("clean", 1, 20),
    ]
    expected = 0
    for b in batches:
        expected += int((Source(cnn)(b["x"]).argmax(1) != b["y"]).sum())
    assert sum(s["errors"] for s in result.segments) == expected
    assert result.pass_errors()[0] == pytest.approx(result.pass_errors()[1])  # the source model does not adapt
    assert len(result.batch_seconds) == len(batches) and result.seconds_per_batch > 0
    data = result.to_dict()
    assert json.loads(json.dumps(data))["mean_error"] == pytest.approx(result.mean_error)
    table = error_table({"source": result})
    assert "contrast#2" in table.splitlines()[0]


def test_runner_resets_between_independent_domains(cnn):
    calls = []

    class Spy(Source):
        def reset(self):
            calls.append(self.steps)
            super().reset()

    run_stream(
        Spy(cnn),
        make_stream("iid", ["brightness", "clean", "contrast"], batch_size=10, num_samples=20),
        progress=False,
    )
    assert calls == [2, 4]


def test_peak_memory_measures_something():
    with PeakMemory("cpu") as memory:
        block = torch.ones(4_000_000)
        del block
    assert memory.bytes is None or memory.bytes >= 8_000_000


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_saves_and_loads(tmp_path, cnn, name):
    options = {"n_aug": 1} if name in ("cotta", "vdp") else {}
    method = build_method(name, cnn, **options)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    probs = method(x)
    assert probs.shape == (6, 10) and torch.allclose(probs.sum(1), torch.ones(6), atol=1e-5)
    method.save_pretrained(tmp_path)
    loaded = type(method).from_pretrained(cnn, tmp_path)
    assert loaded.config == method.config
    state, again = method.state_dict(), loaded.state_dict()
    assert set(state) == set(again) and all(torch.equal(state[k], again[k]) for k in state)


def test_build_method_unknown():
    with pytest.raises(BadInputError, match="unknown TTA method"):
        build_method("shot", torch.nn.Linear(2, 2))


def test_adapt_command_writes_json(tmp_path, capsys):
    from vadapters.commands import adapt

    parser = argparse.ArgumentParser()
    adapt.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "run.json"
    args = parser.parse_args(
        ["adapt", "--model", "tiny:test_resnet", "--method", "lame", "--stream", "non-iid", "--corruptions",
         "brightness,clean", "--num-samples", "20", "--batch-size", "10", "--set", "affinity=linear", "--no-progress",
         "--out", str(out)]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| lame | " in printed and "mean error" in printed
    record = json.loads(out.read_text())
    assert record["result"]["config"]["affinity"] == "linear"
    assert [s["domain"] for s in record["result"]["segments"]] == ["brightness", "clean"]


def test_error_table_layout():
    seg = [{"domain": "brightness", "pass": 0, "n": 4, "errors": 1, "error": 0.25}]
    result = StreamResult("lame", {}, seg, [0.1, 0.2], None, 0.3)
    assert error_table({"lame": result}).splitlines()[-1] == "| lame | 25.0 | 25.0 |"
    assert result.seconds_per_batch == pytest.approx(0.2)


def test_lame_under_runner_keeps_model(cnn):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    run_stream(LAME(cnn), make_stream("non-iid", ["clean"], batch_size=10, num_samples=20), progress=False)
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())


def test_demo_plot_writes_png(tmp_path):
    from PIL import Image

    from vadapters.demos.tta import plot_errors

    seg = [{"domain": d, "pass": 0, "n": 4, "errors": 1, "error": 0.25} for d in ("fog", "snow")]
    results = {m: StreamResult(m, {}, seg, [0.1], None, 0.1) for m in ("source", "lame")}
    path = plot_errors(results, str(tmp_path / "plot.png"))
    with Image.open(path) as image:
        assert image.size[0] > 200 and image.mode == "RGB"
