"""The fused forward of the fast path: YOLOv12 run as the NHWC conv ops of ``yolov12_kernels``.

``FusedForward(net)`` takes a prepared network (eval mode, every Conv+BN folded, cast, attention
resolved to ``FastAAttn``) and runs it block by block as ``docs/fusion.md`` describes:

* every dense 1x1/3x3 conv is one ``fused_conv2d`` (bias + SiLU + residual [+ gamma] in its
  epilogue), every depthwise conv one ``fused_depthwise_conv2d``, a grouped conv one
  ``fused_conv2d`` per group (turbo's layers 1 and 3), each ABlock MLP one ``fused_mlp``;
* every concat is a channels-last buffer allocated once per forward, and each of its parts is
  written by its producer straight into its channel slice (``out=``): no ``torch.cat``;
* C2f/C3k2, C3k and A2C2f write their blocks' outputs into their own concat buffer the same way;
* upsampling is one strided copy into its slice of the concat that follows;
* the Detect head writes every level's box and class maps into one (B, anchors, 4 * 16 + nc)
  buffer, decoded by one ``box_decode`` (float32, anchors computed in the kernel).

Weights are prepared once here: channels-last (``.contiguous(memory_format=channels_last)``, a
no-op for a network already converted), the MLP's second weight packed (``pack_w2``), the pe
weights taken once. Buffers come from ``empty`` (tests set ``poison`` to fill them with NaN: a
slice nobody writes then shows up in the output). Convs the kernels do not take (other kernel
sizes, dilation, an activation other than SiLU) run their PyTorch module and copy into the slice.

Every operation of the forward goes through one of two methods, ``op`` (a fused kernel op, or the
attention core) and ``torch_op`` (a PyTorch computation: modules the kernels do not take, copies,
adds), so that a recording of one forward (``yolov12.plan``: the launch plan the fast model
replays) holds all of them: the Triton launches as fixed launches, the rest as steps that call the
operation again on the same tensors. Nothing else computes here (views and allocations only).

Nothing in ``forward`` changes Python-side state and every op is a ``torch.library`` op with a
fake kernel, so ``torch.compile(fullgraph=True)`` traces it and a CUDA graph captures it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from yolov12_kernels.aattn import pe_weight_bias
from yolov12_kernels.box_decode import box_decode
from yolov12_kernels.conv import fused_conv2d
from yolov12_kernels.dwconv import fused_depthwise_conv2d
from yolov12_kernels.mlp import MAX_CHANNELS as MLP_MAX_CHANNELS
from yolov12_kernels.mlp import fused_mlp
from yolov12_kernels.triton import launch  # this module runs the Triton kernels: it needs Triton

from .modules import C2f, C3, A2C2f, Bottleneck, Concat, Conv, Detect

_CL = torch.channels_last
_DW_KERNELS = (3, 5, 7)


class ConvParams(NamedTuple):
    """How one (BN-folded) conv runs: ``kind`` "dense" (fused_conv2d), "depthwise", "grouped"
    (one fused_conv2d per group: ``weight``/``bias`` are then tuples, one per group) or "torch"
    (the module itself)."""
    kind: str
    weight: object
    bias: object
    stride: int
    silu: bool
    cout: int


def _conv_of(m: nn.Module) -> tuple[nn.Conv2d, bool | None]:
    """(the nn.Conv2d, whether SiLU follows: True/False, None for another activation)."""
    if isinstance(m, nn.Conv2d):
        return m, False
    act = m.act
    silu = True if isinstance(act, nn.SiLU) else False if isinstance(act, nn.Identity) else None
    return m.conv, silu


def conv_params(m: nn.Module) -> ConvParams:
    """The ``ConvParams`` of a folded ``Conv`` (or a bare ``nn.Conv2d``, as in Detect)."""
    conv, silu = _conv_of(m)
    k = conv.kernel_size[0]
    s = conv.stride[0]
    g, cin, cout = conv.groups, conv.in_channels, conv.out_channels
    plain = (conv.kernel_size[0] == conv.kernel_size[1] and conv.stride[0] == conv.stride[1]
             and conv.padding == (k // 2, k // 2) and conv.dilation == (1, 1)
             and conv.padding_mode == "zeros" and s in (1, 2) and silu is not None
             and getattr(m, "bn", None) is None)
    w = conv.weight.detach().contiguous(memory_format=_CL)
    b = None if conv.bias is None else conv.bias.detach()
    if plain and g == 1 and k in (1, 3):
        return ConvParams("dense", w, b, s, silu, cout)
    if plain and g == cin == cout and k in _DW_KERNELS:
        return ConvParams("depthwise", w, b, s, silu, cout)
    if plain and g > 1 and k in (1, 3):
        co = cout // g
        ws = tuple(w[i * co:(i + 1) * co].contiguous(memory_format=_CL) for i in range(g))
        bs = tuple(None if b is None else b[i * co:(i + 1) * co].contiguous() for i in range(g))
        return ConvParams("grouped", ws, bs, s, silu, cout)
    return ConvParams("torch", None, None, s, bool(silu), cout)


class FusedForward:
    """The fused forward of a prepared network (see the module docstring). A plain object, not a
    module: it holds the network's own tensors (and a few prepared ones), so the state dict of the
    fast model is unchanged."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.poison = False  # tests: fill every buffer allocated here with NaN
        # the prepared tensors sit on the modules as plain attributes (not parameters or
        # buffers: the state dict stays the model's); torch.compile reads them like weights
        for m, name, value in self._prepared():
            setattr(m, name, value)
        self._plan_concats()

    def _prepared(self):
        """(module, attribute, prepared value) of every tensor the fused forward reads instead
        of a module's own: channels-last and per-group copies of conv weights, the packed MLP
        weight, the folded pe weight. Some are views of the parameters, some are copies."""
        from yolov12_kernels.triton.mlp import pack_w2  # needs Triton: imported when used
        params = {}
        for m in self.net.modules():
            if isinstance(m, Conv):
                params[m.conv] = None  # the inner conv runs through its wrapper
        for m in self.net.modules():
            if isinstance(m, Conv) or (isinstance(m, nn.Conv2d) and m not in params):
                params[m] = conv_params(m)
        for m, value in params.items():
            yield m, "fused", value
        for m in self.net.modules():
            if hasattr(m, "core_for"):  # FastAAttn
                yield m, "fused_pe", tuple(None if t is None else t.detach()
                                           for t in pe_weight_bias(m.pe))
            if (isinstance(m, nn.Sequential) and len(m) == 2
                    and all(isinstance(c, Conv) for c in m) and _is_mlp(m)):
                p1, p2 = params[m[0]], params[m[1]]
                fused = None
                if (p1.kind == p2.kind == "dense" and p1.silu and not p2.silu
                        and m[0].conv.in_channels <= MLP_MAX_CHANNELS):
                    fused = (p1.weight, p1.bias, pack_w2(p2.weight), p2.bias)
                yield m, "fused_mlp", fused

    def refresh(self) -> None:
        """Bring the prepared tensors up to date with the network's parameters, in place (the
        fast model calls it after ``load_state_dict``): the copies among them would otherwise keep
        the old weights. In place, so a captured CUDA graph replays with the new weights too.
        In inference mode: a prepared tensor may be an inference tensor (a net built in
        inference mode), which takes in-place writes only there."""
        with torch.inference_mode():
            for m, name, value in self._prepared():
                _copy_into(getattr(m, name), value)

    # ------------------------------------------------------------------------------------------
    def _plan_concats(self) -> None:
        """For every layer whose output is a part of a Concat: (concat index, channel offset,
        width); and each concat's total width."""
        net = self.net
        chans, self.cat_parts, self.cat_width, self.cat_sources = [], {}, {}, {}
        for i, (layer, f) in enumerate(zip(net.model, net._froms)):
            src = [i - 1 if j == -1 else j for j in (f if isinstance(f, list) else [f])]
            src = [s for s in src if s >= 0]
            chans.append(_out_channels(layer, [chans[s] for s in src]))
            # a part whose width or output size is unknown before it runs: torch.cat instead
            if (isinstance(layer, Concat) and layer.d == 1
                    and all(chans[s] is not None and _sized(net.model[s]) for s in src)):
                off = 0
                for s in src:
                    if s not in self.cat_parts:  # one feeding two concats: the second copies
                        self.cat_parts[s] = (i, off, chans[s])
                    off += chans[s]
                self.cat_width[i] = sum(chans[s] for s in src)
                self.cat_sources[i] = src

    def empty(self, shape, like: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
        t = torch.empty(shape, dtype=like.dtype, device=like.device,
                        memory_format=_CL if channels_last else torch.contiguous_format)
        if self.poison:
            t.fill_(float("nan"))
        rec = self._recording()
        return t if rec is None else rec.own(t)

    # ------------------------------------------------------------------------------------------
    # the two doors every operation of the forward goes through (see the module docstring)
    def _recording(self):
        """The active recording of this thread (``yolov12.plan`` builds one), else None; None
        while torch.compile traces (it traces the ops, not a recording)."""
        return None if torch.compiler.is_compiling() else launch.recorded()

    def op(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``: a fused kernel op (or the attention core). Recorded, its
        Triton launches are the op (recorded where they launch); one that launched none (an
        attention core of another backend) is recorded as a call, like ``torch_op``."""
        rec = self._recording()
        if rec is None:
            return fn(*args, **kwargs)
        n = len(rec.steps)
        y = fn(*args, **kwargs)
        if len(rec.steps) == n:
            rec.steps.append(launch.CallStep(fn, args, kwargs, y))
        return rec.own(y)

    def torch_op(self, fn, *args):
        """``fn(*args)``: a PyTorch computation. Recorded as one call of it (a Triton launch
        inside, e.g. attention in a module the fused forward does not take apart, is replayed
        by that call, so it is not recorded on its own)."""
        rec = self._recording()
        if rec is None:
            return fn(*args)
        n = len(rec.steps)
        y = fn(*args)
        del rec.steps[n:]
        rec.steps.append(launch.CallStep(fn, args, {}, y))
        return rec.own(y)

    # ------------------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, layer_outputs: list | None = None) -> torch.Tensor:
        """The forward of ``x`` (checked, in the model's dtype and memory format). With
        ``layer_outputs`` (a list), each layer's output is appended to it as produced (the view of
        its concat slice for a layer that writes into a concat)."""
        net = self.net
        outputs: list = []
        cats: dict[int, torch.Tensor] = {}
        for i, (layer, f) in enumerate(zip(net.model, net._froms)):
            if f != -1:
                x = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
            out = None
            part = self.cat_parts.get(i)
            if part is not None:
                c, off, width = part
                if c not in cats:
                    ho, wo = _out_hw(layer, x)
                    cats[c] = self.empty((x.shape[0], self.cat_width[c], ho, wo), x)
                out = cats[c][:, off:off + width]
            if isinstance(layer, Concat) and i in cats:
                x = self._concat(layer, i, x, cats[i])
            else:
                x = self.layer(layer, x, out)
            outputs.append(x if i in net._save else None)  # the rest is freed as it goes
            if layer_outputs is not None:
                layer_outputs.append(x)
        return x

    def _concat(self, layer, i, xs, buf):
        # parts planned into this buffer were written by their producers; any other (a layer
        # already placed in an earlier concat) is copied in
        off = 0
        for s, t in zip(self.cat_sources[i], xs):
            if self.cat_parts.get(s, (None,))[0] != i:
                self.torch_op(torch.Tensor.copy_, buf[:, off:off + t.shape[1]], t)
            off += t.shape[1]
        return buf

    def layer(self, m, x, out):
        if isinstance(m, Conv):
            return self.conv(m, x, out)
        if isinstance(m, A2C2f):
            return self.a2c2f(m, x, out)
        if isinstance(m, C2f):
            return self.c2f(m, x, out)
        if isinstance(m, nn.Upsample):
            return self.upsample(m, x, out)
        if isinstance(m, Detect):
            return self.detect(m, x)
        return self.torch_op(_module_into, m, x, out)

    # ------------------------------------------------------------------------------------------
    def conv(self, m, x, out=None, residual=None, gamma=None):
        """``m`` (a folded Conv or an nn.Conv2d) on x, [+ residual (scaled by gamma)], into out."""
        p = m.fused
        if p.kind == "dense":
            return self.op(fused_conv2d, x, p.weight, p.bias, p.stride, silu=p.silu,
                           residual=residual, gamma=gamma, out=out)
        if residual is not None:  # no fused residual for these: the module, then the add
            return self.torch_op(_residual_add, self.conv(m, x), residual, gamma, out)
        if p.kind == "depthwise":
            return self.op(fused_depthwise_conv2d, x, p.weight, p.bias, p.stride, silu=p.silu,
                           out=out)
        if p.kind == "grouped":
            groups = len(p.weight)
            if out is None:
                k = p.weight[0].shape[-1]
                out = self.empty((x.shape[0], p.cout, *_conv_hw(x, k, p.stride)), x)
            ci, co = x.shape[1] // groups, p.cout // groups
            for g in range(groups):
                self.op(fused_conv2d, x[:, g * ci:(g + 1) * ci], p.weight[g], p.bias[g],
                        p.stride, silu=p.silu, out=out[:, g * co:(g + 1) * co])
            return out
        return self.torch_op(_module_into, m, x, out)

    def seq(self, m, x, out=None):
        """A chain of convs (nn.Sequential), the last into ``out``."""
        mods = list(m) if isinstance(m, nn.Sequential) else [m]
        for j, c in enumerate(mods):
            x = self.seq(c, x, out if j == len(mods) - 1 else None) \
                if isinstance(c, nn.Sequential) else \
                self.conv(c, x, out if j == len(mods) - 1 else None)
        return x

    def bottleneck(self, m, x, out=None):
        t = self.conv(m.cv1, x)
        return self.conv(m.cv2, t, out, residual=x if m.add else None)

    def c3(self, m, x, out=None):
        """C3/C3k: Z = [blocks(cv1(x)) | cv2(x)], cv3(Z) into out."""
        c_ = m.cv1.fused.cout
        z = self.empty((x.shape[0], 2 * c_, x.shape[2], x.shape[3]), x)
        t = self.conv(m.cv1, x)
        blocks = list(m.m)
        for j, b in enumerate(blocks):
            dst = z[:, :c_] if j == len(blocks) - 1 else None
            t = (self.bottleneck(b, t, dst) if isinstance(b, Bottleneck)
                 else self.torch_op(_module_into, b, t, dst))
        self.conv(m.cv2, x, z[:, c_:])
        return self.conv(m.cv3, z, out)

    def c2f(self, m, x, out=None):
        """C2f/C3k2: Y = [cv1(x) (both halves) | block 1 | ... | block n], cv2(Y) into out."""
        c, n = m.c, len(m.m)
        y = self.empty((x.shape[0], (2 + n) * c, x.shape[2], x.shape[3]), x)
        self.conv(m.cv1, x, y[:, :2 * c])
        for j, b in enumerate(m.m):
            src, dst = y[:, (1 + j) * c:(2 + j) * c], y[:, (2 + j) * c:(3 + j) * c]
            if isinstance(b, Bottleneck):
                self.bottleneck(b, src, dst)
            elif isinstance(b, C3):
                self.c3(b, src, dst)
            else:
                self.torch_op(_module_into, b, src, dst)
        return self.conv(m.cv2, y, out)

    def a2c2f(self, m, x, out=None):
        """A2C2f: Y = [cv1(x) | stage 1 | ... | stage n], cv2(Y) [x + gamma * that] into out."""
        c_ = m.cv1.fused.cout
        n = len(m.m)
        y = self.empty((x.shape[0], (1 + n) * c_, x.shape[2], x.shape[3]), x)
        self.conv(m.cv1, x, y[:, :c_])
        for j, stage in enumerate(m.m):
            src, dst = y[:, j * c_:(j + 1) * c_], y[:, (j + 1) * c_:(j + 2) * c_]
            if isinstance(stage, C3):
                self.c3(stage, src, dst)
                continue
            blocks = list(stage)
            t = src
            for k, block in enumerate(blocks):
                t = self.ablock(block, t, dst if k == len(blocks) - 1 else None, owned=k > 0)
        if m.gamma is not None:
            return self.conv(m.cv2, y, out, residual=x, gamma=m.gamma)
        return self.conv(m.cv2, y, out)

    def ablock(self, m, x, out=None, owned=False):
        """x + attn(x), then + mlp(that): qkv conv, the attention core (attention + pe), proj conv
        + residual, the fused MLP + residual. ``owned``: x is a temporary of this forward (the
        proj residual may then be added in place)."""
        a = m.attn
        H, W = x.shape[2], x.shape[3]
        if (H * W) % a.area:
            raise ValueError(f"x: area={a.area} does not divide H*W={H * W} tokens (feature map "
                             f"{H}x{W}); use an input size whose feature maps split into equal "
                             "stripes")
        qkv = self.conv(a.qkv, x)
        pe_w, pe_b = a.fused_pe
        att = self.op(a.core_for(x.numel()), qkv, a.num_heads, a.area, pe_w, pe_b,
                      float(a.head_dim ** -0.5))
        x1 = self.conv(a.proj, att, x if owned else None, residual=x)
        dst = x1 if out is None else out
        p = getattr(m.mlp, "fused_mlp", None)
        if p is not None:
            return self.op(fused_mlp, x1, *p, residual=True, out=dst)
        h = self.conv(m.mlp[0], x1)
        return self.conv(m.mlp[1], h, dst, residual=x1)

    def upsample(self, m, x, out=None):
        """Nearest 2x upsampling as one strided copy into ``out`` (a slice of the next concat)."""
        if not _doubles(m):
            return self.torch_op(_module_into, m, x, out)
        B, C, H, W = x.shape
        if out is None:
            out = self.empty((B, C, 2 * H, 2 * W), x)
        self.torch_op(torch.Tensor.copy_, out.unflatten(2, (H, 2)).unflatten(4, (W, 2)),
                      x[:, :, :, None, :, None])
        return out

    def detect(self, m, xs):
        """Every level's box and class maps into one (B, anchors, 4 * reg_max + nc) buffer, then
        one box_decode: (B, 4 + nc, anchors) float32."""
        shapes = [(int(t.shape[2]), int(t.shape[3])) for t in xs]
        anchors = sum(h * w for h, w in shapes)
        nbox = 4 * m.reg_max
        d = self.empty((xs[0].shape[0], anchors, m.no), xs[0], channels_last=False)
        a0 = 0
        for i, (t, (h, w)) in enumerate(zip(xs, shapes)):
            level = d[:, a0:a0 + h * w].unflatten(1, (h, w)).permute(0, 3, 1, 2)
            self.seq(m.cv2[i], t, level[:, :nbox])
            self.seq(m.cv3[i], t, level[:, nbox:])
            a0 += h * w
        return self.op(box_decode, d.permute(0, 2, 1), shapes, list(m.stride), m.reg_max)


def _is_mlp(seq: nn.Sequential) -> bool:
    a, b = seq[0].conv, seq[1].conv
    return (a.kernel_size == (1, 1) and b.kernel_size == (1, 1) and a.groups == b.groups == 1
            and b.out_channels == a.in_channels and b.in_channels == a.out_channels)


def _copy_into(old, new) -> None:
    """Copy the tensors of ``new`` into those of ``old`` (the same structure: a tensor, None, or a
    tuple of them), skipping a tensor that already is its source (a view of the parameter)."""
    if isinstance(old, torch.Tensor):
        if old.data_ptr() != new.data_ptr() or old.stride() != new.stride():
            old.copy_(new)
    elif isinstance(old, tuple):
        for o, n in zip(old, new):
            _copy_into(o, n)


def _into(y: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return y
    out.copy_(y)
    return out


def _module_into(m: nn.Module, x, out: torch.Tensor | None) -> torch.Tensor:
    """The module ``m`` on ``x``, into ``out`` when given (a layer the kernels do not take)."""
    return _into(m(x), out)


def _residual_add(y, residual, gamma, out):
    """``residual + y`` (``+ gamma * y`` with a layer scale) into ``out`` when given."""
    return _into(residual + (y if gamma is None else gamma.view(1, -1, 1, 1) * y), out)


def _doubles(m: nn.Upsample) -> bool:
    """Whether ``m`` is the nearest 2x upsampling the strided copy implements."""
    factor = m.scale_factor
    factors = tuple(factor) if isinstance(factor, (tuple, list)) else (factor, factor)
    return m.mode == "nearest" and m.size is None and all(f == 2 for f in factors)


def _same_padded(conv: nn.Conv2d) -> bool:
    """A square conv with 'same' padding k // 2, no dilation, one stride: ``_conv_hw`` holds."""
    k, s = conv.kernel_size, conv.stride
    return (k[0] == k[1] and s[0] == s[1] and conv.padding == (k[0] // 2, k[0] // 2)
            and conv.dilation == (1, 1))


def _conv_hw(x: torch.Tensor, k: int, stride: int) -> tuple[int, int]:
    p = k // 2
    return ((x.shape[2] + 2 * p - k) // stride + 1, (x.shape[3] + 2 * p - k) // stride + 1)


def _out_hw(layer: nn.Module, x) -> tuple[int, int]:
    """The output (H, W) of a layer that writes into a concat slice, before it runs."""
    if isinstance(layer, Conv):
        return _conv_hw(x, layer.conv.kernel_size[0], layer.conv.stride[0])
    if isinstance(layer, nn.Upsample):
        return x.shape[2] * 2, x.shape[3] * 2
    if isinstance(layer, (C2f, A2C2f)):
        return x.shape[2], x.shape[3]
    raise ValueError(f"layer: cannot tell the output size of a {type(layer).__name__} feeding a "
                     "concat")


def _sized(layer: nn.Module) -> bool:
    """Whether ``_out_hw`` knows the layer's output size before it runs."""
    if isinstance(layer, Conv):
        return _same_padded(layer.conv)
    if isinstance(layer, nn.Upsample):
        return _doubles(layer)
    return isinstance(layer, (C2f, A2C2f))


def _out_channels(layer: nn.Module, in_chans: list) -> int | None:
    if isinstance(layer, Conv):
        return layer.conv.out_channels
    if isinstance(layer, (C2f, A2C2f)):
        return layer.cv2.conv.out_channels
    if isinstance(layer, nn.Upsample):
        return in_chans[0]
    if isinstance(layer, Concat) and None not in in_chans:
        return sum(in_chans)
    return None
