// Area attention forward with tensor-core (mma.sync) tiles, sm_75 and up.
//
// One CTA = one (batch, area, head) "problem" (blockIdx.x, so any count up to 2^31-1) and one tile
// of kBlockM = 80 query rows (blockIdx.y). Its 5 warps own 16 query rows each and keep everything
// of the flash-attention-2 recurrence in registers: the Q fragments, the S = Q K^T tile (16 x 80
// per warp), the running row max / row sum, and the O accumulator (16 x D). K and V go through
// shared memory in tiles of kBlockN = 80 keys. 80 = 5 x 16 because YOLOv12's areas are 400 tokens
// at 640 (P4: 40 x 40 / 4, P5: 20 x 20): 5 tiles each way exactly, where 64-row tiles computed 448
// rows and 448 keys per 400 (12% padding).
//
// Shared-memory layout follows the global one, so that every tile load is a straight 16-byte copy
// (kTokMajor, a template parameter chosen on the host): the drop-in (B, N, heads, d) tensors have
// unit stride along d and are staged [key][d]; the model's (B, 3C, H, W) qkv has unit stride along
// tokens and is staged [d][key]. Rows are padded by 8 elements (16 bytes): row strides of 80, 144
// and 176 bytes put the 8 rows of every 8x8 ldmatrix in 8 different 16-byte bank groups (no bank
// conflicts), and keep rows 16-byte aligned for the copies. The MMA B fragments are read with
// ldmatrix.x4 (plain or .trans, depending on the layout; see mma_utils.cuh).
//
// On sm_80+ the tiles are double-buffered with cp.async: tile j + 1 is in flight while tile j is
// computed. sm_75 has no cp.async: one buffer, loads through registers.
//
// Layout-agnostic: every tensor is (base, batch/token/head/dim strides), which covers both the
// drop-in tensors with any strides and the model's qkv -> (B, C, H, W) output (see
// yolov12_kernels.h). Tiles load with 16-byte copies along the unit-stride dimension when every
// address is 16-byte aligned, else element by element. Tails: keys past the area's end are loaded
// as zero and masked to -inf before the softmax; query rows past it are computed on zeros and
// never stored.
//
// Every tile size, address, mask and fragment index comes from area_attention_tiles.h (namespace
// y12::attn), which the CPU model of this kernel (tests/test_cuda_kernel_model.py) compiles and
// runs too: write a new index formula there, not here.
#include <math.h>

#include "area_attention_tiles.h"
#include "mma_utils.cuh"
#include "yolov12_kernels.h"

namespace {

using y12::copy16;
using y12::fast_exp2;
using y12::ldmatrix_x4;
using y12::mma_16x8x16;
using y12::pack2;

namespace attn = y12::attn;

// Tile sizes per head_dim (area_attention_tiles.h says why these).
template <int D>
struct Config {
  static constexpr int kThreads = attn::threads(D);
  static constexpr int kBlockN = attn::block_n(D);  // keys per shared-memory tile
  static constexpr int kMaxRegs = attn::max_regs(D);
};
#if defined(__CUDA_ARCH__)
constexpr int kStages = attn::stages(__CUDA_ARCH__);  // 2: cp.async double buffering (sm_80+)
#else
constexpr int kStages = attn::stages(0);
#endif

// How a K/V tile is read from global memory, chosen on the host (uniform per launch):
// attn::mode_vector(), 16-byte copies along the contiguous dimension, or attn::mode_scalar(),
// element by element.

struct KernelArgs {
  y12_attention_params p;
  int64_t n;  // tokens per area
  int mode_k, mode_v;
  int vec_store;  // output dim stride 1 and 4-byte aligned pairs: store 2 elements at once
};

// Shared tile of kBlockN keys x D dims: [key][d] (kTokMajor false) or [d][key] (true).
template <int D, bool kTokMajor>
struct Tile {
  static constexpr int kBlockN = Config<D>::kBlockN;
  static constexpr int kElems = attn::tile_elems(D, kTokMajor);
};

// Keys [r0, r0 + kBlockN) x D dims of a [token][dim] global matrix (strides st, sd) into a shared
// tile, zero for keys >= n. 16-bit elements are moved as raw bits (no conversion: fp16 and bf16
// share the code).
template <int D, bool kTokMajor>
__device__ __forceinline__ void load_tile(const uint16_t* __restrict__ src, int64_t st,
                                          int64_t sd, int64_t r0, int64_t n, int mode,
                                          uint16_t* __restrict__ dst) {
  constexpr int kThreads = Config<D>::kThreads;
  const int tid = threadIdx.x;
  if (mode == attn::mode_vector()) {
    // chunk = 8 consecutive elements along the contiguous dimension: dims (kTokMajor false) or
    // tokens (true; n % 8 == 0 there, so a chunk is all inside the area or all outside)
    constexpr int kChunks = attn::chunk_count(D, kTokMajor);
    for (int i = tid; i < kChunks; i += kThreads) {
      const int line = attn::chunk_line(i, D, kTokMajor);  // shared row
      const int c8 = attn::chunk_col(i, D, kTokMajor);     // its first column
      const int64_t key = attn::chunk_key(r0, line, c8, kTokMajor);
      uint16_t* d = dst + attn::smem_index(line, c8, D, kTokMajor);
      if (attn::key_in_area(key, n)) {
        copy16(d, src + attn::chunk_src(key, line, c8, st, sd, kTokMajor));
      } else {
        *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
      }
    }
  } else {
    constexpr int kElems = attn::elem_count(D);
    for (int i = tid; i < kElems; i += kThreads) {
      const int line = attn::elem_line(i, D, kTokMajor);  // shared row
      const int col = attn::elem_col(i, D, kTokMajor);
      const int key = attn::elem_key(line, col, kTokMajor);
      const int dim = attn::elem_dim(line, col, kTokMajor);
      uint16_t val = 0;
      if (attn::key_in_area(r0 + key, n)) val = src[attn::token_dim_offset(r0 + key, dim, st, sd)];
      dst[attn::smem_index(line, col, D, kTokMajor)] = val;
    }
  }
}

template <typename T, int D, bool kTokMajor>
__global__ void __maxnreg__(Config<D>::kMaxRegs)
    area_attention_fwd_kernel(const KernelArgs args) {
  static_assert(D % 32 == 0 && D <= 128, "head_dim must be a multiple of 32");
  using L = Tile<D, kTokMajor>;
  constexpr int kBlockN = L::kBlockN;
  constexpr int kKS = D / 16;        // k-steps of the Q K^T product
  constexpr int kNB = kBlockN / 8;   // 8-key column blocks of S
  constexpr int kDB = D / 8;         // 8-dim column blocks of O
  __shared__ __align__(128) uint16_t Ks[kStages][L::kElems];
  __shared__ __align__(128) uint16_t Vs[kStages][L::kElems];

  const y12_attention_params& p = args.p;
  const int64_t n = args.n;
  const int64_t prob = blockIdx.x;
  const int64_t h = attn::problem_head(prob, p.num_heads);
  const int64_t a = attn::problem_area(prob, p.num_heads, p.area);
  const int64_t b = attn::problem_batch(prob, p.num_heads, p.area);
  const int64_t tok0 = attn::area_first_token(a, n);

  const uint16_t* Q = static_cast<const uint16_t*>(p.q) +
                      attn::base_offset(b, h, tok0, p.q_sb, p.q_sh, p.q_st);
  const uint16_t* K = static_cast<const uint16_t*>(p.k) +
                      attn::base_offset(b, h, tok0, p.k_sb, p.k_sh, p.k_st);
  const uint16_t* V = static_cast<const uint16_t*>(p.v) +
                      attn::base_offset(b, h, tok0, p.v_sb, p.v_sh, p.v_st);
  T* O = static_cast<T*>(p.o) + attn::base_offset(b, h, tok0, p.o_sb, p.o_sh, p.o_st);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = attn::lane_group(lane), t = attn::lane_in_group(lane);
  const int64_t m0 = attn::warp_first_row(blockIdx.y, warp, D);  // this warp's first query row

  // the first K/V tile is in flight while the Q fragments load
  load_tile<D, kTokMajor>(K, p.k_st, p.k_sd, 0, n, args.mode_k, Ks[0]);
  load_tile<D, kTokMajor>(V, p.v_st, p.v_sd, 0, n, args.mode_v, Vs[0]);
  y12::cp_async_commit();

  // Q fragments straight from global memory (read once per CTA, so no staging): rows m0 + g and
  // m0 + g + 8, columns 2t, 2t+1 (+8) of each 16-wide k-step; zero past the area's end.
  uint32_t qf[kKS][4];
#pragma unroll
  for (int ks = 0; ks < kKS; ++ks) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = attn::q_frag_row(m0, g, r);
      const int col = attn::q_frag_col(ks, t, r);
      uint32_t lo = 0, hi = 0;
      if (attn::row_in_area(row, n)) {
        lo = Q[attn::token_dim_offset(row, col, p.q_st, p.q_sd)];
        hi = Q[attn::token_dim_offset(row, col + 1, p.q_st, p.q_sd)];
      }
      qf[ks][r] = lo | (hi << 16);
    }
  }

  float o[kDB][4];
#pragma unroll
  for (int db = 0; db < kDB; ++db)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[db][i] = 0.f;
  // running max (in log2 units, already scaled) and partial row sums of rows g and g+8; the sums
  // stay per-thread partial (over this thread's columns) until the end: the rescale factor is the
  // same for the 4 threads of a row, so summing the partials last is exact.
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};
  const float scale_log2 = p.scale * 1.4426950408889634f;  // softmax via exp2

  const int64_t num_tiles = attn::key_tiles(n, D);
  for (int64_t j = 0; j < num_tiles; ++j) {
    const int stage = static_cast<int>(j % kStages);
    const int64_t n0 = j * kBlockN;
    if (kStages > 1 && j + 1 < num_tiles) {
      // the other buffer was last read in iteration j - 1, before its closing barrier
      load_tile<D, kTokMajor>(K, p.k_st, p.k_sd, n0 + kBlockN, n, args.mode_k, Ks[stage ^ 1]);
      load_tile<D, kTokMajor>(V, p.v_st, p.v_sd, n0 + kBlockN, n, args.mode_v, Vs[stage ^ 1]);
      y12::cp_async_commit();
      y12::cp_async_wait<1>();  // tile j has landed (tile j + 1 may still be in flight)
    } else {
      y12::cp_async_wait<0>();
    }
    __syncthreads();  // tile j is visible to every warp
    const uint16_t* Kt = Ks[stage];
    const uint16_t* Vt = Vs[stage];

    // S = Q K^T for this warp's 16 rows x 80 keys. B = K^T: b0 = K[key nb*8 + g][dim ks*16 + 2t,
    // +1], b1 8 dims further. One ldmatrix.x4 gives b0, b1 of two k-steps (32 dims).
    float s[kNB][4];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nb][i] = 0.f;
#pragma unroll
      for (int k32 = 0; k32 < D / 32; ++k32) {
        uint32_t kb[4];
        ldmatrix_x4<attn::k_frag_trans(kTokMajor)>(
            kb, Kt + attn::k_frag_offset(D, kTokMajor, k32, nb, lane));
        mma_16x8x16<T>(s[nb], qf[2 * k32], kb[0], kb[1]);
        mma_16x8x16<T>(s[nb], qf[2 * k32 + 1], kb[2], kb[3]);
      }
    }

    // scale into log2 units and mask keys past the end; s[nb][i] is key n0 + nb*8 + 2t + (i&1)
    // of row g (i < 2) or g + 8 (i >= 2).
    const int keys_left = attn::keys_left(n, n0, D);
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = attn::score_key(nb, t, i);
        s[nb][i] = attn::key_valid(key, keys_left) ? s[nb][i] * scale_log2 : -INFINITY;
      }

    // online softmax. Key n0 < n is valid in every tile, so the new max is finite and
    // exp2(-inf - finite) = 0 handles the first tile.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
      // the 4 lanes of a row are lanes 4g .. 4g+3
#pragma unroll
      for (int k = 0; k < attn::row_shuffles(); ++k)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, attn::row_shuffle_mask(k)));
      const float new_max = fmaxf(row_max[r], mx);
      const float alpha = fast_exp2(row_max[r] - new_max);
      row_max[r] = new_max;
      row_sum[r] *= alpha;
#pragma unroll
      for (int db = 0; db < kDB; ++db) {
        o[db][2 * r] *= alpha;
        o[db][2 * r + 1] *= alpha;
      }
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb) {
        s[nb][2 * r] = fast_exp2(s[nb][2 * r] - new_max);
        s[nb][2 * r + 1] = fast_exp2(s[nb][2 * r + 1] - new_max);
        row_sum[r] += s[nb][2 * r] + s[nb][2 * r + 1];
      }
    }

    // O += P V. The S accumulator layout of two neighbouring 8-key blocks (2kk, 2kk+1) is exactly
    // the A fragment of a 16-key k-step, so P never leaves registers. B = V: b0 = V[key kk*16 + 2t,
    // +1][dim db*8 + g], b1 8 keys further. One ldmatrix.x4 gives b0, b1 of two dim blocks.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                              pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kDB / 2; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4<attn::v_frag_trans(kTokMajor)>(
            vb, Vt + attn::v_frag_offset(D, kTokMajor, kk, dp, lane));
        mma_16x8x16<T>(o[2 * dp], pa, vb[0], vb[1]);
        mma_16x8x16<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // every warp is done reading this buffer before it is refilled
    if (kStages == 1 && j + 1 < num_tiles) {
      load_tile<D, kTokMajor>(K, p.k_st, p.k_sd, n0 + kBlockN, n, args.mode_k, Ks[0]);
      load_tile<D, kTokMajor>(V, p.v_st, p.v_sd, n0 + kBlockN, n, args.mode_v, Vs[0]);
    }
  }

  // normalise and store rows g and g + 8 (only those inside the area)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
#pragma unroll
    for (int k = 0; k < attn::row_shuffles(); ++k)
      l += __shfl_xor_sync(0xffffffffu, l, attn::row_shuffle_mask(k));
    const float inv = 1.f / l;  // l >= 1: the row max contributes exp2(0) = 1
    const int64_t row = attn::acc_row(m0, g, r);
    if (!attn::row_in_area(row, n)) continue;
#pragma unroll
    for (int db = 0; db < kDB; ++db) {
      const int col = attn::acc_col(db, t);
      T* o0 = O + attn::token_dim_offset(row, col, p.o_st, p.o_sd);
      T* o1 = O + attn::token_dim_offset(row, col + 1, p.o_st, p.o_sd);
      if (args.vec_store) {  // o1 == o0 + 1
        *reinterpret_cast<uint32_t*>(o0) = pack2<T>(o[db][2 * r] * inv, o[db][2 * r + 1] * inv);
      } else {
        *o0 = y12::from_float<T>(o[db][2 * r] * inv);
        *o1 = y12::from_float<T>(o[db][2 * r + 1] * inv);
      }
    }
  }
}

bool aligned(const void* ptr, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(ptr) & (bytes - 1)) == 0;
}

template <typename T, int D, bool kTokMajor>
cudaError_t launch(const KernelArgs& args, dim3 grid, cudaStream_t stream) {
  area_attention_fwd_kernel<T, D, kTokMajor><<<grid, Config<D>::kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_for(const KernelArgs& args, bool tok_major, dim3 grid, cudaStream_t stream) {
  if (args.p.head_dim == 32)
    return tok_major ? launch<T, 32, true>(args, grid, stream)
                     : launch<T, 32, false>(args, grid, stream);
  return tok_major ? launch<T, 64, true>(args, grid, stream)
                   : launch<T, 64, false>(args, grid, stream);
}

template <typename T>
const void* probe_kernel() {  // any instantiation: they are all compiled for the same archs
  return reinterpret_cast<const void*>(&area_attention_fwd_kernel<T, 32, false>);
}

}  // namespace

extern "C" cudaError_t y12_attention_ptx_arch(y12_dtype dtype, int* arch) {
  if (arch == nullptr) return cudaErrorInvalidValue;
  cudaFuncAttributes attr;
  const void* fn = dtype == Y12_BFLOAT16 ? probe_kernel<__nv_bfloat16>() : probe_kernel<__half>();
  cudaError_t err = cudaFuncGetAttributes(&attr, fn);
  if (err != cudaSuccess) {
    // e.g. cudaErrorNoKernelImageForDevice: the binary has no SASS/PTX this GPU can run. The
    // failed call also left `err` as the runtime's last error, which the next unrelated
    // cudaGetLastError() (torch's launch check after its own kernels) would report; clear it,
    // the caller gets `err` from the return value.
    (void)cudaGetLastError();
    return err;
  }
  *arch = attr.ptxVersion;
  return cudaSuccess;
}

extern "C" cudaError_t y12_area_attention_fwd(const y12_attention_params* p, cudaStream_t stream) {
  if (p == nullptr) return cudaErrorInvalidValue;
  if (p->head_dim != 32 && p->head_dim != 64) return cudaErrorInvalidValue;
  if (p->dtype != Y12_FLOAT16 && p->dtype != Y12_BFLOAT16) return cudaErrorInvalidValue;
  if (p->batch < 1 || p->num_tokens < 1 || p->num_heads < 1 || p->area < 1 ||
      p->num_tokens % p->area != 0)
    return cudaErrorInvalidValue;
  if (!p->q || !p->k || !p->v || !p->o) return cudaErrorInvalidValue;
  if (p->dtype == Y12_BFLOAT16) {
    // bf16 MMA only exists in code compiled for sm_80+; refuse instead of trapping in the kernel
    int arch = 0;
    cudaError_t err = y12_attention_ptx_arch(Y12_BFLOAT16, &arch);
    if (err != cudaSuccess) return err;
    if (arch < 80) return cudaErrorNotSupported;
  }
  KernelArgs args;
  args.p = *p;
  args.n = p->num_tokens / p->area;
  // V is staged in K's layout (with element loads if its own strides do not allow copies)
  const bool tok_major = attn::token_major(p->k_st, p->k_sd);
  args.mode_k = attn::load_mode(tok_major, aligned(p->k, 16), p->k_sb, p->k_st, p->k_sh, p->k_sd,
                                args.n);
  args.mode_v = attn::load_mode(tok_major, aligned(p->v, 16), p->v_sb, p->v_st, p->v_sh, p->v_sd,
                                args.n);
  args.vec_store = attn::vec_store(aligned(p->o, 4), p->o_sb, p->o_st, p->o_sh, p->o_sd);
  const int64_t problems = p->batch * p->area * p->num_heads;
  const int64_t q_tiles = attn::query_tiles(args.n, p->head_dim);
  if (problems > 2147483647LL || q_tiles > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(q_tiles));
  return p->dtype == Y12_FLOAT16 ? launch_for<__half>(args, tok_major, grid, stream)
                                 : launch_for<__nv_bfloat16>(args, tok_major, grid, stream);
}

extern "C" const char* y12_error_string(cudaError_t err) { return cudaGetErrorString(err); }
