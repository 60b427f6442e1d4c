// yolov12_kernels C API: the CUDA kernels of csrc/ behind plain C launchers.
//
// No torch here: callers pass raw device pointers, shapes, strides (in ELEMENTS, int64) and a
// stream. Every launcher validates what it can see (shapes, dtype, head_dim, grid limits), launches
// on `stream`, and returns the launch error (cudaGetLastError) or cudaSuccess. Nothing here
// synchronizes. The torch binding (bindings.cpp) and the standalone CMake library both use this.
#ifndef YOLOV12_KERNELS_H_
#define YOLOV12_KERNELS_H_

#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  Y12_FLOAT32 = 0,
  Y12_FLOAT16 = 1,
  Y12_BFLOAT16 = 2
} y12_dtype;

// Area attention forward: for every batch b, area a and head h,
//   O[b, tokens of a, h, :] = softmax(Q K^T * scale) V   over the n = N / area tokens of area a.
// Token t of area a is global token a*n + t. Element (b, token, h, j) of X in {q, k, v, o} lives at
//   X + b*X_sb + token*X_st + h*X_sh + j*X_sd.
// Both YOLOv12 layouts are just strides:
//   * drop-in (B, N, heads, d) tensors: their four strides;
//   * model qkv (B, 3C, H, W) contiguous, C = heads*d, per head [q|k|v]: q = qkv, k = qkv + d*HW,
//     v = qkv + 2d*HW, sb = 3C*HW, st = 1, sh = 3d*HW, sd = HW; the (B, C, H, W) output: sb = C*HW,
//     st = 1, sh = d*HW, sd = HW.
// dtype: Y12_FLOAT16 (sm_75+) or Y12_BFLOAT16 (kernels compiled for sm_80+ only, see
// y12_attention_ptx_arch). head_dim: 32 or 64. Accumulation in fp32, P rounded to the input dtype
// before P V (as flash-attention does).
typedef struct {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  int64_t q_sb, q_st, q_sh, q_sd;
  int64_t k_sb, k_st, k_sh, k_sd;
  int64_t v_sb, v_st, v_sh, v_sd;
  int64_t o_sb, o_st, o_sh, o_sd;
  int64_t batch;
  int64_t num_tokens;  // N, a multiple of area
  int64_t num_heads;
  int64_t area;
  int head_dim;
  float scale;
  y12_dtype dtype;
} y12_attention_params;

cudaError_t y12_area_attention_fwd(const y12_attention_params* p, cudaStream_t stream);

// The PTX architecture (e.g. 75, 80, 90) the attention kernel for `dtype` was compiled for, as
// the driver will run it on the current device (cudaFuncAttributes::ptxVersion). bf16 needs >= 80:
// a binary with only sm_75 code (or compute_75 PTX JIT-compiled on a newer GPU) has no bf16 path.
cudaError_t y12_attention_ptx_arch(y12_dtype dtype, int* arch);

// Depthwise k x k conv, stride 1, 'same' zero padding, with bias, on (B, C, H, W) (any strides):
//   out[b, c, y, x] (+)= bias[c] + sum_{i,j} weight[c, i, j] * in[b, c, y + i - k/2, x + j - k/2]
// `accumulate` != 0 adds onto out (the "x + pe(v)" of AAttn), else overwrites it.
// Input channel c is read at  in + b*in_sb + (c / in_group)*in_sg + (c % in_group)*in_sc
// (+ y*in_sh + x*in_sw): a plain tensor has in_group = C (in_sg unused); v read straight from the
// model's qkv has in_group = head_dim, in_sg = 3*head_dim*sC, in_sc = sC (qkv's channel stride:
// HW in NCHW, 1 in channels-last), in = qkv + 2*head_dim*sC.
// Where channels have unit stride in both in and out (in_sc == out_sc == 1: channels-last) and
// k is 3 or 7, the kernel reads and writes 8 channels at a time; elsewhere it walks image rows.
// weight: (C, k, k) contiguous, bias: (C,) or NULL, both of `param_dtype` (fp32/fp16/bf16, read
// as they are and widened in the kernel: the model's own weights, no converted copy).
// in/out: `dtype` (fp32/fp16/bf16). ksize: odd, 1..31. Accumulation in fp32.
typedef struct {
  const void* in;
  void* out;
  const void* weight;
  const void* bias;
  int64_t in_sb, in_sg, in_sc, in_sh, in_sw;
  int64_t in_group;
  int64_t out_sb, out_sc, out_sh, out_sw;
  int64_t batch, channels, height, width;
  int ksize;
  int accumulate;
  y12_dtype dtype;
  y12_dtype param_dtype;
} y12_pe_params;

cudaError_t y12_depthwise_conv_fwd(const y12_pe_params* p, cudaStream_t stream);

// The CUDA runtime's text for an error code (cudaGetErrorString): the torch binding calls no CUDA
// runtime function itself, so it can be built against stub launchers on a machine without CUDA.
const char* y12_error_string(cudaError_t err);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // YOLOV12_KERNELS_H_
