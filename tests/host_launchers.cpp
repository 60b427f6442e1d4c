// Plain C++ implementations of the C API of csrc/yolov12_kernels.h, for the host build of
// csrc/bindings.cpp (-DY12_HOST_TEST, tests/test_cuda_backend.py): "device" pointers are host
// pointers, nothing runs on a GPU. They follow the contract written in yolov12_kernels.h (strides
// in elements, the in_group addressing of the depthwise conv, accumulate), so comparing the host
// build's outputs with yolov12_kernels.reference checks what the binding passes to the kernels:
// pointers, strides and flags of both layouts and of the fused qkv path.
//
// Environment knobs (read at each call): Y12_HOST_TEST_PTX_ARCH (default 80) is the arch
// y12_attention_ptx_arch reports, e.g. 75 to see bf16 refused; Y12_HOST_TEST_FAIL=1 makes every
// launcher fail, to see a launch error reported.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "yolov12_kernels.h"

namespace {

double load(const void* base, int64_t idx, y12_dtype dtype) {
  switch (dtype) {
    case Y12_FLOAT32: return static_cast<const float*>(base)[idx];
    case Y12_FLOAT16: return static_cast<float>(static_cast<const c10::Half*>(base)[idx]);
    case Y12_BFLOAT16: return static_cast<float>(static_cast<const c10::BFloat16*>(base)[idx]);
  }
  return NAN;
}

void store(void* base, int64_t idx, double value, y12_dtype dtype) {
  const float f = static_cast<float>(value);
  switch (dtype) {
    case Y12_FLOAT32: static_cast<float*>(base)[idx] = f; break;
    case Y12_FLOAT16: static_cast<c10::Half*>(base)[idx] = c10::Half(f); break;
    case Y12_BFLOAT16: static_cast<c10::BFloat16*>(base)[idx] = c10::BFloat16(f); break;
  }
}

bool fail_requested() {
  const char* s = std::getenv("Y12_HOST_TEST_FAIL");
  return s != nullptr && std::strcmp(s, "1") == 0;
}

}  // namespace

extern "C" cudaError_t y12_attention_ptx_arch(y12_dtype dtype, int* arch) {
  (void)dtype;
  if (arch == nullptr) return cudaErrorInvalidValue;
  const char* s = std::getenv("Y12_HOST_TEST_PTX_ARCH");
  *arch = s ? std::atoi(s) : 80;
  return cudaSuccess;
}

extern "C" cudaError_t y12_area_attention_fwd(const y12_attention_params* p, cudaStream_t) {
  if (fail_requested()) return cudaErrorInvalidConfiguration;
  if (p == nullptr || !p->q || !p->k || !p->v || !p->o) return cudaErrorInvalidValue;
  if ((p->head_dim != 32 && p->head_dim != 64) || p->area < 1 || p->num_tokens % p->area != 0)
    return cudaErrorInvalidValue;
  const int64_t n = p->num_tokens / p->area;
  const int d = p->head_dim;
  std::vector<double> s(n), acc(d);
  for (int64_t b = 0; b < p->batch; ++b)
    for (int64_t a = 0; a < p->area; ++a)
      for (int64_t h = 0; h < p->num_heads; ++h)
        for (int64_t i = 0; i < n; ++i) {
          const int64_t qi = a * n + i;
          double mx = -INFINITY;
          for (int64_t j = 0; j < n; ++j) {
            const int64_t kj = a * n + j;
            double dot = 0;
            for (int c = 0; c < d; ++c)
              dot += load(p->q, b * p->q_sb + qi * p->q_st + h * p->q_sh + c * p->q_sd, p->dtype) *
                     load(p->k, b * p->k_sb + kj * p->k_st + h * p->k_sh + c * p->k_sd, p->dtype);
            s[j] = dot * p->scale;
            mx = std::fmax(mx, s[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
          for (int c = 0; c < d; ++c) acc[c] = 0;
          for (int64_t j = 0; j < n; ++j) {
            const int64_t vj = a * n + j;
            for (int c = 0; c < d; ++c)
              acc[c] += s[j] / sum *
                        load(p->v, b * p->v_sb + vj * p->v_st + h * p->v_sh + c * p->v_sd, p->dtype);
          }
          for (int c = 0; c < d; ++c)
            store(p->o, b * p->o_sb + qi * p->o_st + h * p->o_sh + c * p->o_sd, acc[c], p->dtype);
        }
  return cudaSuccess;
}

extern "C" cudaError_t y12_depthwise_conv_fwd(const y12_pe_params* p, cudaStream_t) {
  if (fail_requested()) return cudaErrorInvalidConfiguration;
  if (p == nullptr || !p->in || !p->out || !p->weight || p->ksize % 2 == 0 || p->in_group < 1)
    return cudaErrorInvalidValue;
  const int k = p->ksize, r = k / 2;
  for (int64_t b = 0; b < p->batch; ++b)
    for (int64_t c = 0; c < p->channels; ++c) {
      const int64_t in0 = b * p->in_sb + (c / p->in_group) * p->in_sg + (c % p->in_group) * p->in_sc;
      for (int64_t y = 0; y < p->height; ++y)
        for (int64_t x = 0; x < p->width; ++x) {
          double acc = p->bias ? load(p->bias, c, p->param_dtype) : 0.0;
          for (int i = 0; i < k; ++i)
            for (int j = 0; j < k; ++j) {
              const int64_t yy = y + i - r, xx = x + j - r;
              if (yy < 0 || yy >= p->height || xx < 0 || xx >= p->width) continue;
              acc += load(p->weight, (c * k + i) * k + j, p->param_dtype) *
                     load(p->in, in0 + yy * p->in_sh + xx * p->in_sw, p->dtype);
            }
          const int64_t o = b * p->out_sb + c * p->out_sc + y * p->out_sh + x * p->out_sw;
          store(p->out, o, (p->accumulate ? load(p->out, o, p->dtype) : 0.0) + acc, p->dtype);
        }
    }
  return cudaSuccess;
}

extern "C" const char* y12_error_string(cudaError_t err) {
  return err == cudaErrorInvalidConfiguration ? "invalid configuration argument (host stub)"
                                              : "error (host stub)";
}
