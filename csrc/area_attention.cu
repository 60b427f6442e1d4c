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
#include <math.h>

#include "mma_utils.cuh"
#include "yolov12_kernels.h"

namespace {

using y12::copy16;
using y12::fast_exp2;
using y12::ldmatrix_x4;
using y12::mma_16x8x16;
using y12::pack2;

// Tile sizes per head_dim. head_dim 32 (every YOLOv12 scale): 5 warps, 80 query rows and 80-key
// tiles, at most 200 registers so that two CTAs of 160 threads share an SM's 64K registers
// (__launch_bounds__(160, 2) would cap at 168, where it spills: ptxas counts 5 warps as 6 there).
// head_dim 64: the 16 x 64 O accumulator leaves no room for a 16 x 80 score tile, so 4 warps,
// 64 x 64 tiles and up to 255 registers (two CTAs of 128 threads).
template <int D>
struct Config {
  static constexpr int kWarps = D <= 32 ? 5 : 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = 16 * kWarps;  // query rows per CTA
  static constexpr int kBlockN = D <= 32 ? 80 : 64;  // keys per shared-memory tile
  static constexpr int kMaxRegs = D <= 32 ? 200 : 255;
};
constexpr int kPad = 8;  // elements of padding per shared row (see the top)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
constexpr int kStages = 2;  // cp.async double buffering
#else
constexpr int kStages = 1;
#endif

// How a K/V tile is read from global memory, chosen on the host (uniform per launch).
enum LoadMode : int {
  kScalar = 0,  // element by element (consecutive threads along the unit-stride dimension)
  kVector = 1,  // 16-byte copies along the shared layout's contiguous dimension
};

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
  static constexpr int kRow = kTokMajor ? kBlockN + kPad : D + kPad;  // row length (elements)
  static constexpr int kElems = (kTokMajor ? D : kBlockN) * kRow;
};

// Keys [r0, r0 + kBlockN) x D dims of a [token][dim] global matrix (strides st, sd) into a shared
// tile, zero for keys >= n. 16-bit elements are moved as raw bits (no conversion: fp16 and bf16
// share the code).
template <int D, bool kTokMajor>
__device__ __forceinline__ void load_tile(const uint16_t* __restrict__ src, int64_t st,
                                          int64_t sd, int64_t r0, int64_t n, int mode,
                                          uint16_t* __restrict__ dst) {
  using L = Tile<D, kTokMajor>;
  constexpr int kBlockN = L::kBlockN, kThreads = Config<D>::kThreads;
  const int tid = threadIdx.x;
  if (mode == kVector) {
    // chunk = 8 consecutive elements along the contiguous dimension: dims (kTokMajor false) or
    // tokens (true; n % 8 == 0 there, so a chunk is all inside the area or all outside)
    constexpr int kPerLine = (kTokMajor ? kBlockN : D) / 8;
    constexpr int kChunks = (kTokMajor ? D : kBlockN) * kPerLine;
    for (int i = tid; i < kChunks; i += kThreads) {
      const int line = i / kPerLine, c8 = (i % kPerLine) * 8;  // shared row, first column
      const int64_t key = r0 + (kTokMajor ? c8 : line);
      uint16_t* d = dst + line * L::kRow + c8;
      if (key < n) {
        copy16(d, kTokMajor ? src + key + line * sd : src + key * st + c8);
      } else {
        *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
      }
    }
  } else {
    constexpr int kElems = kBlockN * D;
    for (int i = tid; i < kElems; i += kThreads) {
      const int line = kTokMajor ? i / kBlockN : i / D;  // shared row
      const int col = kTokMajor ? i % kBlockN : i % D;
      const int key = kTokMajor ? col : line, dim = kTokMajor ? line : col;
      uint16_t val = 0;
      if (r0 + key < n) val = src[(r0 + key) * st + dim * sd];
      dst[line * L::kRow + col] = val;
    }
  }
}

template <typename T, int D, bool kTokMajor>
__global__ void __maxnreg__(Config<D>::kMaxRegs)
    area_attention_fwd_kernel(const KernelArgs args) {
  static_assert(D % 32 == 0 && D <= 128, "head_dim must be a multiple of 32");
  using L = Tile<D, kTokMajor>;
  constexpr int kBlockN = L::kBlockN, kBlockM = Config<D>::kBlockM;
  constexpr int kKS = D / 16;        // k-steps of the Q K^T product
  constexpr int kNB = kBlockN / 8;   // 8-key column blocks of S
  constexpr int kDB = D / 8;         // 8-dim column blocks of O
  __shared__ __align__(128) uint16_t Ks[kStages][L::kElems];
  __shared__ __align__(128) uint16_t Vs[kStages][L::kElems];

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
  const int mi = lane / 8, rr = lane % 8;  // ldmatrix: the matrix and row this lane addresses
  const int64_t m0 = int64_t(blockIdx.y) * kBlockM + warp * 16;  // this warp's first query row

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

  const int64_t num_tiles = (n + kBlockN - 1) / kBlockN;
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
    // +1], b1 8 dims further. One ldmatrix.x4 gives b0, b1 of two k-steps (32 dims): matrix mi
    // covers dims 8 mi .. 8 mi + 7 of the 32 and keys nb*8 .. +7.
    float s[kNB][4];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nb][i] = 0.f;
#pragma unroll
      for (int k32 = 0; k32 < D / 32; ++k32) {
        const int dim = k32 * 32 + mi * 8, key = nb * 8;
        uint32_t kb[4];
        if constexpr (kTokMajor) {  // [d][key]: rows are dims, read transposed
          ldmatrix_x4<true>(kb, Kt + (dim + rr) * L::kRow + key);
        } else {  // [key][d]: rows are keys
          ldmatrix_x4<false>(kb, Kt + (key + rr) * L::kRow + dim);
        }
        mma_16x8x16<T>(s[nb], qf[2 * k32], kb[0], kb[1]);
        mma_16x8x16<T>(s[nb], qf[2 * k32 + 1], kb[2], kb[3]);
      }
    }

    // scale into log2 units and mask keys past the end; s[nb][i] is key n0 + nb*8 + 2t + (i&1)
    // of row g (i < 2) or g + 8 (i >= 2).
    const int keys_left = n - n0 < kBlockN ? static_cast<int>(n - n0) : kBlockN;
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = nb * 8 + 2 * t + (i & 1);
        s[nb][i] = key < keys_left ? s[nb][i] * scale_log2 : -INFINITY;
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
    // the A fragment of a 16-key k-step, so P never leaves registers. B = V: b0 = V[key kk*16 + 2t,
    // +1][dim db*8 + g], b1 8 keys further. One ldmatrix.x4 gives b0, b1 of two dim blocks: matrix
    // mi covers keys kk*16 + 8 (mi & 1) .. +7 and dims (2 dp + mi / 2) * 8 .. +7.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                              pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kDB / 2; ++dp) {
        const int dim = (2 * dp + mi / 2) * 8, key = kk * 16 + (mi & 1) * 8;
        uint32_t vb[4];
        if constexpr (kTokMajor) {  // [d][key]: rows are dims
          ldmatrix_x4<false>(vb, Vt + (dim + rr) * L::kRow + key);
        } else {  // [key][d]: rows are keys, read transposed
          ldmatrix_x4<true>(vb, Vt + (key + rr) * L::kRow + dim);
        }
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

// The shared layout follows K: [d][key] when K's token axis has unit stride and its dim axis does
// not (the model's qkv), else [key][d] (the drop-in tensors, and views without a unit stride). V
// is staged the same way (with element loads if its own strides do not allow copies).
bool token_major(const y12_attention_params& p) { return p.k_st == 1 && p.k_sd != 1; }

// kVector when every 8-element chunk along the layout's contiguous dimension is one aligned
// 16-byte copy for every (batch, head, area): the base pointer, the batch and head strides and the
// other dimension's stride multiples of 8 elements, and for token chunks also the area's first
// token (tok0 = a * n, so n % 8 == 0; then a chunk is all inside the area or all outside).
int load_mode(bool tok_major, const void* base, int64_t sb, int64_t st, int64_t sh, int64_t sd,
              int64_t n) {
  if (!aligned16(base) || sb % 8 != 0 || sh % 8 != 0) return kScalar;
  if (tok_major) return st == 1 && sd % 8 == 0 && n % 8 == 0 ? kVector : kScalar;
  return sd == 1 && st % 8 == 0 ? kVector : kScalar;
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
  const bool tok_major = token_major(*p);
  args.mode_k = load_mode(tok_major, p->k, p->k_sb, p->k_st, p->k_sh, p->k_sd, args.n);
  args.mode_v = load_mode(tok_major, p->v, p->v_sb, p->v_st, p->v_sh, p->v_sd, args.n);
  args.vec_store = p->o_sd == 1 && (reinterpret_cast<uintptr_t>(p->o) & 3) == 0 &&
                   p->o_sb % 2 == 0 && p->o_sh % 2 == 0 && p->o_st % 2 == 0;
  const int64_t problems = p->batch * p->area * p->num_heads;
  const int block_m = p->head_dim == 32 ? Config<32>::kBlockM : Config<64>::kBlockM;
  const int64_t q_tiles = (args.n + block_m - 1) / block_m;
  if (problems > 2147483647LL || q_tiles > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(q_tiles));
  return p->dtype == Y12_FLOAT16 ? launch_for<__half>(args, tok_major, grid, stream)
                                 : launch_for<__nv_bfloat16>(args, tok_major, grid, stream);
}

extern "C" const char* y12_error_string(cudaError_t err) { return cudaGetErrorString(err); }
