"""Postprocess a whole batch where the model's output lies: box decode, confidence filter,
class-aware NMS and ``max_det`` with fixed-shape tensor ops, and one copy of the final boxes to
the host.

``predict.postprocess`` (the reference) walks the images one by one and runs greedy NMS with one
pass per kept box: on a GPU every pass and every boolean mask is a host synchronisation. Here:

1. every anchor's best class (or every anchor-class pair, ``multi_label``) is a candidate when its
   score is above ``conf``; one stable descending sort per image puts the candidates first, in the
   order the reference visits them (score, then anchor, then class);
2. the first ``n`` candidates of each image form an (n, n) matrix of "i suppresses j": i before j,
   same class, IoU above ``iou`` — computed exactly as the reference does (its class offset,
   ``box_iou``, its ``<=`` test);
3. greedy NMS is the fixed point of ``keep[j] = valid[j] and no kept i suppresses j``: iterating
   that map from ``keep = valid`` settles one more candidate per step at least (the first unsettled
   one depends only on settled ones), and in practice in a few steps (the longest chain of
   suppressions);
4. the kept boxes, first ``max_det`` of them, are packed at the front; the boxes, scores,
   labels, the kept and candidate counts and the convergence flag are packed into one float32
   tensor, and one copy brings it to the host: the batch's one host synchronisation (on the CPU
   the loop simply runs to convergence, and nothing travels).

``n``: on the CPU the largest candidate count (knowing it costs nothing); on a GPU a fixed
``cap`` so that no count has to be read first — an image with more candidates than ``cap`` (a
near-zero ``conf``) is redone by the reference, as is any batch whose matrix would exceed
``MAX_PAIRS`` elements. The results equal ``postprocess``'s (same boxes, scores, labels, order),
which the tests check, ties included.
"""
from __future__ import annotations

import torch

from .predict import box_iou, postprocess

GPU_CAP = 1024             # candidates per image considered on a GPU before falling back
MAX_PAIRS = 64 * 1024 * 1024  # elements of the (B, n, n) suppression matrix, at most
STEPS_PER_SYNC = 8         # fixed-point steps between two looks at convergence on a GPU


def _candidates(preds: torch.Tensor, multi_label: bool):
    """(boxes (B, A, 4) xyxy, scores (B, K), labels (B, K), anchor (B, K) or None): K = A, or
    A * nc with ``multi_label`` (row-major anchor, class: the reference's nonzero order)."""
    p = preds.float().transpose(1, 2)  # (B, A, 4+nc)
    xy, wh, cls = p[..., :2], p[..., 2:4], p[..., 4:]
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    if multi_label:
        b, a, nc = cls.shape
        scores = cls.reshape(b, a * nc)
        k = torch.arange(a * nc, device=preds.device)
        return boxes, scores, (k % nc).expand(b, -1), (k // nc).expand(b, -1)
    scores, labels = cls.max(-1)
    return boxes, scores, labels, None


def postprocess_batch(preds: torch.Tensor, conf: float = 0.25, iou: float = 0.7,
                      max_det: int = 300, multi_label: bool = False, max_nms: int = 30000,
                      cap: int | None = None, fixed: bool | None = None,
                      before_transfer=None) -> list[tuple[torch.Tensor, ...]]:
    """What ``predict.postprocess`` returns — per image (boxes xyxy, scores, labels) in input
    pixels — as CPU tensors, computed on ``preds``' device with one host synchronisation in the
    usual case (see the module docstring). ``cap``: candidates per image considered before an
    image falls back to the reference (default ``GPU_CAP``, with fixed shapes). ``fixed``: the
    GPU's way — fixed shapes, convergence looked at every ``STEPS_PER_SYNC`` steps (default: on
    any device but the CPU; ``True`` runs it on the CPU, as the tests do). ``before_transfer``:
    called when the results are complete on the device, right before they are copied to the
    host (the predictor records a CUDA event there: the postprocess is timed without a
    synchronisation of its own); on the CPU, when they are complete."""
    if preds.dim() != 3 or preds.shape[1] < 5:
        raise ValueError(f"preds: expected (B, 4+nc, anchors), got {tuple(preds.shape)}")
    adaptive = preds.device.type == "cpu" if fixed is None else not fixed
    boxes, scores, labels, anchor = _candidates(preds, multi_label)
    bsz, k_all = scores.shape
    is_cand = scores > conf
    counts = is_cand.sum(1)
    if adaptive:  # sized to the largest count: reading it costs nothing on the CPU
        n = min(int(counts.max()) if bsz else 0, max_nms)
    else:
        n = min(k_all, max_nms, GPU_CAP if cap is None else cap)
    mark = before_transfer or (lambda: None)
    if n == 0:
        mark()
        empty = (torch.empty(0, 4), torch.empty(0), torch.empty(0, dtype=torch.long))
        return [empty for _ in range(bsz)]
    if bsz * n * n > MAX_PAIRS:  # too many candidates for one matrix: the reference's way
        mark()
        return [tuple(t.cpu() for t in r)
                for r in postprocess(preds, conf, iou, max_det, multi_label, max_nms)]
    # candidates first, by descending score, ties in anchor (then class) order
    order = torch.sort(torch.where(is_cand, scores, -1.0), dim=1, descending=True,
                       stable=True).indices[:, :n]
    valid = torch.arange(n, device=preds.device)[None, :] < counts[:, None].clamp(max=n)
    s = scores.gather(1, order)
    lab = labels.gather(1, order)
    which = order if anchor is None else anchor.gather(1, order)
    b = boxes.gather(1, which[..., None].expand(-1, -1, 4))
    # the reference's class offset: each class shifted past the image's candidate boxes' span
    big = torch.finfo(b.dtype).max
    hi = torch.where(valid[..., None], b, -big).amax((1, 2))
    lo = torch.where(valid[..., None], b, big).amin((1, 2))
    span = hi - lo + 1
    shifted = b + (lab.to(b.dtype) * span[:, None])[..., None]
    ious = torch.stack([box_iou(x, x) for x in shifted])  # (B, n, n), row i: suppressor
    later = torch.ones(n, n, dtype=torch.bool, device=preds.device).triu(1)
    # "<=" as the reference tests it: a NaN IoU suppresses, as it drops the box there
    suppresses = ~(ious <= iou) & later & valid[:, :, None] & valid[:, None, :]

    def step(keep):  # one application of the fixed-point map
        return valid & ~(suppresses & keep[:, :, None]).any(1)

    m = min(max_det, n)

    def packed(keep):  # the first max_det kept, at the front: (B, m, 6) and their counts
        final = keep & (keep.cumsum(1) <= max_det)
        first = torch.sort((~final).to(torch.uint8), dim=1, stable=True).indices[:, :m]
        rows = torch.cat((b.gather(1, first[..., None].expand(-1, -1, 4)),
                          s.gather(1, first)[..., None],
                          lab.gather(1, first)[..., None].to(b.dtype)), -1)
        return rows, final.sum(1)

    keep = valid
    if adaptive:  # no synchronisation to save: step until nothing changes
        while not torch.equal(nxt := step(keep), keep):
            keep = nxt
        rows, kept = packed(keep)
        mark()
    else:  # a few steps, then the result and "settled?" in one transfer (again if not settled)
        while True:
            for _ in range(STEPS_PER_SYNC):
                keep = step(keep)
            nxt = step(keep)
            rows, kept = packed(keep)
            # one tensor, one copy: each .cpu() of its own would wait for the device again.
            # float32 holds the counts exactly (below 2**24 candidates per image).
            unsettled = (nxt != keep).any().to(rows.dtype).expand(bsz, 1)
            mark()
            host = torch.cat((rows.flatten(1), kept[:, None].to(rows.dtype),
                              counts[:, None].to(rows.dtype), unsettled), 1).cpu()
            if not host[:, -1].any():
                break
            keep = nxt
        rows = host[:, :-3].reshape(bsz, m, 6)
        kept, counts = host[:, -3].long(), host[:, -2].long()
    out = []
    for i in range(bsz):
        if int(counts[i]) > n:  # over the cap (or max_nms): this image the reference's way
            out.append(tuple(t.cpu() for t in postprocess(
                preds[i:i + 1], conf, iou, max_det, multi_label, max_nms)[0]))
            continue
        r = rows[i, :int(kept[i])]
        out.append((r[:, :4], r[:, 4], r[:, 5].long()))
    return out
