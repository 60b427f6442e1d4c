"""CPU models of the csrc/ kernels' index math (no GPU, no nvcc needed).

The CUDA kernels cannot run here. The attention kernel's tile sizes, addresses, masks and fragment
indices live in csrc/area_attention_tiles.h, which the kernel includes and this model compiles on
the host (g++, tests/_cuda_tiles.py) and calls: a change to them is what these tests run, on
random inputs against ``yolov12_kernels.reference``. The rest of the model is the engine around
those formulas, the kernel's control flow, register plumbing (which register feeds which MMA
operand) and online softmax, mirrored here; a change there is checked by the GPU tests of
test_cuda_backend.py, not by this file. The tensor-core instructions are emulated from the
fragment tables of the PTX ISA (written independently of the kernel: ``groupID = lane >> 2``,
``threadID_in_group = lane % 4``; m16n8k16 A: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..),
a3 (g+8, 2t+8..); B: b0 (2t..2t+1, g), b1 (2t+8.., g); C: c0,c1 (g, 2t..), c2,c3 (g+8, 2t..);
m16n8k8: A a0 (g, 2t..), a1 (g+8, 2t..); B b0 (2t.., g); ldmatrix .x4: lanes 8i..8i+7 address the
8 rows of matrix i, register i of a lane holds row g, columns 2t, 2t+1 of matrix i, or with .trans
rows 2t, 2t+1 of column g).

What this catches: a wrong fragment / shared-memory index, a missing tail mask, NaN from a masked
tile, a row stored past the area's end or a position never stored, a global read out of bounds,
a 16-byte access (copy, cp.async, ldmatrix row) on an unaligned address, a shared-memory read of a
slot the tile load did not write or whose asynchronous copy was not yet waited for and published
by a barrier, a buffer refilled before a barrier ended its reads, and bank conflicts of the
fragment loads. What it cannot catch: compiler and hardware behaviour — that needs the GPU tests
of test_cuda_backend.py (and compute-sanitizer's racecheck).

The depthwise kernel's tiling (``pe_tiling``, ``depthwise_kernel``) is still a numpy transcription
of csrc/depthwise_conv.cu: keep it in sync by hand (moving it into a header like the attention
kernel's is the same job, not done yet).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _cuda_tiles import compiler, header_functions
from _cuda_tiles import tiles as _tiles
from _utils import attention_only
from yolov12_kernels import reference

LANE = np.arange(32)
# the PTX ISA's fragment tables (the instructions' semantics, independent of the kernel)
G, TIG = LANE // 4, LANE % 4


# ------------------------------------------------------------------------------------------------
# area_attention.cu, through csrc/area_attention_tiles.h
def tiles():
    """The header compiled on the host (skips the test where no C++ compiler exists)."""
    if compiler() is None:
        pytest.skip("no C++ compiler (g++ or $CXX) to build csrc/area_attention_tiles.h")
    return _tiles()


class Mem:
    """A flat global buffer of 2-byte elements whose element 0 sits at byte address 2 * base."""

    def __init__(self, data: np.ndarray, base: int):
        self.data, self.base = data, base

    def read(self, idx, vec=1):
        idx = np.asarray(idx)
        assert np.all(idx >= 0) and np.all(idx + vec <= self.data.size), "global read out of bounds"
        if vec > 1:  # a 16-byte copy must be 16-byte aligned
            assert np.all(((self.base + idx) * 2) % 16 == 0), "misaligned 16-byte load"
            return self.data[idx[..., None] + np.arange(vec)]
        return self.data[idx]


def aligned16(mem: Mem, off: int) -> bool:
    return ((mem.base + off) * 2) % 16 == 0


def token_major(prm) -> bool:
    _, st, _, sd = prm["k_s"]
    return bool(tiles().token_major(st, sd))


def load_mode(tok_major, mem, off, sb, st, sh, sd, n) -> int:
    return tiles().load_mode(tok_major, aligned16(mem, off), sb, st, sh, sd, n)


class Shared:
    """One shared-memory buffer (a K or V stage) with the visibility rules of the kernel: a slot
    written by a copy is readable only once the copy's group was waited for (sm_80+: cp.async;
    sm_75: a plain store, waited for trivially) and a barrier followed; a buffer may be refilled
    only after a barrier that ended every read of it."""

    def __init__(self, size):
        self.val = np.full(size, np.nan)
        self.tag = np.full(size, -1)      # tile whose copy wrote the slot
        self.landed = set()               # tiles whose copies were waited for
        self.visible = set()              # tiles published by a barrier after landing
        self.read_since_barrier = False

    def write(self, idx, val, tile):
        assert not self.read_since_barrier, "buffer refilled while warps may still read it"
        idx = np.asarray(idx)
        self.val[idx], self.tag[idx] = val, tile

    def barrier(self):
        self.visible |= self.landed
        self.read_since_barrier = False

    def read(self, idx):
        idx = np.asarray(idx)
        assert np.all(np.isin(self.tag[idx], list(self.visible))), \
            "read a shared slot whose copy was not waited for and published by a barrier"
        out = self.val[idx]
        assert not np.any(np.isnan(out)), "read a shared slot the tile load did not write"
        self.read_since_barrier = True
        return out


def load_tile(D, tok_major, mem, src, st, sd, r0, n, mode, dst: Shared, tile):
    """area_attention.cu load_tile for all threads at once (src: element offset); every chunk or
    element once, whichever thread loads it."""
    T, tm = tiles(), tok_major
    written = np.zeros(dst.val.size, bool)

    def put(idx, val):
        idx = np.asarray(idx)
        assert not np.any(written[idx]), "shared slot written twice"
        written[idx] = True
        dst.write(idx, val, tile)

    if mode == T.mode_vector():
        i = np.arange(T.chunk_count(D, tm))
        line, c8 = T.chunk_line(i, D, tm), T.chunk_col(i, D, tm)
        key = T.chunk_key(r0, line, c8, tm)
        d = T.smem_index(line, c8, D, tm)
        assert np.all((d * 2) % 16 == 0), "misaligned 16-byte shared store"
        val = np.zeros((i.size, 8))
        ok = T.key_in_area(key, n).astype(bool)
        g_off = src + T.chunk_src(key, line, c8, st, sd, tm)
        val[ok] = mem.read(g_off[ok], vec=8)
        if tok_major:  # the 8 tokens of a chunk are all inside the area or all outside
            assert np.array_equal(T.key_in_area(key + 7, n).astype(bool), ok), \
                "a 16-byte chunk straddles the area's end"
        put(d[:, None] + np.arange(8), val)
    else:
        i = np.arange(T.elem_count(D))
        line, col = T.elem_line(i, D, tm), T.elem_col(i, D, tm)
        key, dim = T.elem_key(line, col, tm), T.elem_dim(line, col, tm)
        val = np.zeros(i.size)
        ok = T.key_in_area(r0 + key, n).astype(bool)
        val[ok] = mem.read(src + T.token_dim_offset(r0 + key[ok], dim[ok], st, sd))
        put(T.smem_index(line, col, D, tm), val)


def ldmatrix_x4(smem: Shared, addr, trans):
    """ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane l addresses row l % 8 of matrix
    l // 8 (element index ``addr[l]``); returns 4 registers as (32 lanes, 2 halves)."""
    addr = np.asarray(addr)
    assert addr.shape == (32,)
    assert np.all((addr * 2) % 16 == 0), "ldmatrix row not 16-byte aligned"
    rows = smem.read(addr[:, None] + np.arange(8))  # (32, 8): row of each addressing lane
    regs = []
    for i in range(4):
        m = rows[8 * i:8 * i + 8]  # matrix i, [row][col]
        # the 8 rows of one matrix are read in one phase: 8 different 16-byte bank groups
        groups = (addr[8 * i:8 * i + 8] * 2 // 16) % 8
        assert len(set(groups.tolist())) == 8, "ldmatrix bank conflict"
        if trans:
            regs.append(np.stack([m[2 * TIG, G], m[2 * TIG + 1, G]], axis=1))
        else:
            regs.append(np.stack([m[G, 2 * TIG], m[G, 2 * TIG + 1]], axis=1))
    return regs


def mma_m16n8k16(c, a, b0, b1):
    """PTX mma.m16n8k16.row.col f32 (A, B: (32, 2) pairs per register)."""
    A, B = np.full((16, 16), np.nan), np.full((16, 8), np.nan)
    A[G, 2 * TIG], A[G, 2 * TIG + 1] = a[0][:, 0], a[0][:, 1]
    A[G + 8, 2 * TIG], A[G + 8, 2 * TIG + 1] = a[1][:, 0], a[1][:, 1]
    A[G, 2 * TIG + 8], A[G, 2 * TIG + 9] = a[2][:, 0], a[2][:, 1]
    A[G + 8, 2 * TIG + 8], A[G + 8, 2 * TIG + 9] = a[3][:, 0], a[3][:, 1]
    B[2 * TIG, G], B[2 * TIG + 1, G] = b0[:, 0], b0[:, 1]
    B[2 * TIG + 8, G], B[2 * TIG + 9, G] = b1[:, 0], b1[:, 1]
    D = A @ B
    c[:, 0] += D[G, 2 * TIG]
    c[:, 1] += D[G, 2 * TIG + 1]
    c[:, 2] += D[G + 8, 2 * TIG]
    c[:, 3] += D[G + 8, 2 * TIG + 1]


def mma_m16n8k8(c, a0, a1, b0):
    A, B = np.full((16, 8), np.nan), np.full((8, 8), np.nan)
    A[G, 2 * TIG], A[G, 2 * TIG + 1] = a0[:, 0], a0[:, 1]
    A[G + 8, 2 * TIG], A[G + 8, 2 * TIG + 1] = a1[:, 0], a1[:, 1]
    B[2 * TIG, G], B[2 * TIG + 1, G] = b0[:, 0], b0[:, 1]
    D = A @ B
    c[:, 0] += D[G, 2 * TIG]
    c[:, 1] += D[G, 2 * TIG + 1]
    c[:, 2] += D[G + 8, 2 * TIG]
    c[:, 3] += D[G + 8, 2 * TIG + 1]


def mma_16x8x16(c, a, b0, b1, sm75):  # mma_utils.cuh
    if sm75:
        mma_m16n8k8(c, a[0], a[1], b0)
        mma_m16n8k8(c, a[2], a[3], b1)
    else:
        mma_m16n8k16(c, a, b0, b1)


def attention_kernel(prm, sm75=False):
    """area_attention_fwd_kernel<__half, D, kTokMajor> over the whole grid; writes prm['o']. Its
    formulas are the header's (``tiles()``); g and t are the kernel's lane split (the MMA
    emulation uses the PTX ISA's G and TIG: a kernel whose split disagrees computes wrong
    values here)."""
    T = tiles()
    D = prm["D"]
    stages = T.stages(750 if sm75 else 800)
    bn = T.block_n(D)
    kKS, kNB, kDB = D // 16, bn // 8, D // 8  # register tiles (the kernel's arrays)
    tm = token_major(prm)
    elems = T.tile_elems(D, tm)
    n = prm["N"] // prm["area"]
    memq, memk, memv, memo = prm["q"], prm["k"], prm["v"], prm["o"]
    mode_k = load_mode(tm, memk, prm["k_off"], *prm["k_s"], n)
    mode_v = load_mode(tm, memv, prm["v_off"], *prm["v_s"], n)
    o_sb, o_st, o_sh, o_sd = prm["o_s"]
    vec_store = T.vec_store(((memo.base + prm["o_off"]) * 2) % 4 == 0, o_sb, o_st, o_sh, o_sd)
    problems = prm["B"] * prm["area"] * prm["heads"]
    q_tiles = T.query_tiles(n, D)
    assert problems <= 2**31 - 1 and q_tiles <= 65535
    stored = np.zeros(memo.data.size, np.int64)
    scale_log2 = np.float32(prm["scale"] * 1.4426950408889634)
    g, t = T.lane_group(LANE), T.lane_in_group(LANE)
    shuffles = [T.row_shuffle_mask(k) for k in range(T.row_shuffles())]
    qs, ks_, vs = prm["q_s"], prm["k_s"], prm["v_s"]  # (sb, st, sh, sd)
    k_trans, v_trans = bool(T.k_frag_trans(tm)), bool(T.v_frag_trans(tm))
    k_addr = {(k32, nb): T.k_frag_offset(D, tm, k32, nb, LANE)
              for k32 in range(D // 32) for nb in range(kNB)}
    v_addr = {(kk, dp): T.v_frag_offset(D, tm, kk, dp, LANE)
              for kk in range(bn // 16) for dp in range(kDB // 2)}
    s_key = T.score_key(np.arange(kNB)[:, None, None], t, np.arange(4)[:, None])  # (kNB, 4, 32)
    q_ks, q_r = np.arange(kKS)[:, None, None], np.arange(4)[:, None]
    h16 = lambda x: x.astype(np.float16).astype(np.float64)  # noqa: E731
    for prob in range(problems):
        h = T.problem_head(prob, prm["heads"])
        a = T.problem_area(prob, prm["heads"], prm["area"])
        b = T.problem_batch(prob, prm["heads"], prm["area"])
        tok0 = T.area_first_token(a, n)
        Q = prm["q_off"] + T.base_offset(b, h, tok0, qs[0], qs[2], qs[1])
        K = prm["k_off"] + T.base_offset(b, h, tok0, ks_[0], ks_[2], ks_[1])
        V = prm["v_off"] + T.base_offset(b, h, tok0, vs[0], vs[2], vs[1])
        O = prm["o_off"] + T.base_offset(b, h, tok0, o_sb, o_sh, o_st)  # noqa: E741 (the kernel's)
        for by in range(q_tiles):
            Ks = [Shared(elems) for _ in range(stages)]
            Vs = [Shared(elems) for _ in range(stages)]

            def issue(tile, stage):
                load_tile(D, tm, memk, K, ks_[1], ks_[3], tile * bn, n, mode_k, Ks[stage], tile)
                load_tile(D, tm, memv, V, vs[1], vs[3], tile * bn, n, mode_v, Vs[stage], tile)

            def wait(tile):  # cp_async_wait: this tile's group has landed (every thread's)
                for buf in Ks + Vs:
                    buf.landed.add(tile)

            def barrier():
                for buf in Ks + Vs:
                    buf.barrier()

            issue(0, 0)
            # the warps one by one against the same tile contents (the barriers make that exact)
            warps = []
            for warp in range(T.warps(D)):
                m0 = T.warp_first_row(by, warp, D)
                # register r of k-step ks, all lanes at once: (kKS, 4, 32)
                qrow = np.broadcast_to(T.q_frag_row(m0, g, q_r), (kKS, 4, 32))
                col = T.q_frag_col(q_ks, t, q_r)
                ok = T.row_in_area(qrow, n).astype(bool)
                lo, hi = np.zeros(col.shape), np.zeros(col.shape)
                lo[ok] = memq.read(Q + T.token_dim_offset(qrow[ok], col[ok], qs[1], qs[3]))
                hi[ok] = memq.read(Q + T.token_dim_offset(qrow[ok], col[ok] + 1, qs[1], qs[3]))
                qf = [[np.stack([lo[ks, r], hi[ks, r]], axis=1) for r in range(4)]
                      for ks in range(kKS)]
                warps.append(dict(m0=m0, qf=qf, o=[np.zeros((32, 4)) for _ in range(kDB)],
                                  row_max=[np.full(32, -np.inf)] * 2, row_sum=[np.zeros(32)] * 2))
            num_tiles = T.key_tiles(n, D)
            for j in range(num_tiles):
                stage = j % stages
                n0 = j * bn
                if stages > 1 and j + 1 < num_tiles:
                    issue(j + 1, stage ^ 1)
                wait(j)  # cp_async_wait<1> (tile j + 1 may be in flight) or <0>
                barrier()
                Kt, Vt = Ks[stage], Vs[stage]
                valid = T.key_valid(s_key, T.keys_left(n, n0, D)).astype(bool)
                for w in warps:
                    s = []
                    for nb in range(kNB):
                        acc = np.zeros((32, 4))
                        for k32 in range(D // 32):
                            kb = ldmatrix_x4(Kt, k_addr[k32, nb], trans=k_trans)
                            mma_16x8x16(acc, w["qf"][2 * k32], kb[0], kb[1], sm75)
                            mma_16x8x16(acc, w["qf"][2 * k32 + 1], kb[2], kb[3], sm75)
                        s.append(acc.astype(np.float32))
                    for nb in range(kNB):
                        for i in range(4):
                            s[nb][:, i] = np.where(valid[nb, i], s[nb][:, i] * scale_log2,
                                                   -np.inf)
                    for r in range(2):
                        mx = np.full(32, -np.inf, np.float32)
                        for nb in range(kNB):
                            mx = np.fmax(mx, np.fmax(s[nb][:, 2 * r], s[nb][:, 2 * r + 1]))
                        for mask in shuffles:
                            mx = np.fmax(mx, mx[LANE ^ mask])
                        new_max = np.fmax(w["row_max"][r], mx)
                        alpha = np.exp2(w["row_max"][r] - new_max)
                        assert not np.any(np.isnan(alpha)), "NaN rescale factor"
                        w["row_max"][r] = new_max
                        w["row_sum"][r] = w["row_sum"][r] * alpha
                        for db in range(kDB):
                            w["o"][db][:, 2 * r] *= alpha
                            w["o"][db][:, 2 * r + 1] *= alpha
                        for nb in range(kNB):
                            s[nb][:, 2 * r] = np.exp2(s[nb][:, 2 * r] - new_max)
                            s[nb][:, 2 * r + 1] = np.exp2(s[nb][:, 2 * r + 1] - new_max)
                            w["row_sum"][r] = w["row_sum"][r] + s[nb][:, 2 * r] \
                                + s[nb][:, 2 * r + 1]
                    for kk in range(bn // 16):
                        pa = [h16(s[2 * kk][:, 0:2]), h16(s[2 * kk][:, 2:4]),
                              h16(s[2 * kk + 1][:, 0:2]), h16(s[2 * kk + 1][:, 2:4])]
                        for dp in range(kDB // 2):
                            vb = ldmatrix_x4(Vt, v_addr[kk, dp], trans=v_trans)
                            mma_16x8x16(w["o"][2 * dp], pa, vb[0], vb[1], sm75)
                            mma_16x8x16(w["o"][2 * dp + 1], pa, vb[2], vb[3], sm75)
                barrier()
                if stages == 1 and j + 1 < num_tiles:
                    issue(j + 1, 0)
            for w in warps:
                for r in range(2):
                    l_ = w["row_sum"][r]
                    for mask in shuffles:
                        l_ = l_ + l_[LANE ^ mask]
                    assert np.all(l_ >= 1 - 1e-6)
                    inv = 1.0 / l_
                    qrow = T.acc_row(w["m0"], g, r)
                    ok = T.row_in_area(qrow, n).astype(bool)
                    for db in range(kDB):
                        col = T.acc_col(db, t)
                        idx0 = O + T.token_dim_offset(qrow, col, o_st, o_sd)
                        idx1 = O + T.token_dim_offset(qrow, col + 1, o_st, o_sd)
                        if vec_store:  # one 4-byte store of both
                            assert np.all(((memo.base + idx0) * 2)[ok] % 4 == 0)
                            assert np.all((idx1 == idx0 + 1)[ok])
                        for idx, val in ((idx0, w["o"][db][:, 2 * r]),
                                         (idx1, w["o"][db][:, 2 * r + 1])):
                            idx = idx[ok]
                            assert np.all(idx >= 0) and np.all(idx < memo.data.size)
                            memo.data[idx] = (val[ok] * inv[ok]).astype(np.float16)
                            stored[idx] += 1
    return stored


def _buffer(t: torch.Tensor, base: int):
    """A torch view -> (Mem over its whole storage, element offset, strides)."""
    flat = t.untyped_storage()
    data = torch.empty(0, dtype=t.dtype).set_(flat).float().numpy().astype(np.float64)
    return Mem(data, base), t.storage_offset(), tuple(t.stride())


def _drop_in(B, N, heads, d, area, view, base=0):
    g = torch.Generator().manual_seed(B * 1000 + N * 10 + d)
    mk = lambda: torch.randn(B, N, heads, d, generator=g).half()  # noqa: E731
    if view == "contig":
        q, k, v = mk(), mk(), mk()
        o = torch.empty_like(q)
    elif view == "offset1":  # storage offset of one element: nothing 16-byte aligned
        q, k, v = (torch.randn(B * N * heads * d + 1, generator=g).half()[1:].view(B, N, heads, d)
                   for _ in range(3))
        o = torch.empty(B * N * heads * d + 1).half()[1:].view(B, N, heads, d)
    elif view == "bhnd":  # (B, heads, N, d) memory, transposed to (B, N, heads, d)
        q, k, v = (torch.randn(B, heads, N, d, generator=g).half().transpose(1, 2)
                   for _ in range(3))
        o = torch.empty(B, heads, N, d).half().transpose(1, 2)
    elif view == "dimstride2":  # no unit stride at all
        q, k, v = (torch.randn(B, N, heads, 2 * d, generator=g).half()[..., ::2] for _ in range(3))
        o = torch.empty(B, N, heads, 2 * d).half()[..., ::2]
    else:
        raise ValueError(view)
    prm = dict(B=B, N=N, heads=heads, D=d, area=area, scale=d ** -0.5)
    for name, t in (("q", q), ("k", k), ("v", v), ("o", o)):
        mem, off, st = _buffer(t, base)
        prm[name], prm[name + "_off"], prm[name + "_s"] = mem, off, st
    ref = reference.area_attention(q.double(), k.double(), v.double(), area)
    return prm, ref, o


def _run_and_check(prm, ref, o_view, sm75=False):
    o_mem = prm["o"]
    o_mem.data[:] = np.nan
    stored = attention_kernel(prm, sm75=sm75)
    # every output element stored exactly once, nothing else touched
    want = np.zeros(o_mem.data.size, np.int64)
    idx = torch.arange(o_mem.data.size).as_strided(o_view.shape, o_view.stride(),
                                                    o_view.storage_offset())
    want[idx.long().numpy().ravel()] = 1
    assert np.array_equal(stored, want), "an output element stored twice, never, or out of place"
    got = torch.as_strided(torch.from_numpy(o_mem.data), o_view.shape, o_view.stride(),
                           o_view.storage_offset())
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, ref.to(got.dtype), atol=2e-3, rtol=2e-2)


@pytest.mark.parametrize("view", ["contig", "offset1", "bhnd", "dimstride2"])
@pytest.mark.parametrize("d", [32, 64])
@pytest.mark.parametrize("sm75", [False, True], ids=["sm80", "sm75"])
def test_attention_index_math_drop_in(view, d, sm75):
    # n = 170 tokens per area: three key tiles and three query tiles, the last ones ragged (10
    # of 80 at head_dim 32, 42 of 64 at 64); B = 2, 2 areas, 1 head
    prm, ref, o = _drop_in(2, 340, 1, d, 2, view)
    _run_and_check(prm, ref, o, sm75=sm75)


@pytest.mark.parametrize("N,area", [(1, 1), (8, 1), (130, 1), (800, 2)])
@pytest.mark.parametrize("sm75", [False, True], ids=["sm80", "sm75"])
def test_attention_index_math_tails(N, area, sm75):
    """One token; a tile of 8; 130 (one full key tile plus 50); 400 (YOLOv12's areas: 5 tiles of
    80 each way, nothing ragged)."""
    prm, ref, o = _drop_in(1, N, 1, 32, area, "contig")
    _run_and_check(prm, ref, o, sm75=sm75)


def _model_layout_case(B, heads, H, W, area, layout):
    d = 32
    C = heads * d
    g = torch.Generator().manual_seed(H * W + area)
    qkv = torch.randn(B, 3 * C, H, W, generator=g).half()
    o = torch.empty(B, C, H, W).half()
    if layout == "channels_last":
        qkv = qkv.contiguous(memory_format=torch.channels_last)
        o = o.contiguous(memory_format=torch.channels_last)
    mem, off, _ = _buffer(qkv, 0)
    cs = qkv.stride(1)
    s_qkv = (qkv.stride(0), qkv.stride(3), 3 * d * cs, cs)  # (sb, st, sh, sd)
    omem, ooff, _ = _buffer(o, 0)
    prm = dict(B=B, N=H * W, heads=heads, D=d, area=area, scale=d ** -0.5,
               q=mem, k=mem, v=mem, o=omem, q_off=off, k_off=off + d * cs,
               v_off=off + 2 * d * cs, o_off=ooff, q_s=s_qkv, k_s=s_qkv, v_s=s_qkv,
               o_s=(o.stride(0), o.stride(3), d * o.stride(1), o.stride(1)))
    ref = attention_only(qkv.double(), heads, area)
    return prm, ref, o


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("H,W,area", [(8, 16, 2), (5, 7, 1), (6, 12, 4), (12, 15, 1)])
@pytest.mark.parametrize("sm75", [False, True], ids=["sm80", "sm75"])
def test_attention_index_math_model_layout(layout, H, W, area, sm75):
    """The qkv (B, 3C, H, W) strides exactly as bindings.cpp's launch_fused sets them: NCHW is
    staged [d][key] (copies when n % 8 == 0, else element loads), channels_last [key][d]."""
    prm, ref, o = _model_layout_case(2, 2, H, W, area, layout)
    assert token_major(prm) == (layout == "nchw")
    _run_and_check(prm, ref, o, sm75=sm75)


def test_attention_index_math_yolov12_p4_area():
    """One YOLOv12 P4 area at 640 on the model layout: 400 tokens, 5 x 5 tiles of 80, copies."""
    prm, ref, o = _model_layout_case(1, 1, 40, 40, 4, "nchw")
    assert load_mode(True, prm["k"], prm["k_off"], *prm["k_s"], 400) == tiles().mode_vector()
    _run_and_check(prm, ref, o)


def test_attention_load_modes_are_exercised():
    """The cases above cover both shared layouts with both load modes."""
    seen = set()
    for view in ("contig", "offset1", "dimstride2"):
        prm, _, _ = _drop_in(1, 64, 1, 32, 1, view)
        tm = token_major(prm)
        seen.add((tm, load_mode(tm, prm["k"], prm["k_off"], *prm["k_s"], 64)))
    for H, W in ((8, 16), (5, 7)):
        prm, _, _ = _model_layout_case(1, 1, H, W, 1, "nchw")
        seen.add((True, load_mode(True, prm["k"], prm["k_off"], *prm["k_s"], H * W)))
    vec, scalar = tiles().mode_vector(), tiles().mode_scalar()
    assert seen == {(False, vec), (False, scalar), (True, vec), (True, scalar)}, seen


def test_every_tile_formula_is_the_kernels_and_the_models():
    """Every function of area_attention_tiles.h is called by the kernel, or by another of the
    header's functions (so it is what runs on the GPU), and exposed to this model (so it is what
    runs here): a formula written inline in the .cu instead, leaving its header twin unused,
    fails here."""
    import re

    from _cuda_tiles import HEADER
    kernel = (HEADER.parent / "area_attention.cu").read_text()
    bodies = re.sub(r"^Y12_TILE_FN\s+[\w:]+\s+\w+\(", "", HEADER.read_text(), flags=re.M)
    names = header_functions()
    assert len(names) > 30, names
    unused = [f for f in names
              if f"attn::{f}(" not in kernel and not re.search(rf"\b{f}\(", bodies)]
    assert not unused, f"area_attention_tiles.h functions the kernel does not call: {unused}"
    assert sorted(tiles().names()) == sorted(names), "tests/area_attention_tiles_host.cpp's " \
        "table must list every function of the header"


# ------------------------------------------------------------------------------------------------
# depthwise_conv.cu
kPeThreads, kRowsPT, kColsPT, kMaxTile, kChunk, kMaxSmem = 256, 4, 4, 64, 8, 48 * 1024


def ceil_div(a, b):
    return -(-a // b)


def pe_tiling(p):  # transcribed from depthwise_conv.cu
    H, W, k = p["H"], p["W"], p["ksize"]
    t = dict(rad=k // 2)
    t["tile_w"] = ceil_div(W, kColsPT) * kColsPT if W < kMaxTile else kMaxTile
    t["tile_h"] = H if H < kMaxTile else kMaxTile
    t["tiles_x"] = ceil_div(W, t["tile_w"])
    t["tiles_y"] = ceil_div(H, t["tile_h"])
    t["items"] = ceil_div(t["tile_h"], kRowsPT) * (t["tile_w"] // kColsPT)
    t["pad"] = ceil_div(t["rad"], kChunk) * kChunk
    t["lead"] = ceil_div(t["rad"], 4) * 4
    t["rows"] = ceil_div(t["tile_h"], kRowsPT) * kRowsPT + 2 * t["rad"]
    t["row_w"] = ceil_div(t["tile_w"] + t["pad"] + t["lead"], kChunk) * kChunk
    tile_bytes = 4 * (t["rows"] * t["row_w"] + k * k)
    t["tpc"] = max(1, min(kPeThreads // t["items"], kMaxSmem // tile_bytes))
    t["tiles"] = p["B"] * p["C"] * t["tiles_y"] * t["tiles_x"]
    return t


class Flat:
    """A global buffer of float64 values standing for elements of ``esz`` bytes; element i sits at
    byte address ``base + i * esz`` (for the alignment conditions of vector accesses)."""

    def __init__(self, data: np.ndarray, esz: int, base: int = 0):
        self.data, self.esz, self.base = data, esz, base

    def addr(self, idx):
        return self.base + np.asarray(idx) * self.esz

    def check(self, idx, vec_bytes=0):
        idx = np.asarray(idx)
        assert np.all(idx >= 0) and np.all(idx < self.data.size), "global access out of bounds"
        if vec_bytes:
            assert np.all(self.addr(idx) % vec_bytes == 0), f"misaligned {vec_bytes}-byte access"
            last = idx + vec_bytes // self.esz - 1
            assert np.all(last < self.data.size), "vector access past the end"


def depthwise_kernel(p, src: Flat, dst: Flat, stats=None):
    """depthwise_conv_kernel<T, K> (K = 7, 3 compiled; else the run-time-k path) over its grid."""
    k = p["ksize"]
    t = pe_tiling(p)
    rad, pad, lead, rows, row_w, tpc = (t[n] for n in ("rad", "pad", "lead", "rows", "row_w",
                                                        "tpc"))
    H, W, C = p["H"], p["W"], p["C"]
    static_k = k in (7, 3)
    ctas = ceil_div(t["tiles"], tpc)
    threads = ceil_div(tpc * t["items"], 32) * 32
    assert ctas <= 2**31 - 1 and threads <= kPeThreads
    tile_floats = rows * row_w
    smem_floats = tpc * (tile_floats + k * k)
    assert smem_floats * 4 <= kMaxSmem
    per_plane = t["tiles_y"] * t["tiles_x"]
    stats = stats if stats is not None else {}
    written = np.zeros(dst.data.size, np.int64)
    for bx in range(ctas):
        smem = np.full(smem_floats, np.nan)
        filled = np.zeros(smem_floats, bool)
        # 1. load: chunks over (tile, row, chunk)
        cpr = row_w // kChunk
        i = np.arange(tpc * rows * cpr)
        slot, rem = i // (rows * cpr), i % (rows * cpr)
        s, ch = rem // cpr, rem % cpr
        tile = bx * tpc + slot
        live = tile < t["tiles"]
        i, slot, s, ch, tile = i[live], slot[live], s[live], ch[live], tile[live]
        plane, txy = tile // per_plane, tile % per_plane
        y = (txy // t["tiles_x"]) * t["tile_h"] - rad + s
        x = (txy % t["tiles_x"]) * t["tile_w"] - pad + ch * kChunk
        d = slot * tile_floats + s * row_w + ch * kChunk
        assert np.all(d % 4 == 0), "misaligned float4 shared store"
        assert not filled[d[:, None] + np.arange(kChunk)].any(), "shared slot written twice"
        filled[d[:, None] + np.arange(kChunk)] = True
        vals = np.zeros((d.size, kChunk))
        inside = (y >= 0) & (y < H)
        b, c = plane // C, plane % C
        row = b * p["in_sb"] + (c // p["in_group"]) * p["in_sg"] + (c % p["in_group"]) * p["in_sc"] \
            + y * p["in_sh"]
        srcx = row + x * p["in_sw"]
        vec = inside & (x >= 0) & (x + kChunk <= W) & (p["in_sw"] == 1) \
            & (src.addr(srcx) % 16 == 0)
        if vec.any():
            for part in range(src.esz * kChunk // 16):  # one 16-byte load (two for fp32)
                src.check(srcx[vec] + part * 16 // src.esz, vec_bytes=16)
            vals[vec] = src.data[srcx[vec][:, None] + np.arange(kChunk)]
        for j in range(kChunk):
            ok = inside & ~vec & (x + j >= 0) & (x + j < W)
            src.check(row[ok] + (x[ok] + j) * p["in_sw"])
            vals[ok, j] = src.data[row[ok] + (x[ok] + j) * p["in_sw"]]
        stats["vector_loads"] = stats.get("vector_loads", 0) + int(vec.sum())
        stats["scalar_chunks"] = stats.get("scalar_chunks", 0) + int((inside & ~vec).sum())
        smem[d[:, None] + np.arange(kChunk)] = vals
        if not static_k:
            wi = np.arange(tpc * k * k)
            wtile = bx * tpc + wi // (k * k)
            wc = (wtile // per_plane) % C
            smem[tpc * tile_floats + wi] = np.where(wtile < t["tiles"],
                                                    p["weight"][wc * k * k + wi % (k * k)], 0.0)
        # 2. compute: one thread per 4 x 4 output block
        tid = np.arange(threads)
        slot, item = tid // t["items"], tid % t["items"]
        tile = bx * tpc + slot
        ok = (slot < tpc) & (tile < t["tiles"])
        slot, item, tile = slot[ok], item[ok], tile[ok]
        plane, txy = tile // per_plane, tile % per_plane
        y0, x0 = (txy // t["tiles_x"]) * t["tile_h"], (txy % t["tiles_x"]) * t["tile_w"]
        b, c = plane // C, plane % C
        ry, cx = item // (t["tile_w"] // kColsPT), item % (t["tile_w"] // kColsPT)
        win = slot * tile_floats + (kRowsPT * ry) * row_w + kColsPT * cx + pad - lead
        lo, hi = slot * tile_floats, (slot + 1) * tile_floats
        bias = p["bias"][c] if p["bias"] is not None else np.zeros(c.size)
        acc = np.repeat(bias[:, None, None], kRowsPT, 1).repeat(kColsPT, 2).astype(np.float64)
        k_win = 2 * lead + 4
        for ii in range(kRowsPT + k - 1):
            base = win + ii * row_w
            if static_k:  # kWin / 4 float4 loads of the row window
                assert np.all(base % 4 == 0), "misaligned float4 shared load"
                idx = base[:, None] + np.arange(k_win)
            else:
                idx = base[:, None] + np.arange(k_win)  # the scalar reads below stay inside
            assert np.all((idx >= lo[:, None]) & (idx < hi[:, None])), "read outside the tile"
            f = smem[idx]
            for r in range(kRowsPT):
                fy = ii - r
                if not 0 <= fy < k:
                    continue
                for j in range(k):
                    if static_k:
                        wv = p["weight"][c * k * k + fy * k + j]
                    else:
                        wv = smem[tpc * tile_floats + slot * k * k + fy * k + j]
                    for xx in range(kColsPT):
                        m = xx + j + lead - rad
                        assert 0 <= m < k_win
                        v = f[:, m]
                        assert not np.any(np.isnan(v)), "read a shared slot the load did not write"
                        acc[:, r, xx] += wv * v
        # 3. store 4 columns at a time
        x = x0 + kColsPT * cx
        valid = np.minimum(kColsPT, W - x)
        for r in range(kRowsPT):
            y = y0 + kRowsPT * ry + r
            live = (valid > 0) & (kRowsPT * ry + r < t["tile_h"]) & (y < H)
            o = b * p["out_sb"] + c * p["out_sc"] + x * p["out_sw"] + y * p["out_sh"]
            vec = live & (valid == kColsPT) & (p["out_sw"] == 1) \
                & (dst.addr(o) % (dst.esz * kColsPT) == 0)
            if vec.any():
                dst.check(o[vec], vec_bytes=dst.esz * kColsPT)
            stats["vector_stores"] = stats.get("vector_stores", 0) + int(vec.sum())
            for xx in range(kColsPT):
                sel = live & (xx < valid)
                idx = o[sel] + xx * p["out_sw"]
                dst.check(idx)
                prev = dst.data[idx] if p["accumulate"] else 0.0
                dst.data[idx] = prev + acc[sel, r, xx]
                written[idx] += 1
    return written


def _pe_params(v, w, bias, out, accumulate=0, **override):
    p = dict(B=v.shape[0], C=v.shape[1], H=v.shape[2], W=v.shape[3], ksize=w.shape[-1],
             weight=w.reshape(-1).numpy(), bias=None if bias is None else bias.numpy(),
             in_sb=v.stride(0), in_sc=v.stride(1), in_sh=v.stride(2), in_sw=v.stride(3),
             in_group=v.shape[1], in_sg=0, out_sb=out.stride(0), out_sc=out.stride(1),
             out_sh=out.stride(2), out_sw=out.stride(3), accumulate=accumulate)
    p.update(override)
    return p


def _storage(t: torch.Tensor, esz: int, base: int = 0) -> Flat:
    """The whole storage of a float64 view as a Flat of ``esz``-byte elements (the view's element
    offset stays in its strides' base: callers add t.storage_offset())."""
    return Flat(torch.empty(0, dtype=t.dtype).set_(t.untyped_storage()).numpy(), esz, base)


PE_CASES = {  # name: (B, C, H, W, k, esz, view)
    "P4 40x40 fp16, 2 planes per CTA": (2, 3, 40, 40, 7, 2, "contig"),
    "P5 20x20 fp16, rows 8-byte aligned": (1, 3, 20, 20, 7, 2, "contig"),
    "multi-tile 70x65, k=3": (1, 2, 70, 65, 3, 2, "contig"),
    "fp32 17x19": (1, 2, 17, 19, 7, 4, "contig"),
    "run-time k=5": (2, 2, 5, 7, 5, 2, "contig"),
    "run-time k=9": (1, 3, 9, 9, 9, 2, "contig"),
    "k=31 on 3x3": (1, 1, 3, 3, 31, 4, "contig"),
    "image smaller than k": (3, 2, 7, 3, 7, 2, "contig"),
    "offset by one element": (1, 2, 16, 24, 7, 2, "offset1"),
    "channel slice, W stride 2": (2, 3, 11, 13, 7, 2, "strided"),
}


@pytest.mark.parametrize("case", list(PE_CASES), ids=list(PE_CASES))
def test_depthwise_index_math(case):
    B, C, H, W, k, esz, view = PE_CASES[case]
    g = torch.Generator().manual_seed(H * W * k + C)
    if view == "contig":
        v = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    elif view == "offset1":
        v = torch.randn(B * C * H * W + 1, generator=g, dtype=torch.float64)[1:].view(B, C, H, W)
    else:
        v = torch.randn(B, C + 2, H, 2 * W, generator=g, dtype=torch.float64)[:, 1:C + 1, :, ::2]
    w = torch.randn(C, 1, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    out = torch.full((B, C, H, W), float("nan"), dtype=torch.float64)
    src = _storage(v, esz)
    src.data = src.data[v.storage_offset():]
    src.base = v.storage_offset() * esz  # the first element of the view keeps its true address
    p = _pe_params(v, w, bias, out)
    stats = {}
    written = depthwise_kernel(p, src, Flat(out.view(-1).numpy(), esz), stats)
    assert np.all(written == 1), "an output element stored twice or never"
    torch.testing.assert_close(out, reference.position_perceiver(v, w, bias))
    if case.startswith("P4") or case.startswith("multi"):
        assert stats["vector_loads"] > 0 and stats["vector_stores"] > 0, stats
    if view != "contig":
        assert stats["vector_loads"] == 0, stats


def test_depthwise_load_and_store_modes_are_exercised():
    """Across shapes: 16-byte loads and scalar chunks in one launch (the 20x20 plane's odd rows
    start 8 bytes past a 16-byte boundary), vector and scalar stores (a ragged last column)."""
    stats = {}
    for H, W in ((20, 20), (9, 10)):
        v = torch.randn(1, 2, H, W, dtype=torch.float64)
        w = torch.randn(2, 1, 7, 7, dtype=torch.float64)
        out = torch.zeros(1, 2, H, W, dtype=torch.float64)
        depthwise_kernel(_pe_params(v, w, None, out), Flat(v.view(-1).numpy(), 2),
                         Flat(out.view(-1).numpy(), 2), stats)
    assert stats["vector_loads"] and stats["scalar_chunks"] and stats["vector_stores"], stats
    assert stats.get("vector_stores", 0) < 2 * 2 * 20 * 5 + 2 * 9 * 3, "no scalar store seen"


@pytest.mark.parametrize("H,W", [(9, 6), (20, 20), (40, 40)])
def test_depthwise_index_math_fused_qkv_accumulate(H, W):
    """v read in place from qkv (in_group = d, in_sg = 3 d HW), added onto the attention output,
    with the parameters bindings.cpp's launch_fused passes."""
    B, heads, d, k = 2, 2, 32, 7
    C = heads * d
    g = torch.Generator().manual_seed(H * W)
    qkv = torch.randn(B, 3 * C, H, W, generator=g, dtype=torch.float64)
    w = torch.randn(C, 1, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    out = x.clone()
    cs = qkv.stride(1)
    p = _pe_params(qkv, w, bias, out, accumulate=1, C=C, in_group=d, in_sg=3 * d * cs,
                   in_sc=cs)
    src = Flat(qkv.reshape(-1).numpy()[2 * d * cs:], 2, base=2 * d * cs * 2)  # p.in = qkv + 2d ch
    written = depthwise_kernel(p, src, Flat(out.view(-1).numpy(), 2))
    assert np.all(written == 1)
    _, _, v = reference.split_qkv(qkv, heads)  # (B, N, heads, d) views
    v_nchw = v.reshape(B, H, W, C).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, x + F.conv2d(v_nchw, w, bias, padding=k // 2, groups=C))
