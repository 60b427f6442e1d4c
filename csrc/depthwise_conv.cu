// Depthwise k x k conv (the 7x7 position perceiver of YOLOv12's AAttn), stride 1, 'same' zero
// padding, bias, written to or ADDED onto an output ("x + pe(v)"), (B, C, H, W) with any strides.
// Two kernels: one that walks image rows (any strides: NCHW planes), and one for channels-last
// tensors (channels of unit stride, the fused path's layout) that walks channels; see each.
//
// The weights and bias are read in their own dtype (fp32, fp16 or bf16: `param_dtype`) and widened
// in the kernel, so a call converts nothing on the host side (no cast launch per call).
//
// The row kernel:
// Memory-bound (per output: one input read, one output write, one output read when adding), so
// the kernel is laid out for the bytes, not the FMAs:
// * a tile is up to 64 x 64 outputs of one (batch, channel) plane, in practice whole planes at
//   YOLOv12's sizes (40 x 40, 20 x 20): no tile wastes threads on a ragged 32-wide grid, and the
//   halo is re-read only at tile borders;
// * a CTA takes several tiles (of consecutive planes) when they are small, so its threads are busy:
//   one thread per 4 x 4 output block of a tile;
// * the input tile plus halo is staged in shared memory as fp32, loaded in chunks of 8 elements
//   along a row: one 16-byte load (two for fp32) when the chunk is inside the row and 16-byte
//   aligned in global memory, else 8 guarded scalar loads (zero outside the image);
// * each thread keeps the channel's k*k weights in registers (k = 7 and 3 compiled with the loops
//   unrolled; any other odd k up to 31 reads them from shared memory), slides down its 4 + k - 1
//   input rows reading each as 16-byte shared loads, and feeds every value to up to 4 x 4 outputs;
// * outputs are stored 4 at a time (8 or 16 bytes) where the row is unit-stride and aligned.
//
// The input channel is addressed as (c / in_group) * in_sg + (c % in_group) * in_sc, which lets
// the fused AAttn path read v straight out of the model's qkv tensor (see yolov12_kernels.h).
#include "mma_utils.cuh"
#include "yolov12_kernels.h"

namespace {

using y12::from_float;
using y12::to_float;

constexpr int kMaxThreads = 256;
constexpr int kRows = 4;      // output rows per thread
constexpr int kCols = 4;      // output columns per thread
constexpr int kMaxTile = 64;  // tile rows and columns at most
constexpr int kChunk = 8;     // elements per global load chunk (16 bytes of fp16)
constexpr int kMaxK = 31;
constexpr size_t kMaxSmem = 48 * 1024;

// Element i of a weight or bias array of dtype `dtype`, as fp32 (a launch-uniform branch).
__device__ __forceinline__ float load_param(const void* base, y12_dtype dtype, int64_t i) {
  switch (dtype) {
    case Y12_FLOAT16: return to_float<__half>(static_cast<const __half*>(base)[i]);
    case Y12_BFLOAT16: return to_float<__nv_bfloat16>(static_cast<const __nv_bfloat16*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// 8 consecutive elements at a 16-byte aligned `src` as fp32: one 16-byte load (two for fp32).
template <typename T>
__device__ __forceinline__ void load8(const T* src, float (&v)[kChunk]) {
  uint4 raw[sizeof(T) * kChunk / 16];
#pragma unroll
  for (int i = 0; i < int(sizeof(raw) / 16); ++i) raw[i] = reinterpret_cast<const uint4*>(src)[i];
  const T* e = reinterpret_cast<const T*>(raw);
#pragma unroll
  for (int j = 0; j < kChunk; ++j) v[j] = to_float<T>(e[j]);
}

template <typename T>
__device__ __forceinline__ void store8(T* dst, const float (&v)[kChunk]) {
  __align__(16) T e[kChunk];
#pragma unroll
  for (int j = 0; j < kChunk; ++j) e[j] = from_float<T>(v[j]);
#pragma unroll
  for (int i = 0; i < int(sizeof(e) / 16); ++i)
    reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(e)[i];
}

// How the planes are cut into tiles and tiles into CTAs (pe_tiling, on the host), and where a
// tile lives in shared memory. Shared row s, column c of a tile holds image row y0 - rad + s,
// column x0 - pad + c (zero outside the image); `pad` is a multiple of 8 (chunk stores stay
// 32-byte aligned) and >= rad. A thread's 4 output columns x0 + 4 cx .. + 3 need columns
// 4 cx + pad - rad .. 4 cx + pad + 3 + rad, read as float4s from column 4 cx + pad - lead
// (lead = rad rounded up to 4).
struct Tiling {
  int tile_h, tile_w;   // output tile (tile_w a multiple of kCols)
  int tiles_x, tiles_y; // tiles per plane
  int items;            // threads per tile: ceil(tile_h / kRows) * (tile_w / kCols)
  int tiles_per_cta;
  int rad, pad, lead;
  int rows, row_w;      // shared tile: rows x row_w floats (row_w a multiple of 8)
  int64_t tiles;        // in the whole launch
};

int ceil_div(int a, int b) { return (a + b - 1) / b; }

Tiling pe_tiling(const y12_pe_params& p) {
  Tiling t;
  t.rad = p.ksize / 2;
  t.tile_w = static_cast<int>(p.width < kMaxTile ? ceil_div(int(p.width), kCols) * kCols : kMaxTile);
  t.tile_h = static_cast<int>(p.height < kMaxTile ? p.height : kMaxTile);
  t.tiles_x = static_cast<int>((p.width + t.tile_w - 1) / t.tile_w);
  t.tiles_y = static_cast<int>((p.height + t.tile_h - 1) / t.tile_h);
  t.items = ceil_div(t.tile_h, kRows) * (t.tile_w / kCols);
  t.pad = ceil_div(t.rad, kChunk) * kChunk;
  t.lead = ceil_div(t.rad, 4) * 4;
  t.rows = ceil_div(t.tile_h, kRows) * kRows + 2 * t.rad;  // every row a thread reads is loaded
  t.row_w = ceil_div(t.tile_w + t.pad + t.lead, kChunk) * kChunk;
  const size_t tile_bytes = sizeof(float) * (size_t(t.rows) * t.row_w + size_t(p.ksize) * p.ksize);
  const int by_threads = kMaxThreads / t.items;
  const int by_smem = static_cast<int>(kMaxSmem / tile_bytes);
  t.tiles_per_cta = by_threads < by_smem ? by_threads : by_smem;
  if (t.tiles_per_cta < 1) t.tiles_per_cta = 1;
  t.tiles = p.batch * p.channels * t.tiles_y * t.tiles_x;
  return t;
}

// One chunk of 8 consecutive elements of an input row into 8 shared floats (zero outside the
// image). `row` points at image column 0 of the row; x is the chunk's first image column.
template <typename T>
__device__ __forceinline__ void load_chunk(const T* row, int64_t x, int64_t width, int64_t sw,
                                           float* dst) {
  float v[kChunk];
  const T* src = row + x * sw;
  if (x >= 0 && x + kChunk <= width && sw == 1 &&
      (reinterpret_cast<uintptr_t>(src) & 15) == 0) {
    load8<T>(src, v);
  } else {
#pragma unroll
    for (int j = 0; j < kChunk; ++j)
      v[j] = (x + j >= 0 && x + j < width) ? to_float<T>(row[(x + j) * sw]) : 0.f;
  }
  reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

// 4 consecutive elements of a row at `ptr` (stride sw, `valid` of them inside the image) as one
// 8- or 16-byte access when `vec`, else element by element.
template <typename T>
__device__ __forceinline__ bool vec4_ok(const T* ptr, int64_t sw, int valid) {
  return valid == kCols && sw == 1 &&
         (reinterpret_cast<uintptr_t>(ptr) & (sizeof(T) * kCols - 1)) == 0;
}

template <typename T>
__device__ __forceinline__ void load4(const T* src, int64_t sw, int valid, bool vec,
                                      float (&v)[kCols]) {
  if (vec) {
    __align__(16) T e[kCols];
    if constexpr (sizeof(T) == 4) *reinterpret_cast<float4*>(e) = *reinterpret_cast<const float4*>(src);
    else *reinterpret_cast<uint2*>(e) = *reinterpret_cast<const uint2*>(src);
#pragma unroll
    for (int j = 0; j < kCols; ++j) v[j] = to_float<T>(e[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kCols; ++j) v[j] = j < valid ? to_float<T>(src[j * sw]) : 0.f;
  }
}

template <typename T>
__device__ __forceinline__ void store4(T* dst, int64_t sw, int valid, bool vec,
                                       const float (&v)[kCols]) {
  if (vec) {
    __align__(16) T e[kCols];
#pragma unroll
    for (int j = 0; j < kCols; ++j) e[j] = from_float<T>(v[j]);
    if constexpr (sizeof(T) == 4) *reinterpret_cast<float4*>(dst) = *reinterpret_cast<const float4*>(e);
    else *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(e);
  } else {
#pragma unroll
    for (int j = 0; j < kCols; ++j)
      if (j < valid) dst[j * sw] = from_float<T>(v[j]);
  }
}

// K > 0: kernel size fixed at compile time (weights in registers, loops unrolled; the YOLOv12
// 7x7). K == 0: any odd p.ksize up to kMaxK, weights read from shared memory.
//
// Launch bounds (256 threads, >= 2 CTAs/SM, i.e. <= 128 registers): the 49 weights, 16
// accumulators and a 12-float row window fit without spilling.
template <typename T, int K>
__global__ void __launch_bounds__(kMaxThreads, 2)
    depthwise_conv_kernel(const y12_pe_params p, const Tiling t) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int ks = K > 0 ? K : p.ksize;
  const int tile_floats = t.rows * t.row_w;
  float* w_s = smem + t.tiles_per_cta * tile_floats;  // K == 0: the k*k weights of each tile

  // 1. every thread helps load every tile of the CTA: chunks over (tile, row, chunk)
  const int chunks_per_row = t.row_w / kChunk;
  const int chunks = t.tiles_per_cta * t.rows * chunks_per_row;
  for (int i = threadIdx.x; i < chunks; i += blockDim.x) {
    const int slot = i / (t.rows * chunks_per_row);
    const int rem = i % (t.rows * chunks_per_row);
    const int s = rem / chunks_per_row, ch = rem % chunks_per_row;
    const int64_t tile = int64_t(blockIdx.x) * t.tiles_per_cta + slot;
    if (tile >= t.tiles) continue;
    const int64_t plane = tile / (int64_t(t.tiles_y) * t.tiles_x);
    const int64_t txy = tile % (int64_t(t.tiles_y) * t.tiles_x);
    const int64_t y = (txy / t.tiles_x) * t.tile_h - t.rad + s;
    const int64_t x = (txy % t.tiles_x) * t.tile_w - t.pad + ch * kChunk;
    float* dst = smem + slot * tile_floats + s * t.row_w + ch * kChunk;
    if (y < 0 || y >= p.height) {
      reinterpret_cast<float4*>(dst)[0] = make_float4(0.f, 0.f, 0.f, 0.f);
      reinterpret_cast<float4*>(dst)[1] = make_float4(0.f, 0.f, 0.f, 0.f);
      continue;
    }
    const int64_t b = plane / p.channels, c = plane % p.channels;
    const T* row = static_cast<const T*>(p.in) + b * p.in_sb + (c / p.in_group) * p.in_sg +
                   (c % p.in_group) * p.in_sc + y * p.in_sh;
    load_chunk<T>(row, x, p.width, p.in_sw, dst);
  }
  if (K == 0) {
    for (int i = threadIdx.x; i < t.tiles_per_cta * ks * ks; i += blockDim.x) {
      const int64_t tile = int64_t(blockIdx.x) * t.tiles_per_cta + i / (ks * ks);
      const int64_t c = (tile / (int64_t(t.tiles_y) * t.tiles_x)) % p.channels;
      w_s[i] = tile < t.tiles ? load_param(p.weight, p.param_dtype, c * ks * ks + i % (ks * ks))
                              : 0.f;
    }
  }
  __syncthreads();

  // 2. one thread per 4 x 4 output block
  const int slot = threadIdx.x / t.items, item = threadIdx.x % t.items;
  const int64_t tile = int64_t(blockIdx.x) * t.tiles_per_cta + slot;
  if (slot >= t.tiles_per_cta || tile >= t.tiles) return;
  const int64_t plane = tile / (int64_t(t.tiles_y) * t.tiles_x);
  const int64_t txy = tile % (int64_t(t.tiles_y) * t.tiles_x);
  const int64_t y0 = (txy / t.tiles_x) * t.tile_h, x0 = (txy % t.tiles_x) * t.tile_w;
  const int64_t b = plane / p.channels, c = plane % p.channels;
  const int ry = item / (t.tile_w / kCols), cx = item % (t.tile_w / kCols);
  // shared column of the first float4 this thread reads in each row; window value m is image
  // column x0 + 4 cx - lead + m, and output column xx, tap j reads m = xx + j + lead - rad
  const float* win = smem + slot * tile_floats + (kRows * ry) * t.row_w + kCols * cx + t.pad -
                     t.lead;

  const float bias = p.bias ? load_param(p.bias, p.param_dtype, c) : 0.f;
  float acc[kRows][kCols];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int xx = 0; xx < kCols; ++xx) acc[r][xx] = bias;

  if constexpr (K > 0) {
    constexpr int kRad = K / 2, kLead = (kRad + 3) / 4 * 4, kWin = 2 * kLead + 4;
    float w[K * K];
#pragma unroll
    for (int i = 0; i < K * K; ++i) w[i] = load_param(p.weight, p.param_dtype, c * K * K + i);
#pragma unroll
    for (int i = 0; i < kRows + K - 1; ++i) {  // input row i feeds output row r via filter row i - r
      float f[kWin];
#pragma unroll
      for (int v = 0; v < kWin / 4; ++v) {
        const float4 q = reinterpret_cast<const float4*>(win + i * t.row_w)[v];
        f[4 * v] = q.x; f[4 * v + 1] = q.y; f[4 * v + 2] = q.z; f[4 * v + 3] = q.w;
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int fy = i - r;  // resolved at compile time: no branch in the unrolled code
        if (fy < 0 || fy >= K) continue;
#pragma unroll
        for (int j = 0; j < K; ++j)
#pragma unroll
          for (int xx = 0; xx < kCols; ++xx)
            acc[r][xx] = fmaf(w[fy * K + j], f[xx + j + kLead - kRad], acc[r][xx]);
      }
    }
  } else {
    const float* wt = w_s + slot * ks * ks;
    for (int i = 0; i < kRows + ks - 1; ++i) {
      const float* f = win + i * t.row_w;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int fy = i - r;
        if (fy < 0 || fy >= ks) continue;
        for (int j = 0; j < ks; ++j) {
          const float wv = wt[fy * ks + j];
#pragma unroll
          for (int xx = 0; xx < kCols; ++xx)
            acc[r][xx] = fmaf(wv, f[xx + j + t.lead - t.rad], acc[r][xx]);
        }
      }
    }
  }

  const int64_t x = x0 + kCols * cx;
  const int64_t w_left = p.width - x;
  const int valid = w_left >= kCols ? kCols : static_cast<int>(w_left);
  if (valid <= 0) return;
  T* out = static_cast<T*>(p.out) + b * p.out_sb + c * p.out_sc + x * p.out_sw;
  const int64_t y = y0 + kRows * ry;
  const int rows_left = static_cast<int>(
      p.height - y < t.tile_h - kRows * ry ? p.height - y : t.tile_h - kRows * ry);
  // the previous values first (accumulate), all in flight at once, then the stores
  float prev[kRows][kCols];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    T* o = out + (y + r) * p.out_sh;
    if (r < rows_left && p.accumulate) {
      load4<T>(o, p.out_sw, valid, vec4_ok<T>(o, p.out_sw, valid), prev[r]);
    } else {
#pragma unroll
      for (int xx = 0; xx < kCols; ++xx) prev[r][xx] = 0.f;
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows_left) break;
    T* o = out + (y + r) * p.out_sh;
#pragma unroll
    for (int xx = 0; xx < kCols; ++xx) prev[r][xx] += acc[r][xx];
    store4<T>(o, p.out_sw, valid, vec4_ok<T>(o, p.out_sw, valid), prev[r]);
  }
}

// ---------------------------------------------------------------------------------------------
// The channels-last kernel: channels have unit stride in both in and out (v read straight out of
// a channels-last qkv, and the channels-last output of the fused path; any channels-last tensor).
// The row kernel reads such an input element by element (its row stride is C or 3C).
//
// One thread computes kChunk = 8 consecutive channels of kStrip consecutive output pixels of one
// row: it walks the k input rows, each as kStrip + k - 1 loads of 8 channels (one 16-byte load
// for fp16/bf16, two for fp32), feeding each loaded pixel to the up to kStrip outputs it touches,
// then adds onto / stores the outputs 8 channels at a time. Neighbouring threads take the next
// channel chunks of the same pixels (a warp reads whole runs of channels), then the next strips;
// the halo the strips share is re-read through L1. A CTA covers up to kMaxChunks chunks (64
// channels), whose k*k weights it stages in shared memory as fp32, tap-major ([tap][channel]), so
// a thread reads its 8 weights of a tap as two float4s.
//
// Taken only where every access can be a 16-byte one (nhwc_ok): C and the channel group a
// multiple of 8, 16-byte aligned bases, every stride a multiple of 8 elements, k = 3 or 7.
// Everything else goes to the row kernel, which handles any strides.
constexpr int kStrip = 4;      // output pixels per thread (consecutive along a row)
constexpr int kMaxChunks = 8;  // channel chunks per CTA

struct NhwcTiling {
  int chunks;              // channel chunks per CTA
  int strips;              // strips per CTA (threads = chunks * strips)
  int64_t strips_per_row;  // ceil(W / kStrip)
  int64_t strips_total;    // B * H * strips_per_row
};

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

bool nhwc_ok(const y12_pe_params& p) {
  if (p.in_sc != 1 || p.out_sc != 1 || (p.ksize != 3 && p.ksize != 7)) return false;
  if (p.channels % kChunk != 0 || p.in_group % kChunk != 0) return false;
  const int64_t strides[] = {p.in_sb, p.in_sg, p.in_sh, p.in_sw, p.out_sb, p.out_sh, p.out_sw};
  for (int64_t s : strides)
    if (s % kChunk != 0) return false;
  return aligned16(p.in) && aligned16(p.out);
}

NhwcTiling nhwc_tiling(const y12_pe_params& p) {
  NhwcTiling t;
  const int64_t chunks = p.channels / kChunk;
  t.chunks = static_cast<int>(chunks < kMaxChunks ? chunks : kMaxChunks);
  t.strips = kMaxThreads / t.chunks;
  t.strips_per_row = (p.width + kStrip - 1) / kStrip;
  t.strips_total = p.batch * p.height * t.strips_per_row;
  return t;
}

template <typename T, int K>
__global__ void __launch_bounds__(kMaxThreads, 2)
    depthwise_conv_nhwc_kernel(const y12_pe_params p, const NhwcTiling t) {
  constexpr int kRad = K / 2;
  constexpr int kCtaChannels = kMaxChunks * kChunk;
  __shared__ __align__(16) float w_s[K * K][kCtaChannels];

  const int64_t c_cta = int64_t(blockIdx.y) * t.chunks * kChunk;  // the CTA's first channel
  // 1. the CTA's weights, tap-major: (C, k, k) holds consecutive channels' taps consecutively,
  // so consecutive threads read consecutive elements
  const int cta_channels = t.chunks * kChunk;
  for (int i = threadIdx.x; i < cta_channels * K * K; i += blockDim.x) {
    const int ch = i / (K * K), tap = i % (K * K);
    const int64_t c = c_cta + ch;
    w_s[tap][ch] = c < p.channels ? load_param(p.weight, p.param_dtype, c * K * K + tap) : 0.f;
  }
  __syncthreads();

  // 2. this thread's 8 channels and kStrip pixels
  const int chunk = threadIdx.x % t.chunks, slot = threadIdx.x / t.chunks;
  const int64_t strip = int64_t(blockIdx.x) * t.strips + slot;
  const int ch0 = chunk * kChunk;
  const int64_t c0 = c_cta + ch0;
  if (slot >= t.strips || strip >= t.strips_total || c0 >= p.channels) return;
  const int64_t row = strip / t.strips_per_row;  // b * H + y
  const int64_t x0 = (strip % t.strips_per_row) * kStrip;
  const int64_t b = row / p.height, y = row % p.height;

  float acc[kStrip][kChunk];
#pragma unroll
  for (int cc = 0; cc < kChunk; ++cc) {
    const float bias = p.bias ? load_param(p.bias, p.param_dtype, c0 + cc) : 0.f;
#pragma unroll
    for (int j = 0; j < kStrip; ++j) acc[j][cc] = bias;
  }

  const T* in = static_cast<const T*>(p.in) + b * p.in_sb + (c0 / p.in_group) * p.in_sg +
                (c0 % p.in_group);
  for (int ky = 0; ky < K; ++ky) {
    const int64_t yy = y + ky - kRad;
    if (yy < 0 || yy >= p.height) continue;
    float w[K][kChunk];  // this kernel row's taps of the 8 channels
#pragma unroll
    for (int kx = 0; kx < K; ++kx) {
      const float4* src = reinterpret_cast<const float4*>(&w_s[ky * K + kx][ch0]);
      const float4 lo = src[0], hi = src[1];
      w[kx][0] = lo.x; w[kx][1] = lo.y; w[kx][2] = lo.z; w[kx][3] = lo.w;
      w[kx][4] = hi.x; w[kx][5] = hi.y; w[kx][6] = hi.z; w[kx][7] = hi.w;
    }
    const T* in_row = in + yy * p.in_sh;
    // input column x0 + ix - rad feeds output j through tap kx = ix - j (zero padding: a column
    // outside the image feeds nothing)
#pragma unroll
    for (int ix = 0; ix < kStrip + K - 1; ++ix) {
      const int64_t xx = x0 + ix - kRad;
      if (xx < 0 || xx >= p.width) continue;
      float f[kChunk];
      load8<T>(in_row + xx * p.in_sw, f);
#pragma unroll
      for (int j = 0; j < kStrip; ++j) {
        const int kx = ix - j;  // resolved at compile time
        if (kx < 0 || kx >= K) continue;
#pragma unroll
        for (int cc = 0; cc < kChunk; ++cc) acc[j][cc] = fmaf(w[kx][cc], f[cc], acc[j][cc]);
      }
    }
  }

  T* out = static_cast<T*>(p.out) + b * p.out_sb + c0 + y * p.out_sh;
#pragma unroll
  for (int j = 0; j < kStrip; ++j) {
    const int64_t x = x0 + j;
    if (x >= p.width) break;
    T* o = out + x * p.out_sw;
    if (p.accumulate) {
      float prev[kChunk];
      load8<T>(o, prev);
#pragma unroll
      for (int cc = 0; cc < kChunk; ++cc) acc[j][cc] += prev[cc];
    }
    store8<T>(o, acc[j]);
  }
}

template <typename T>
cudaError_t launch_nhwc(const y12_pe_params& p, cudaStream_t stream) {
  const NhwcTiling t = nhwc_tiling(p);
  const int64_t ctas_x = (t.strips_total + t.strips - 1) / t.strips;
  const int64_t cta_channels = int64_t(t.chunks) * kChunk;
  const int64_t ctas_y = (p.channels + cta_channels - 1) / cta_channels;
  if (ctas_x > 2147483647LL || ctas_y > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(ctas_x), static_cast<unsigned>(ctas_y));
  const int threads = t.chunks * t.strips;
  if (p.ksize == 7) {
    depthwise_conv_nhwc_kernel<T, 7><<<grid, threads, 0, stream>>>(p, t);
  } else {
    depthwise_conv_nhwc_kernel<T, 3><<<grid, threads, 0, stream>>>(p, t);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch(const y12_pe_params& p, cudaStream_t stream) {
  if (nhwc_ok(p)) return launch_nhwc<T>(p, stream);
  const Tiling t = pe_tiling(p);
  const int64_t ctas = (t.tiles + t.tiles_per_cta - 1) / t.tiles_per_cta;
  if (ctas > 2147483647LL) return cudaErrorInvalidConfiguration;
  const int threads = ceil_div(t.tiles_per_cta * t.items, 32) * 32;
  const size_t smem = sizeof(float) * t.tiles_per_cta *
                      (size_t(t.rows) * t.row_w + size_t(p.ksize) * p.ksize);
  const dim3 grid(static_cast<unsigned>(ctas));
  if (p.ksize == 7) {
    depthwise_conv_kernel<T, 7><<<grid, threads, smem, stream>>>(p, t);
  } else if (p.ksize == 3) {
    depthwise_conv_kernel<T, 3><<<grid, threads, smem, stream>>>(p, t);
  } else {
    depthwise_conv_kernel<T, 0><<<grid, threads, smem, stream>>>(p, t);
  }
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t y12_depthwise_conv_fwd(const y12_pe_params* p, cudaStream_t stream) {
  if (p == nullptr || !p->in || !p->out || !p->weight) return cudaErrorInvalidValue;
  if (p->ksize < 1 || p->ksize > kMaxK || p->ksize % 2 == 0) return cudaErrorInvalidValue;
  if (p->batch < 1 || p->channels < 1 || p->height < 1 || p->width < 1 || p->in_group < 1)
    return cudaErrorInvalidValue;
  if (p->param_dtype != Y12_FLOAT32 && p->param_dtype != Y12_FLOAT16 &&
      p->param_dtype != Y12_BFLOAT16)
    return cudaErrorInvalidValue;
  // smem per tile at most: (64 + 30) rows x 96 floats + 31^2 weights = 39.9 KB, under 48 KB
  switch (p->dtype) {
    case Y12_FLOAT32: return launch<float>(*p, stream);
    case Y12_FLOAT16: return launch<__half>(*p, stream);
    case Y12_BFLOAT16: return launch<__nv_bfloat16>(*p, stream);
  }
  return cudaErrorInvalidValue;
}
