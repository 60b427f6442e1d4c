"""Checkpoints in and out: public YOLO12 ``.pt`` files, plain state dicts, and safetensors.

Loading never executes code from the file:

* ``.safetensors`` holds raw tensors only;
* ``.pt`` / ``.pth`` go through ``torch.load(weights_only=True)`` — PyTorch's restricted
  unpickler, which only rebuilds tensors and containers. Public ultralytics checkpoints pickle
  whole model objects (``ultralytics.nn.tasks.DetectionModel``, ``torch.nn.Conv2d`` ...); for those
  class names we allow-list *inert stand-ins* (``_Inert``): classes of our own that only store the
  pickled state, so ultralytics is never imported and none of its (or anyone's) code runs. Before
  loading, the pickle's globals are listed statically; any name outside the model-class namespaces
  (``os.system``, ``builtins.eval`` ...) makes us refuse the file with a ``ValueError``.

The stand-ins are then walked like ``nn.Module.state_dict()`` would (``_parameters``, persistent
``_buffers``, ``_modules``) to get the public state dict (``model.0.conv.weight`` ...), from which
scale and nc are read and the layout is checked (``read_checkpoint``); ``YOLOv12.load`` builds
the model and loads it strictly (``load_into``).
"""
from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .architecture import LAYERS, SCALES, make_divisible
from .turbo import GROUPS, qkv_from_qk_v

# Namespaces whose classes may appear in a model checkpoint; each gets an inert stand-in. Anything
# else (os, subprocess, builtins.eval/exec/getattr, ...) is refused.
_ALLOWED_PREFIXES = (
    "ultralytics.",          # DetectionModel, Conv, C3k2, A2C2f, AAttn, Detect, namespaces
    "yolov12.model.YOLOv12",  # torch.save(model) of our own model: loaded as tensors, like the rest
    "yolov12.modules.",
    "torch.nn.modules.",     # Conv2d, BatchNorm2d, SiLU, Sequential, ModuleList, Upsample ...
    "pathlib.",              # PosixPath / WindowsPath in training arguments
    "numpy.",                # numpy scalars / dtypes in training metrics (stand-ins: never called)
    "argparse.Namespace",
    "types.SimpleNamespace",
)


class _Inert:
    """Stand-in for a class named in a checkpoint. Keeps whatever the pickle hands it, runs nothing.

    ``NEWOBJ`` creates it with no side effects, ``REDUCE`` calls it with arguments (kept in
    ``_args``), ``BUILD`` passes the object's state (an ``nn.Module``'s ``__dict__``) to
    ``__setstate__``.
    """

    _full_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.__dict__["_args"] = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or
                                                              isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def __repr__(self):
        return f"<inert {self._full_name}>"


def _inert_class(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    return type(name, (_Inert,), {"__module__": module, "__qualname__": name,
                                  "_full_name": full_name})


def _is_allowed(full_name: str) -> bool:
    return any(full_name.startswith(p) if p.endswith(".") else full_name == p
               for p in _ALLOWED_PREFIXES)


# Where the public COCO checkpoints are published (they are not downloaded by this package):
# ultralytics' YOLO12 (the paper's configuration, yolo12<scale>.pt) and the official repository's
# default, YOLOv12-turbo (yolov12<scale>.pt, its "turbo" release).
PUBLIC_WEIGHTS = {
    "yolo12": "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo12{s}.pt",
    "turbo": "https://github.com/sunsmarterjie/yolov12/releases/download/turbo/yolov12{s}.pt",
}


def public_weights_url(file_name: str) -> str | None:
    """The download address of a public checkpoint named ``file_name`` (e.g. yolo12n.pt), if any."""
    m = re.fullmatch(r"yolo(v?)12([nsmlx])\.pt", file_name)
    if not m:
        return None
    return PUBLIC_WEIGHTS["turbo" if m.group(1) else "yolo12"].format(s=m.group(2))


# ---------------------------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------------------------
def _refused(path: Path, names) -> ValueError:
    return ValueError(
        f"path: {path} refers to {sorted(names)}: functions or classes that have no business in a "
        "model checkpoint (loading it could run code). Refused as unsafe; nothing was executed. "
        "Files that "
        "hold only tensors load: a state_dict saved with torch.save, or .safetensors.")


def _unreadable(path: Path, why: str) -> ValueError:
    return ValueError(f"path: {path} is not a readable PyTorch checkpoint: {why}. Is it truncated "
                      "(an interrupted download or copy) or another kind of file?")


def _first_line(text, limit: int = 200) -> str:
    line = next((t.strip() for t in str(text).splitlines() if t.strip()), "")
    return line[:limit]


def _torch_cause(text: str) -> str:
    """The cause in a ``torch.load`` error, without torch's advice around it (which recommends
    ``weights_only=False`` or allow-listing: both would run the file's code)."""
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [t.strip() for t in text.splitlines() if t.strip()]
    lines = [t for t in lines if "weights_only" not in t and not t.startswith(
        ("Weights only load failed", "Check the documentation", "Please file an issue"))]
    return _first_line(lines[0] if lines else "")


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
               "BINSTRING", "SHORT_BINSTRING"}


def _pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` of each global the pickle stream(s) in ``data`` would import, read with
    ``pickletools`` (nothing is unpickled): ``GLOBAL``/``INST`` and, from protocol 4 on,
    ``STACK_GLOBAL`` with the two strings pushed (or fetched from the memo) before it. Reads pickle
    after pickle (the legacy torch.save format is several); only whole pickles count (up to their
    STOP), so the noise of a damaged file is not read as names. For messages only: torch's
    restricted unpickler is what refuses."""
    import io
    import pickletools
    names, stream = [], io.BytesIO(data)
    while stream.tell() < len(data):
        found, strings, memo = [], [], []
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name in _STRING_OPS:
                    strings.append(arg if isinstance(arg, str) else None)
                elif op.name == "MEMOIZE":
                    memo.append(strings[-1] if strings else None)
                elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                    strings.append(memo[int(arg)] if int(arg) < len(memo) else None)
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2 and None not in strings[-2:]:
                    found.append(".".join(strings[-2:]))
        except Exception:  # the end of the pickles (raw tensor bytes follow), or damage
            break
        names += [n for n in found if re.fullmatch(r"[A-Za-z_][\w.]*", n)]
    return names


def _scanned_refusal(path: Path) -> ValueError | None:
    """When torch's own scan or load fails (its unpickler reads protocol 2 only, so a protocol-4
    pickle fails as 'Unsupported operand'): our static scan of the same pickle, and the refusal
    if it names anything outside the model-class namespaces. None: nothing unsafe was seen, the
    file is damaged or of another kind."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = [z.read(n) for n in z.namelist() if n.endswith("data.pkl")]
        else:
            data = [path.read_bytes()]
    except (OSError, zipfile.BadZipFile, EOFError):
        return None
    try:  # what torch's restricted unpickler rebuilds itself (tensors, storages, OrderedDict)
        from torch._weights_only_unpickler import _get_allowed_globals
        torch_own = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # private: without it, torch.* and collections.*
        torch_own = set()
    refused = {n for d in data for n in _pickle_globals(d)
               if not (_is_allowed(n) or n in torch_own
                       or (not torch_own and n.startswith(("torch.", "collections."))))}
    return _refused(path, sorted(refused)) if refused else None


def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)`` with inert stand-ins for the model classes it names.

    Errors are ours, worded for what happened: a refusal names the globals refused; a corrupt or
    truncated file says so. torch's own text is not passed on: it advises ``weights_only=False``,
    which runs whatever code the file carries.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
    if zipfile.is_zipfile(path):
        # static scan of the pickle's GLOBAL opcodes: nothing is unpickled here
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as e:
            raise (_scanned_refusal(path) or _unreadable(
                path, f"its zip archive is damaged ({_first_line(e)})")) from None
    elif head.startswith(b"PK"):
        raise _unreadable(path, "a zip archive (the format torch.save writes) whose end is missing")
    elif head[:1] == b"\x80":  # a pickle: the legacy (pre-1.6) torch.save format
        names = []  # no static scan there; the restricted unpickler still refuses every global
    else:
        raise _unreadable(path, f"neither a zip archive nor a pickle (it starts with {head!r})")
    refused = [n for n in names if not _is_allowed(n)]
    if refused:
        raise _refused(path, refused)
    stand_ins = [(_inert_class(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins), warnings.catch_warnings():
            # torch warns that its restricted unpickler reads protocol 2 only, before failing (or
            # succeeding) on a protocol 4/5 pickle: our own message says what happened
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:  # the restricted unpickler refused a global the static scan could not see
            raise _refused(path, [m.group(1)]) from None
        raise (_scanned_refusal(path) or _unreadable(
            path, f"{type(e).__name__}: {_torch_cause(str(e))}")) from None


def _module_tensors(obj, prefix: str, out: dict, seen: set) -> None:
    """Collect parameters and persistent buffers of a pickled module (an ``_Inert`` stand-in or a
    real ``nn.Module``) the way ``nn.Module.state_dict`` names them."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    d = vars(obj) if hasattr(obj, "__dict__") else {}
    non_persistent = d.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, t in (d.get(group) or {}).items():
            if isinstance(t, torch.Tensor) and not (group == "_buffers" and name in non_persistent):
                out[prefix + name] = t.detach()
    for name, child in (d.get("_modules") or {}).items():
        if child is not None:
            _module_tensors(child, f"{prefix}{name}.", out, seen)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _is_module(obj) -> bool:
    return hasattr(obj, "__dict__") and "_modules" in vars(obj)


def _from_module(obj) -> tuple[dict, dict]:
    """(state dict, metadata) of a pickled model object: an ultralytics ``DetectionModel``
    (``names``, ``yaml["scale"]``) or our own ``YOLOv12`` (``names``, ``scale``, ``nc``,
    ``variant``), read from the attributes the pickle stored (nothing of theirs is called)."""
    sd: dict = {}
    _module_tensors(obj, "", sd, set())
    attrs, meta = vars(obj), {}
    names = attrs.get("names")
    if isinstance(names, (dict, list)):
        meta["names"] = dict(names) if isinstance(names, dict) else dict(enumerate(names))
    yaml = attrs.get("yaml")
    if isinstance(yaml, dict) and isinstance(yaml.get("scale"), str):
        meta["scale"] = yaml["scale"]
    for key, kind in (("scale", str), ("nc", int), ("variant", str)):
        if isinstance(attrs.get(key), kind) and not isinstance(attrs.get(key), bool):
            meta.setdefault(key, attrs[key])
    return sd, meta


def _outer_meta(obj: Mapping) -> dict:
    """Metadata stored beside the weights in a checkpoint dict (``{'model': sd, 'names': ...}``,
    how training scripts save): class names, as a dict or a list."""
    names = obj.get("names")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if isinstance(names, Mapping) and all(isinstance(v, str) for v in names.values()):
        try:
            return {"names": {int(k): v for k, v in names.items()}}
        except (TypeError, ValueError):  # keys that are not class indices: not class names
            pass
    return {}


def _extract(obj, path: Path) -> tuple[dict, dict]:
    """(state dict, metadata) from whatever a ``.pt`` held."""
    if _is_state_dict(obj):
        return dict(obj), {}
    if isinstance(obj, Mapping):
        # ultralytics prefers the EMA weights when a checkpoint still has them (mid-training files)
        for key in ("ema", "model", "state_dict", "model_state_dict"):
            inner = obj.get(key)
            if inner is None:
                continue
            if _is_state_dict(inner):
                return dict(inner), _outer_meta(obj)
            if _is_module(inner):
                sd, meta = _from_module(inner)
                return sd, {**_outer_meta(obj), **meta}  # the model's own names win
    if _is_module(obj):  # a bare pickled model: torch.save(model)
        return _from_module(obj)
    raise ValueError(f"path: {path} holds no model weights that we know how to read (expected a "
                     "state dict, or a dict with 'model'/'ema'/'state_dict'; got "
                     f"{type(obj).__name__}"
                     + (f" with keys {list(obj)[:10]}" if isinstance(obj, Mapping) else "") + ")")


def _read(path) -> tuple[dict, dict]:
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth",
                                                                        ".safetensors"))
        raise ValueError(f"path: {path} is a folder; give the checkpoint file"
                         + (f" (in it: {', '.join(inside[:5])})" if inside else ""))
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open
        except ImportError as e:
            raise ValueError(f"path: {path} is a .safetensors file; pip install safetensors") from e
        sd, meta = {}, {}
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for k in f.keys():
                    sd[k] = f.get_tensor(k)
                raw = f.metadata() or {}
        except Exception as e:  # SafetensorError (header, offsets) or an OSError
            raise ValueError(f"path: {path} is not a readable .safetensors file "
                             f"({type(e).__name__}: {_first_line(e)}); is it truncated or "
                             "another kind of file?") from None
        if "scale" in raw:
            meta["scale"] = raw["scale"]
        if "nc" in raw:
            meta["nc"] = int(raw["nc"])
        if "names" in raw:
            meta["names"] = {int(k): v for k, v in json.loads(raw["names"]).items()}
        if "variant" in raw:
            meta["variant"] = raw["variant"]
    else:
        sd, meta = _extract(_torch_load(path), path)
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, meta


def load_state_dict_file(path) -> dict:
    """The model state dict (``model.0.conv.weight`` ...) held by ``path`` (.pt/.pth/.safetensors),
    read without executing code from the file."""
    return _read(path)[0]


# ---------------------------------------------------------------------------------------------
# layout: scale, nc, and checks with clear messages
# ---------------------------------------------------------------------------------------------
def _scale_signature(scale: str) -> tuple[int, int]:
    """(width of layer 0, A2C2f stages in layer 6) for ``scale``, from the config table."""
    depth, width, max_ch = SCALES[scale]
    c0 = make_divisible(min(LAYERS[0][3][0], max_ch) * width, 8)
    return c0, max(round(LAYERS[6][1] * depth), 1)


def _count_children(sd: dict, prefix: str) -> int:
    idx = {k[len(prefix):].split(".", 1)[0] for k in sd if k.startswith(prefix)}
    return len({i for i in idx if i.isdigit()})


def infer_variant(sd: dict) -> str:
    """"yolo12" or "turbo" (see ``yolov12/turbo.py``), from the attention layout, the position
    perceiver's kernel and the groups of layer 1; a ``ValueError`` that says what was found for
    any other combination (the official v1.0 layout among them)."""
    separate = any(".attn.qk." in k for k in sd) or any(".attn.v." in k for k in sd)
    fused = any(".attn.qkv." in k for k in sd)
    pe = {tuple(v.shape[-2:]) for k, v in sd.items() if k.endswith(".attn.pe.conv.weight")}
    if not (separate or fused or pe):
        raise ValueError("state dict: no attention layers at all (no '.attn.' tensors), so neither "
                         "YOLO12 nor YOLOv12-turbo: a detector of another family (YOLOv8, "
                         "YOLOv5, ...?); only those two load here")
    k0, k1 = "model.0.conv.weight", "model.1.conv.weight"
    groups = (int(sd[k0].shape[0]) // max(int(sd[k1].shape[1]), 1)
              if k0 in sd and k1 in sd and sd[k1].dim() == 4 else None)
    convs = "attn.qk + attn.v" if separate else "attn.qkv" if fused else "absent"
    found = (f"attention convs {convs}, "
             f"position perceiver {' / '.join(f'{h}x{w}' for h, w in sorted(pe)) or 'absent'}, "
             f"layer 1 conv with {groups} group(s)")
    if pe == {(5, 5)} and groups == GROUPS[1]:
        return "turbo"
    if pe == {(7, 7)} and groups == 1 and not separate:
        return "yolo12"
    if pe == {(7, 7)} and groups == 1 and separate:
        raise ValueError(f"state dict: {found}: the official repository's v1.0 layout, which is "
                         "not supported (its own code computes area attention differently on CPU "
                         "and on GPU); use its default turbo weights or ultralytics' YOLO12")
    raise ValueError(f"state dict: {found}, which matches neither YOLO12 (attn.qkv, 7x7, 1 group) "
                     f"nor YOLOv12-turbo (attn.qk + attn.v or attn.qkv, 5x5, {GROUPS[1]} groups)")


def infer_layout(sd: dict) -> tuple[str, int]:
    """(scale, nc) of a YOLO12 / YOLOv12-turbo state dict; ``ValueError`` saying what was found if
    it is not one (``infer_variant`` tells which of the two)."""
    if not sd:
        raise ValueError("state dict: empty, no tensors found")
    k0 = "model.0.conv.weight"
    if k0 not in sd:
        raise ValueError(f"state dict: no {k0!r}; not a YOLO12 detection model (first keys: "
                         f"{list(sd)[:5]})")
    infer_variant(sd)
    found = (int(sd[k0].shape[0]), _count_children(sd, "model.6.m."))
    scale = next((s for s in SCALES if _scale_signature(s) == found), None)
    if scale is None:
        known = {s: _scale_signature(s) for s in SCALES}
        raise ValueError(f"state dict: layer 0 has {found[0]} channels and layer 6 has {found[1]} "
                         f"A2C2f stages, which matches no YOLO12 scale (expected (width, stages): "
                         f"{known})")
    kc = "model.21.cv3.0.2.weight"
    if kc not in sd:
        raise ValueError(f"state dict: no {kc!r} (Detect class conv); not a YOLO12 detection head")
    return scale, int(sd[kc].shape[0])


def is_fused_state_dict(sd: dict) -> bool:
    """True for the state dict of a model saved after ``fuse()``: Conv+BN folded, so the first
    conv has a bias and there is no BatchNorm tensor at all."""
    return "model.0.conv.bias" in sd and not any(".bn." in k for k in sd)


@dataclass
class Checkpoint:
    """What a weights file holds, read and checked: its state dict in our layout (turbo's qk/v pair
    already merged into qkv) and the model it belongs to."""
    state_dict: dict
    scale: str
    nc: int
    variant: str
    fused: bool            # saved after fuse(): conv biases, no BatchNorm tensors
    names: dict | None     # class names stored in the file, when there is one per class


def read_checkpoint(path) -> Checkpoint:
    """The weights in ``path``; scale, nc and variant come from the tensors (and must agree with
    the file's metadata). Build the model with them and call ``load_into`` (``YOLOv12.load`` does).

    Accepts public ultralytics YOLO12 ``.pt`` checkpoints, plain state dicts (``.pt``/``.pth``),
    ``torch.save(model)`` of our own ``YOLOv12`` (read as tensors, no code runs) and
    ``.safetensors`` (ours, from ``save_safetensors``). Never executes code from the file.
    """
    sd, meta = _read(path)
    scale, nc = infer_layout(sd)
    variant = infer_variant(sd)
    for key, value in (("scale", scale), ("nc", nc), ("variant", variant)):
        if key in meta and meta[key] != value:
            raise ValueError(f"path: {path} metadata says {key}={meta[key]!r} but its tensors are "
                             f"those of {key}={value!r}")
    if variant == "turbo":  # the official qk/v conv pair -> our fused qkv conv (exact reorder)
        sd = qkv_from_qk_v(sd)
    names = meta.get("names")
    names = {int(k): str(v) for k, v in names.items()} if names and len(names) == nc else None
    return Checkpoint(sd, scale, nc, variant, is_fused_state_dict(sd), names)


def _check_against(model, sd: dict) -> None:
    """Raise ``ValueError`` listing missing / unexpected / mis-shaped keys (before loading)."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(want[k].shape)}"
              for k in want if k in sd and sd[k].shape != want[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label} {len(items)}: {items[:5]}{more}")
        hint = ""
        if missing and all(".bn." in k for k in missing) and any(
                k.endswith(".conv.bias") for k in unexpected):
            hint = (" (BatchNorm tensors missing and conv biases instead: this file was saved "
                    "from a partly fused model; save the state dict before calling fuse())")
        raise ValueError(f"state dict: does not match YOLOv12-{model.scale} (nc={model.nc}): "
                         + "; ".join(parts) + hint)


def load_into(model, sd: dict) -> None:
    """Load ``sd`` into ``model`` strictly, after checking every key and shape (the error lists
    what differs); tensors are cast to the model's dtypes (public checkpoints are float16)."""
    _check_against(model, sd)
    want = model.state_dict()
    sd = {k: v.to(want[k].dtype) for k, v in sd.items()}
    for k in want:  # tolerate a missing BN step counter
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = want[k]
    model.load_state_dict(sd, strict=True)


def save_safetensors(model, path) -> None:
    """Save ``model``'s weights as safetensors, with scale, nc (and class names) in the metadata.

    The model must not be fused (a fused model has no BN tensors and would not load back)."""
    try:
        from safetensors.torch import save_file
    except ImportError as e:
        raise ValueError("path: saving .safetensors needs the safetensors package "
                         "(pip install safetensors)") from e
    if not isinstance(model, torch.nn.Module) or not all(
            hasattr(model, a) for a in ("scale", "nc", "variant")):
        raise ValueError(f"model: expected a YOLOv12, got {type(model).__name__}")
    if any(getattr(m, "bn", "absent") is None for m in model.modules()):
        raise ValueError("model: is fused (BN folded into convs); save it before calling fuse()")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path: expected a .safetensors file name, got {str(path)!r}")
    meta = {"format": "yolov12-kernels", "scale": model.scale, "nc": str(model.nc),
            "variant": model.variant}
    names = getattr(model, "names", None)
    if names:
        meta["names"] = json.dumps({str(k): v for k, v in names.items()})
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    os.makedirs(path.parent or ".", exist_ok=True)
    save_file(sd, str(path), metadata=meta)
