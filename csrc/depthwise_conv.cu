// Depthwise k x k conv (the 7x7 position perceiver of YOLOv12's AAttn), stride 1, 'same' zero
// padding, bias, written to or ADDED onto an output ("x + pe(v)"), NCHW with any strides.
//
// A CTA computes a kTileH x kTileW = 32 x 32 output tile of one (batch, channel) plane: it stages
// the (32 + k - 1)^2 input halo (zeros outside the image) and the channel's k*k weights in shared
// memory as fp32, then each of its 256 threads computes one column x 4 consecutive rows, sliding
// down k + 3 input rows so each loaded value feeds up to 4 outputs. Lanes of a warp own 32
// consecutive columns, so shared reads are consecutive words (no bank conflicts) and global loads /
// stores of a row are coalesced. blockIdx.x = tile of the plane, blockIdx.y strides over the
// batch*channel planes (so any B*C, beyond the 65,535 limit of grid y).
//
// The input channel is addressed as (c / in_group) * in_sg + (c % in_group) * in_sc, which lets
// the fused AAttn path read v straight out of the model's qkv tensor (see yolov12_kernels.h).
// Memory-bound: per output element it reads ~1.4 inputs (halo; mostly L2 hits) and writes one.
#include "mma_utils.cuh"
#include "yolov12_kernels.h"

namespace {

using y12::from_float;
using y12::to_float;

constexpr int kTileW = 32;
constexpr int kTileH = 32;
constexpr int kRowsPerThread = 4;
constexpr int kThreads = kTileW * (kTileH / kRowsPerThread);  // 256
constexpr int kMaxK = 31;

// K > 0: kernel size fixed at compile time (fully unrolled; the YOLOv12 7x7). K == 0: any odd
// p.ksize up to kMaxK, read at run time.
//
// Launch bounds (256 threads, >= 3 CTAs/SM, i.e. <= 85 registers): a memory-bound kernel wants
// occupancy; without the minimum ptxas 13.0 picked 32-40 registers on sm_80-89 and spilled.
template <typename T, int K>
__global__ void __launch_bounds__(kThreads, 3) depthwise_conv_kernel(const y12_pe_params p,
                                                                  int tiles_x) {
  extern __shared__ float smem[];
  const int ks = K > 0 ? K : p.ksize;
  const int rad = ks / 2;
  const int halo_w = kTileW + ks - 1;
  const int halo_h = kTileH + ks - 1;
  float* w_s = smem;              // ks*ks weights
  float* in_s = smem + ks * ks;   // halo_h x halo_w inputs

  const int tid = threadIdx.x;
  const int lx = tid % kTileW;
  const int ly = (tid / kTileW) * kRowsPerThread;
  const int64_t x0 = int64_t(blockIdx.x % tiles_x) * kTileW;
  const int64_t y0 = int64_t(blockIdx.x / tiles_x) * kTileH;
  const int64_t planes = p.batch * p.channels;

  for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    const int64_t b = plane / p.channels;
    const int64_t c = plane % p.channels;
    const T* in = static_cast<const T*>(p.in) + b * p.in_sb + (c / p.in_group) * p.in_sg +
                  (c % p.in_group) * p.in_sc;
    T* out = static_cast<T*>(p.out) + b * p.out_sb + c * p.out_sc;

    __syncthreads();  // the previous plane's shared data is no longer read
    for (int i = tid; i < ks * ks; i += kThreads) w_s[i] = p.weight[c * ks * ks + i];
    for (int i = tid; i < halo_h * halo_w; i += kThreads) {
      const int hy = i / halo_w, hx = i % halo_w;
      const int64_t gy = y0 - rad + hy, gx = x0 - rad + hx;
      float val = 0.f;
      if (gy >= 0 && gy < p.height && gx >= 0 && gx < p.width)
        val = to_float<T>(in[gy * p.in_sh + gx * p.in_sw]);
      in_s[i] = val;
    }
    __syncthreads();

    const float bias = p.bias ? p.bias[c] : 0.f;
    float acc[kRowsPerThread];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) acc[r] = bias;
    // input row ly + i feeds output row ly + r through filter row i - r
    if constexpr (K > 0) {
#pragma unroll
      for (int i = 0; i < K + kRowsPerThread - 1; ++i) {
        const float* row = in_s + (ly + i) * halo_w + lx;
#pragma unroll
        for (int j = 0; j < K; ++j) {
          const float v = row[j];
#pragma unroll
          for (int r = 0; r < kRowsPerThread; ++r) {
            const int fy = i - r;  // resolved at compile time: no branch in the unrolled code
            if (fy >= 0 && fy < K) acc[r] = fmaf(w_s[fy * K + j], v, acc[r]);
          }
        }
      }
    } else {
      for (int i = 0; i < ks + kRowsPerThread - 1; ++i) {
        const float* row = in_s + (ly + i) * halo_w + lx;
        for (int j = 0; j < ks; ++j) {
          const float v = row[j];
#pragma unroll
          for (int r = 0; r < kRowsPerThread; ++r) {
            const int fy = i - r;
            if (fy >= 0 && fy < ks) acc[r] = fmaf(w_s[fy * ks + j], v, acc[r]);
          }
        }
      }
    }

    const int64_t x = x0 + lx;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int64_t y = y0 + ly + r;
      if (y < p.height && x < p.width) {
        T* dst = out + y * p.out_sh + x * p.out_sw;
        const float prev = p.accumulate ? to_float<T>(*dst) : 0.f;
        *dst = from_float<T>(prev + acc[r]);
      }
    }
  }
}

template <typename T>
cudaError_t launch(const y12_pe_params& p, cudaStream_t stream) {
  const int64_t tiles_x = (p.width + kTileW - 1) / kTileW;
  const int64_t tiles_y = (p.height + kTileH - 1) / kTileH;
  const int64_t planes = p.batch * p.channels;
  if (tiles_x * tiles_y > 2147483647LL) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(tiles_x * tiles_y),
                  static_cast<unsigned>(planes < 65535 ? planes : 65535));
  const int halo = kTileW + p.ksize - 1;  // square tile: same halo in both directions
  const size_t smem = sizeof(float) * (size_t(p.ksize) * p.ksize + size_t(halo) * halo);
  if (p.ksize == 7) {
    depthwise_conv_kernel<T, 7><<<grid, kThreads, smem, stream>>>(p, int(tiles_x));
  } else if (p.ksize == 3) {
    depthwise_conv_kernel<T, 3><<<grid, kThreads, smem, stream>>>(p, int(tiles_x));
  } else {
    depthwise_conv_kernel<T, 0><<<grid, kThreads, smem, stream>>>(p, int(tiles_x));
  }
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t y12_depthwise_conv_fwd(const y12_pe_params* p, cudaStream_t stream) {
  if (p == nullptr || !p->in || !p->out || !p->weight) return cudaErrorInvalidValue;
  if (p->ksize < 1 || p->ksize > kMaxK || p->ksize % 2 == 0) return cudaErrorInvalidValue;
  if (p->batch < 1 || p->channels < 1 || p->height < 1 || p->width < 1 || p->in_group < 1)
    return cudaErrorInvalidValue;
  // (32 + 30)^2 floats + 31^2 weights = 19.2 KB at most: always under the 48 KB static limit
  switch (p->dtype) {
    case Y12_FLOAT32: return launch<float>(*p, stream);
    case Y12_FLOAT16: return launch<__half>(*p, stream);
    case Y12_BFLOAT16: return launch<__nv_bfloat16>(*p, stream);
  }
  return cudaErrorInvalidValue;
}
