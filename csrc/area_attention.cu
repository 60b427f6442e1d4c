// Area attention forward with tensor-core (mma.sync) tiles, sm_75 and up.
//
// One CTA = one (batch, area, head) "problem" (blockIdx.x, so any count up to 2^31-1) and one tile
// of kBlockM = 64 query rows (blockIdx.y). Its 4 warps own 16 query rows each and keep
// everything of the flash-attention-2 recurrence in registers: the Q fragments, the S = Q K^T tile
// (16 x 64 per warp), the running row max / row sum, and the O accumulator (16 x D). K and V tiles
// of kBlockN = 64 keys are staged in shared memory, K as [key][d] and V transposed as [d][key], so
// that every B fragment of both products (S = Q K^T: B = K^T; O = P V: B = V) is one 32-bit load of
// two consecutive 16-bit elements. Rows are padded by 8 elements (16 bytes) so that the 32 lanes
// of a fragment load hit 32 different banks (row stride 36 or 20 words, see the note at kPad).
//
// Layout-agnostic: every tensor is (base, batch/token/head/dim strides), which covers both the
// drop-in (B, N, heads, d) tensors and the model's (B, 3C, H, W) qkv -> (B, C, H, W) output (see
// yolov12_kernels.h). Tails: keys past the area's end are loaded as zero and masked to -inf before
// the softmax; query rows past it are computed on zeros and never stored.
#include <math.h>

#include "mma_utils.cuh"
#include "yolov12_kernels.h"

namespace {

using y12::fast_exp2;
using y12::mma_16x8x16;
using y12::pack2;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlockM = 16 * kWarps;  // query rows per CTA
constexpr int kBlockN = 64;           // keys per shared-memory tile
// 8 elements of padding per shared row. Fragment loads read word (row * stride_words + t) for
// row = g (0..7) and t = 0..3: with stride 36 words (64 + 8 halves) the banks are 4g + t, with
// stride 20 words (32 + 8) they are {0, 20, 8, 28, 16, 4, 24, 12} + t: all 32 distinct. 16 bytes
// also keeps every row 16-byte aligned for the vector stores below.
constexpr int kPad = 8;

// How a K/V tile is read from global memory, chosen on the host from the strides (uniform per
// launch): elements along the unit-stride dimension go to consecutive threads (coalesced), in
// 16-byte vectors of 8 elements when every address involved is 16-byte aligned.
enum LoadMode : int {
  kScalarDimFast = 0,  // dim stride 1 (drop-in layout, any alignment)
  kScalarTokFast = 1,  // token stride 1 (model layout) or neither unit stride
  kVecDim = 2,         // dim stride 1, 8-element vectors along dim
  kVecTok = 3,         // token stride 1, 8-element vectors along tokens
};

struct KernelArgs {
  y12_attention_params p;
  int64_t n;        // tokens per area
  int mode_k, mode_v;
  int vec_store;    // output dim stride 1 and 4-byte aligned pairs: store 2 elements at once
};

// Load rows [r0, r0 + kBlockN) x D columns of a [token][dim] global matrix into shared memory,
// element (r, c) -> dst[r * DST_RS + c * DST_CS], zero for rows >= n. The 16-bit elements are
// moved as raw bits (uint16_t): no conversion, so fp16 and bf16 share the code.
template <int D, int DST_RS, int DST_CS>
__device__ __forceinline__ void load_tile(const uint16_t* __restrict__ src, int64_t st, int64_t sd,
                                          int64_t r0, int64_t n, int mode,
                                          uint16_t* __restrict__ dst) {
  const int tid = threadIdx.x;
  if (mode == kVecDim) {
    // chunk = (row, 8 consecutive dims); one 16-byte load per chunk
    constexpr int kChunks = kBlockN * (D / 8);
    for (int i = tid; i < kChunks; i += kThreads) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (r0 + r < n) val = *reinterpret_cast<const uint4*>(src + (r0 + r) * st + c);
      if (DST_CS == 1) {
        *reinterpret_cast<uint4*>(dst + r * DST_RS + c) = val;
      } else {
        const uint16_t* e = reinterpret_cast<const uint16_t*>(&val);
#pragma unroll
        for (int j = 0; j < 8; ++j) dst[r * DST_RS + (c + j) * DST_CS] = e[j];
      }
    }
  } else if (mode == kVecTok) {
    // chunk = (8 consecutive tokens, dim); vector load only when all 8 tokens exist
    constexpr int kChunks = (kBlockN / 8) * D;
    for (int i = tid; i < kChunks; i += kThreads) {
      const int c = i / (kBlockN / 8), r = (i % (kBlockN / 8)) * 8;
      uint4 val = make_uint4(0, 0, 0, 0);
      uint16_t* e = reinterpret_cast<uint16_t*>(&val);
      if (r0 + r + 8 <= n) {
        val = *reinterpret_cast<const uint4*>(src + (r0 + r) + c * sd);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j)
          if (r0 + r + j < n) e[j] = src[(r0 + r + j) + c * sd];
      }
      if (DST_RS == 1) {
        *reinterpret_cast<uint4*>(dst + r + c * DST_CS) = val;
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) dst[(r + j) * DST_RS + c * DST_CS] = e[j];
      }
    }
  } else {
    constexpr int kElems = kBlockN * D;
    const bool dim_fast = (mode == kScalarDimFast);
    for (int i = tid; i < kElems; i += kThreads) {
      const int r = dim_fast ? i / D : i % kBlockN;
      const int c = dim_fast ? i % D : i / kBlockN;
      uint16_t val = 0;
      if (r0 + r < n) val = src[(r0 + r) * st + c * sd];
      dst[r * DST_RS + c * DST_CS] = val;
    }
  }
}

// Launch bounds (128 threads, >= 2 CTAs/SM): without the minimum, ptxas 13.0 capped sm_80 at 128
// registers and spilled; 2 CTAs allow up to 255 (~160 are used) and keep 8 warps per SM.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2)
    area_attention_fwd_kernel(const KernelArgs args) {
  static_assert(D % 16 == 0 && D <= 128, "head_dim must be a multiple of 16");
  constexpr int kKS = D / 16;        // k-steps of the Q K^T product
  constexpr int kNB = kBlockN / 8;   // 8-key column blocks of S
  constexpr int kDB = D / 8;         // 8-dim column blocks of O
  constexpr int kKRow = D + kPad;    // Ks row length (elements)
  constexpr int kVRow = kBlockN + kPad;  // Vt row length (elements)
  __shared__ __align__(16) uint16_t Ks[kBlockN * kKRow];
  __shared__ __align__(16) uint16_t Vt[D * kVRow];

  const y12_attention_params& p = args.p;
  const int64_t n = args.n;
  const int64_t prob = blockIdx.x;
  const int64_t h = prob % p.num_heads;
  const int64_t ba = prob / p.num_heads;
  const int64_t a = ba % p.area;
  const int64_t b = ba / p.area;
  const int64_t tok0 = a * n;  // first token of this area

  const uint16_t* Q = static_cast<const uint16_t*>(p.q) + b * p.q_sb + h * p.q_sh + tok0 * p.q_st;
  const uint16_t* K = static_cast<const uint16_t*>(p.k) + b * p.k_sb + h * p.k_sh + tok0 * p.k_st;
  const uint16_t* V = static_cast<const uint16_t*>(p.v) + b * p.v_sb + h * p.v_sh + tok0 * p.v_st;
  T* O = static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh + tok0 * p.o_st;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t m0 = int64_t(blockIdx.y) * kBlockM + warp * 16;  // this warp's first query row

  // Q fragments straight from global memory (read once per CTA, so no staging): rows m0 + g and
  // m0 + g + 8, columns 2t, 2t+1 (+8) of each 16-wide k-step; zero past the area's end.
  uint32_t qf[kKS][4];
#pragma unroll
  for (int ks = 0; ks < kKS; ++ks) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = m0 + g + ((r & 1) ? 8 : 0);
      const int col = ks * 16 + 2 * t + ((r & 2) ? 8 : 0);
      uint32_t lo = 0, hi = 0;
      if (row < n) {
        lo = Q[row * p.q_st + col * p.q_sd];
        hi = Q[row * p.q_st + (col + 1) * p.q_sd];
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

  for (int64_t n0 = 0; n0 < n; n0 += kBlockN) {
    __syncthreads();  // every warp is done reading the previous K/V tile
    load_tile<D, kKRow, 1>(K, p.k_st, p.k_sd, n0, n, args.mode_k, Ks);
    load_tile<D, 1, kVRow>(V, p.v_st, p.v_sd, n0, n, args.mode_v, Vt);
    __syncthreads();

    // S = Q K^T for this warp's 16 rows x 64 keys. B = K^T: B[k][nn] = K[key nn][dim k], so
    // b0 = Ks[nb*8 + g][ks*16 + 2t, +1] (one word) and b1 is 8 dims (4 words) further.
    float s[kNB][4];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nb][i] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kKS; ++ks) {
        const uint32_t* kw =
            reinterpret_cast<const uint32_t*>(Ks + (nb * 8 + g) * kKRow + ks * 16 + 2 * t);
        mma_16x8x16<T>(s[nb], qf[ks], kw[0], kw[4]);
      }
    }

    // scale into log2 units and mask keys past the end; s[nb][i] is key n0 + nb*8 + 2t + (i&1)
    // of row g (i < 2) or g + 8 (i >= 2).
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t key = n0 + nb * 8 + 2 * t + (i & 1);
        s[nb][i] = key < n ? s[nb][i] * scale_log2 : -INFINITY;
      }

    // online softmax. Key n0 < n is valid in every tile, so the new max is finite and
    // exp2(-inf - finite) = 0 handles the first tile.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
      // the 4 lanes of a row are lanes 4g .. 4g+3
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
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
    // the A fragment of a 16-key k-step, so P never leaves registers. B = V: B[key][dim] =
    // Vt[dim][key], b0 = Vt[db*8 + g][kk*16 + 2t, +1], b1 = 8 keys (4 words) further.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                              pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int db = 0; db < kDB; ++db) {
        const uint32_t* vw =
            reinterpret_cast<const uint32_t*>(Vt + (db * 8 + g) * kVRow + kk * 16 + 2 * t);
        mma_16x8x16<T>(o[db], pa, vw[0], vw[4]);
      }
    }
  }

  // normalise and store rows g and g + 8 (only those inside the area)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = 1.f / l;  // l >= 1: the row max contributes exp2(0) = 1
    const int64_t row = m0 + g + 8 * r;
    if (row >= n) continue;
    T* orow = O + row * p.o_st;
#pragma unroll
    for (int db = 0; db < kDB; ++db) {
      const int col = db * 8 + 2 * t;
      if (args.vec_store) {
        *reinterpret_cast<uint32_t*>(orow + col) =
            pack2<T>(o[db][2 * r] * inv, o[db][2 * r + 1] * inv);
      } else {
        orow[col * p.o_sd] = y12::from_float<T>(o[db][2 * r] * inv);
        orow[(col + 1) * p.o_sd] = y12::from_float<T>(o[db][2 * r + 1] * inv);
      }
    }
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

// The load mode for one of K / V (see LoadMode). The vector modes need the per-problem base
// address 16-byte aligned for every (batch, head, area): base pointer, batch and head strides,
// and the stride of the other dimension (and the area's first token, tok0 * unit stride) all
// multiples of 8 elements.
int load_mode(const void* base, int64_t sb, int64_t st, int64_t sh, int64_t sd, int64_t n) {
  if (sd == 1) {
    if (aligned16(base) && sb % 8 == 0 && sh % 8 == 0 && st % 8 == 0) return kVecDim;
    return kScalarDimFast;
  }
  if (st == 1 && aligned16(base) && sb % 8 == 0 && sh % 8 == 0 && sd % 8 == 0 && n % 8 == 0)
    return kVecTok;
  return kScalarTokFast;
}

template <typename T, int D>
cudaError_t launch(const KernelArgs& args, dim3 grid, cudaStream_t stream) {
  area_attention_fwd_kernel<T, D><<<grid, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename T>
const void* kernel_for(int head_dim) {
  return head_dim == 32 ? reinterpret_cast<const void*>(&area_attention_fwd_kernel<T, 32>)
                        : reinterpret_cast<const void*>(&area_attention_fwd_kernel<T, 64>);
}

}  // namespace

extern "C" cudaError_t y12_attention_ptx_arch(y12_dtype dtype, int* arch) {
  if (arch == nullptr) return cudaErrorInvalidValue;
  cudaFuncAttributes attr;
  const void* fn = dtype == Y12_BFLOAT16 ? kernel_for<__nv_bfloat16>(32) : kernel_for<__half>(32);
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
  args.mode_k = load_mode(p->k, p->k_sb, p->k_st, p->k_sh, p->k_sd, args.n);
  args.mode_v = load_mode(p->v, p->v_sb, p->v_st, p->v_sh, p->v_sd, args.n);
  args.vec_store = p->o_sd == 1 && (reinterpret_cast<uintptr_t>(p->o) & 3) == 0 &&
                   p->o_sb % 2 == 0 && p->o_sh % 2 == 0 && p->o_st % 2 == 0;
  const int64_t problems = p->batch * p->area * p->num_heads;
  const int64_t q_tiles = (args.n + kBlockM - 1) / kBlockM;
  if (problems > 2147483647LL || q_tiles > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(q_tiles));
  if (p->dtype == Y12_FLOAT16)
    return p->head_dim == 32 ? launch<__half, 32>(args, grid, stream)
                             : launch<__half, 64>(args, grid, stream);
  return p->head_dim == 32 ? launch<__nv_bfloat16, 32>(args, grid, stream)
                           : launch<__nv_bfloat16, 64>(args, grid, stream);
}

extern "C" const char* y12_error_string(cudaError_t err) { return cudaGetErrorString(err); }
