"""The tuning sweep (``benchmarks.tune``) and the config tables (``config_tables``) without a GPU.

The sweep's plumbing runs in Triton's interpreter on tiny layers with the timing function stubbed:
every candidate's launches run once on real tensors, the "fastest" is written to a table, the
table is read back, ``conv_config`` & co. return its entries, and the launches they make compute
the reference's result. The budget of a full sweep is checked by arithmetic (``--dry-run``), and
every entry of a table (a generated one here; the shipped ones when there are any) compiles for
its arch (``conv_check --tables``)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _utils import assert_close_to_reference

pytest.importorskip("triton")

from benchmarks import tune  # noqa: E402
from yolov12_kernels import reference  # noqa: E402
from yolov12_kernels._conv_checks import unsupported  # noqa: E402
from yolov12_kernels.conv_shapes import ConvShape  # noqa: E402
from yolov12_kernels.triton import config_tables as T  # noqa: E402
from yolov12_kernels.triton import conv as K  # noqa: E402
from yolov12_kernels.triton import dwconv as D  # noqa: E402
from yolov12_kernels.triton import mlp as Mk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
interpreted = pytest.mark.skipif(unsupported(torch.device("cpu"), torch.float32) is not None,
                                 reason="the Triton kernels cannot run here (interpreter)")

# tiny layers of each family: a 3x3 conv, a 1x1 conv with a residual into a concat slice, an MLP
# pair (hidden 1.2x: a tail) and a depthwise conv
ROWS = [
    (ConvShape("t.conv3", 16, 24, 3, 1, 6, 5), None),
    (ConvShape("t.conv1", 32, 16, 1, 1, 5, 4, residual=True, out_off=8, out_total=32), None),
    (ConvShape("t.mlp.0", 16, 19, 1, 1, 4, 5, role="mlp1"),
     ConvShape("t.mlp.1", 19, 16, 1, 1, 4, 5, silu=False, residual=True, role="mlp2")),
    (ConvShape("t.dw", 24, 24, 3, 1, 5, 6, depthwise=True), None),
]


def _descending():
    """A stub timer: each call 'faster' than the last, so the last candidate of a class wins
    (never the heuristic, the first)."""
    t = [1000.0]

    def time_fn(fn, est_us, device):
        t[0] -= 1.0
        return t[0]
    return time_fn


@interpreted
def test_sweep_writes_a_table_that_the_config_functions_use(tmp_path):
    dtype = torch.float32
    classes = tune.shape_classes([(2, ROWS)], dtype, "sm90")
    assert sorted(c.kind for c in classes) == ["conv", "conv", "dwconv", "mlp"]
    log = []
    entries = tune.sweep(classes, dtype, "sm90", torch.device("cpu"), time_fn=_descending(),
                         limit=3, log=log.append, progress=lambda *_: None)
    assert len(entries) == 4 and len(log) == sum(len(tune.candidates(c, dtype, "sm90", 3))
                                                 for c in classes)
    assert all("us" in rec for rec in log), [r for r in log if "error" in r]
    args = tune.build_parser().parse_args(["--out", str(tmp_path)])
    meta = tune.table_meta(torch.device("cpu"), dtype, args, 0.0, True, 4, 4)
    path = T.write(tmp_path / "sm90.json", meta, entries)
    written = json.loads(path.read_text())["meta"]
    assert written["format"] == T.FORMAT and written["source"] == "tune"
    assert {"device", "torch", "triton", "date", "git", "budget_s"} <= set(written)

    torch.manual_seed(0)
    with T.tables_from(tmp_path):
        for c in classes:
            e = entries[c.key]
            assert e["config"] != list(tune.candidates(c, dtype, "sm90", 3)[0])  # not heuristic
            r, m = c.row, c.batch * c.row.ho * c.row.wo
            if c.kind == "conv":
                got = K.conv_config("sm90", dtype, m, r.cout, r.cin, r.k, r.stride)
                assert got == K.Config(*e["config"])
                assert K.conv_config("sm80", dtype, m, r.cout, r.cin, r.k, r.stride) == \
                    K.heuristic_config("sm80", dtype, m, r.cout, r.cin, r.k, r.stride)
            elif c.kind == "mlp":
                assert Mk.mlp_config(r.cin, dtype, m, r.cout, "sm90") == Mk.Config(*e["config"])
            else:
                assert D.dwconv_config(r.cin, m, "sm90", dtype) == D.Config(*e["config"])
        # the launches the table's configurations make compute the layer (interpreted)
        conv = next(c for c in classes if c.row.name == "t.conv3").row
        x = torch.randn(2, conv.cin, conv.h, conv.w).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(conv.cout, conv.cin, 3, 3) / 12).contiguous(
            memory_format=torch.channels_last)
        b = torch.randn(conv.cout)
        out = torch.full((2, conv.cout, conv.ho, conv.wo), float("nan")).contiguous(
            memory_format=torch.channels_last)
        runs = K.launches(x, w, b, None, None, out, 1, True, arch="sm90")
        assert runs[0].kwargs["BLOCK_M"] == entries[classes[[c.row.name for c in classes].index(
            "t.conv3")].key]["config"][0]
        for k in runs:
            k.kernel[k.grid](*k.args, **k.kwargs)
    hi = reference.conv_bn_act(x.double(), w.double(), b.double(), 1, True, None, None)
    assert_close_to_reference(out, hi, reference.conv_bn_act(x, w, b, 1, True, None, None))
    # outside the block the heuristics again
    assert K.conv_config("sm90", dtype, 60, 24, 16, 3, 1) == K.heuristic_config(
        "sm90", dtype, 60, 24, 16, 3, 1)


def test_a_failing_candidate_is_dropped_with_its_reason():
    classes = tune.shape_classes([(1, ROWS[:1])], torch.float16, "sm90")
    log = []

    def boom(fn, est_us, device):
        raise RuntimeError("out of resources")
    with pytest.MonkeyPatch.context() as mp:  # no launch at all: only the bookkeeping
        mp.setattr(tune, "run_once", lambda runs: 0)
        entries = tune.sweep(classes, torch.float16, "sm90", torch.device("meta"), time_fn=boom,
                             limit=2, log=log.append, progress=lambda *_: None)
    assert entries == {} and [r["error"] for r in log] == ["RuntimeError: out of resources"] * 2


def test_sweep_stops_at_its_deadline():
    classes = tune.shape_classes([(1, ROWS)], torch.float16, "sm90")
    said = []
    entries = tune.sweep(classes, torch.float16, "sm90", torch.device("meta"), deadline=0.0,
                         progress=said.append)
    assert entries == {} and said == [f"[tune] budget spent: 0/{len(classes)} classes tuned"]


def test_full_sweep_fits_four_minutes_on_an_h100():
    """n..x at batch 1 and 32, fp16, sm_90, 16 compile processes: the estimate of --dry-run
    (module docstring) stays under 240 s, and every class has the heuristic as a candidate."""
    classes = tune.shape_classes(tune.model_rows(tune.SCALES, (1, 32)), torch.float16, "sm90")
    e = tune.estimate(classes, torch.float16, "sm90", workers=16)
    assert e["total_s"] <= 240, e
    assert e["classes"] == len(classes) > 100 and e["candidates"] > 4 * e["classes"]
    for c in classes[:20]:
        first = tune.candidates(c, torch.float16, "sm90")[0]
        r, m = c.row, c.batch * c.row.ho * c.row.wo
        if c.kind == "conv":
            assert first == K.heuristic_config("sm90", torch.float16, m, r.cout, r.cin, r.k,
                                               r.stride)


def test_table_lookup_keys_and_errors(tmp_path):
    assert T.m_class(400) == 512 and T.m_class(512) == 512 and T.m_class(1) == 1
    key = T.conv_key(torch.float16, 6400, 192, 96, 3, 2)
    assert key == "conv/float16/k3s2/96x192/m8192"
    T.write(tmp_path / "sm80.json", {"source": "test"},
            {key: {"config": [32, 128, 16, 8, 2, 1]}})
    tuned = K.Config(32, 128, 16, 8, 2, 1)
    with T.tables_from(tmp_path):
        # the class stands for nearby pixel counts (another batch or image size)
        assert K.conv_config("sm80", torch.float16, 5000, 192, 96, 3, 2) == tuned
        assert K.conv_config("sm80", torch.float16, 9000, 192, 96, 3, 2) != tuned
        assert T.lookup("sm90", key) is None
    (tmp_path / "sm90.json").write_text(json.dumps({"meta": {"format": 99}, "entries": {}}))
    with T.tables_from(tmp_path), pytest.raises(ValueError, match="sm90.json: config table "
                                                                  "format 99"):
        T.lookup("sm90", key)
    with T.tables_from("none"):
        assert T.lookup("sm80", key) is None


def _conv_check_tables(directory=None):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    args = ["--tables"] + ([str(directory)] if directory else [])
    r = subprocess.run([sys.executable, "-m", "yolov12_kernels.triton.conv_check", *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_table_entries_compile(tmp_path):
    """conv_check --tables compiles every entry of a table for the table's arch, on the layer it
    was measured on (a conv also with a residual: the key does not hold the epilogue)."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    classes = tune.shape_classes([(1, ROWS)], torch.float16, "sm80")
    entries = {c.key: {"config": list(tune.candidates(c, torch.float16, "sm80")[-1]),
                       "example": {"row": c.row._asdict(), "batch": c.batch,
                                   "next_row": c.next_row._asdict() if c.next_row else None}}
               for c in classes}
    T.write(tmp_path / "sm80.json", {"source": "test"}, entries)
    out = _conv_check_tables(tmp_path)
    assert "sm80.json:conv/float16/k3s1/16x24" in out and " 0 with spills" in out, out[-2000:]


def test_shipped_tables_compile():
    """Every entry of every table in the package compiles for its arch (none ship until a GPU
    has measured one)."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    if not T.shipped_tables():
        pytest.skip("no config table ships yet (yolov12_kernels/triton/configs/: written by "
                    "python -m benchmarks.tune on a GPU)")
    out = _conv_check_tables()
    assert "FAIL" not in out
