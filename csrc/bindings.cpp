// CUDA kernels of the yolov12::cuda_* operators (torch.library), over the C API of
// yolov12_kernels.h.
//
// The operators' schemas and fake (meta) kernels are defined in Python
// (yolov12_kernels/cuda_backend.py), so they exist, trace and compile on any machine; this file
// only registers their CUDA kernels (TORCH_LIBRARY_IMPL), and the dispatcher checks each C++
// signature against its schema when the library is loaded. The library is loaded with
// torch.ops.load_library: it is no Python module (no pybind11, no Python C-API), so a failed check
// is a c10::Error that travels back through the dispatcher and torch's own Python binding exactly
// like an aten operator's error.
//
// Host-only C++ (no CUDA code). Every argument is checked with a TORCH_CHECK naming it: the public
// ops of yolov12_kernels validate first, so these checks are the last line of defence for direct
// calls, and they guard every assumption the kernels make (device, dtype, shape, a flattenable
// token axis, no output overlapping an input). Bad values raise ValueError, bad dtypes TypeError.
// Then the C parameter structs are filled, the launcher runs on the current stream of the tensors'
// device, and a launch error becomes a RuntimeError.
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include <optional>

#include "yolov12_kernels.h"

// The device the kernels run on. Y12_HOST_TEST builds this same file for CPU tensors against the
// stub launchers of tests/host_launchers.cpp (plain C++ implementations of the C API): the
// schemas, the checks, the parameter structs and the dispatcher's error path then run on a machine
// without a GPU (tests/test_cuda_backend.py).
#ifdef Y12_HOST_TEST
#define Y12_DISPATCH_KEY CPU
namespace {
constexpr c10::DeviceType kDeviceType = c10::DeviceType::CPU;
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};
cudaStream_t current_stream(const at::Tensor&) { return nullptr; }
}  // namespace
#else
// c10/cuda only (not ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE headers):
// c10::cuda::getCurrentCUDAStream is the function at::cuda::getCurrentCUDAStream names.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define Y12_DISPATCH_KEY CUDA
namespace {
constexpr c10::DeviceType kDeviceType = c10::DeviceType::CUDA;
using DeviceGuard = c10::cuda::CUDAGuard;
cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.get_device()).stream();
}
}  // namespace
#endif

namespace {

y12_dtype kernel_dtype(const at::Tensor& t, const char* name, bool allow_fp32) {
  switch (t.scalar_type()) {
    case at::kHalf: return Y12_FLOAT16;
    case at::kBFloat16: return Y12_BFLOAT16;
    case at::kFloat:
      if (allow_fp32) return Y12_FLOAT32;
      break;
    default: break;
  }
  TORCH_CHECK_TYPE(false, name, ": dtype ", t.scalar_type(),
                   " is not supported by the CUDA kernel (",
                   allow_fp32 ? "float32, float16 or bfloat16" : "float16 or bfloat16", " only)");
  return Y12_FLOAT32;  // unreachable
}

void check_device(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.defined(), name, ": tensor is undefined");
  TORCH_CHECK_VALUE(t.device().type() == kDeviceType, name, ": expected a ", kDeviceType,
                    " tensor, got one on ", t.device(),
                    " (the yolov12_kernels CUDA backend runs on GPU tensors only)");
}

void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_device(t, name);
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, ": on ", t.device(), " but ", ref_name,
                    " is on ", ref.device());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, ": dtype ", t.scalar_type(),
                   " does not match ", ref_name, "'s ", ref.scalar_type());
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA kernel launch failed: ", y12_error_string(err),
              " (", static_cast<int>(err), ")");
}

// bf16 needs code compiled for sm_80+; say which code this GPU runs when it is not.
void check_bf16_arch(y12_dtype dtype, const char* name) {
  if (dtype != Y12_BFLOAT16) return;
  int arch = 0;
  check_launch(y12_attention_ptx_arch(dtype, &arch), "attention kernel attributes");
  TORCH_CHECK_TYPE(arch >= 80, name, ": bfloat16 attention needs kernels compiled for sm_80 or "
                   "newer; on this GPU the extension runs code compiled for compute_", arch,
                   " (use float16, or rebuild with YOLOV12_CUDA_ARCHS including this GPU)");
}

void check_head_dim(int64_t d, const char* name) {
  TORCH_CHECK_VALUE(d == 32 || d == 64, name, ": head_dim ", d,
                    " is not supported by the CUDA kernel (32 or 64 only)");
}

void check_area(int64_t area, int64_t N) {
  TORCH_CHECK_VALUE(area >= 1, "area: must be >= 1, got ", area);
  TORCH_CHECK_VALUE(N % area == 0, "area: ", area, " does not divide the number of tokens N=", N);
}

// (B, C, H, W) tensors whose H*W tokens are read as one row-major token axis of stride stride(3).
bool flat_tokens(const at::Tensor& t) {
  return t.size(2) == 1 || t.stride(2) == t.size(3) * t.stride(3);
}

// An output: on the inputs' device, of their dtype and of the expected shape, and not sharing
// memory with an input: other CTAs still read the inputs (every K/V row of an area, v's k x k
// halo) while one writes, so an overlapping out would be a race, not an in-place op.
void check_out(const at::Tensor& out, const at::Tensor& like, const char* like_name,
               at::IntArrayRef shape) {
  check_like(out, "out", like, like_name);
  TORCH_CHECK_VALUE(out.sizes() == shape, "out: expected shape ", shape, ", got ", out.sizes());
}

// ---------------------------------------------------------------------------------------------
// Drop-in layout: q, k, v (B, N, heads, d), any strides.
void check_drop_in(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t area) {
  check_device(q, "q");
  check_like(k, "k", q, "q");
  check_like(v, "v", q, "q");
  TORCH_CHECK_VALUE(q.dim() == 4, "q: expected (B, N, heads, head_dim), got shape ", q.sizes());
  TORCH_CHECK_VALUE(k.sizes() == q.sizes(), "k: shape ", k.sizes(), " does not match q's ",
                    q.sizes());
  TORCH_CHECK_VALUE(v.sizes() == q.sizes(), "v: shape ", v.sizes(), " does not match q's ",
                    q.sizes());
  kernel_dtype(q, "q", /*allow_fp32=*/false);
  TORCH_CHECK_VALUE(q.size(0) > 0 && q.size(1) > 0 && q.size(2) > 0, "q: empty shape ",
                    q.sizes());
  check_head_dim(q.size(3), "q");
  check_area(area, q.size(1));
}

void launch_drop_in(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t area,
                    double scale, const at::Tensor& o) {
  const DeviceGuard guard(q.device());
  const y12_dtype dtype = kernel_dtype(q, "q", false);
  check_bf16_arch(dtype, "q");
  y12_attention_params p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.o = o.data_ptr();
  // (B, N, heads, d) strides map one to one onto (batch, token, head, dim)
  p.q_sb = q.stride(0); p.q_st = q.stride(1); p.q_sh = q.stride(2); p.q_sd = q.stride(3);
  p.k_sb = k.stride(0); p.k_st = k.stride(1); p.k_sh = k.stride(2); p.k_sd = k.stride(3);
  p.v_sb = v.stride(0); p.v_st = v.stride(1); p.v_sh = v.stride(2); p.v_sd = v.stride(3);
  p.o_sb = o.stride(0); p.o_st = o.stride(1); p.o_sh = o.stride(2); p.o_sd = o.stride(3);
  p.batch = q.size(0);
  p.num_tokens = q.size(1);
  p.num_heads = q.size(2);
  p.area = area;
  p.head_dim = static_cast<int>(q.size(3));
  p.scale = static_cast<float>(scale);
  p.dtype = dtype;
  check_launch(y12_area_attention_fwd(&p, current_stream(q)), "area_attention");
}

at::Tensor area_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          int64_t area, double scale) {
  check_drop_in(q, k, v, area);
  at::Tensor o = at::empty(q.sizes(), q.options());
  launch_drop_in(q, k, v, area, scale, o);
  return o;
}

void area_attention_out(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        int64_t area, double scale, const at::Tensor& out) {
  check_drop_in(q, k, v, area);
  check_out(out, q, "q", q.sizes());
  at::assert_no_overlap(out, q);
  at::assert_no_overlap(out, k);
  at::assert_no_overlap(out, v);
  launch_drop_in(q, k, v, area, scale, out);
}

// ---------------------------------------------------------------------------------------------
// The model layout: qkv (B, 3C, H, W), per head [q | k | v] groups of head_dim channels, and a
// (B, C, H, W) output.
struct QkvShape {
  int64_t B, C, H, W, d;
};

QkvShape check_qkv(const at::Tensor& qkv, int64_t num_heads, int64_t area) {
  check_device(qkv, "qkv");
  TORCH_CHECK_VALUE(qkv.dim() == 4, "qkv: expected (B, 3C, H, W), got shape ", qkv.sizes());
  TORCH_CHECK_VALUE(num_heads >= 1, "num_heads: must be >= 1, got ", num_heads);
  const int64_t B = qkv.size(0), C3 = qkv.size(1), H = qkv.size(2), W = qkv.size(3);
  TORCH_CHECK_VALUE(B > 0 && C3 > 0 && H > 0 && W > 0, "qkv: empty shape ", qkv.sizes());
  TORCH_CHECK_VALUE(C3 % (3 * num_heads) == 0, "qkv: channel count ", C3,
                    " is not 3 * num_heads * head_dim for num_heads=", num_heads);
  kernel_dtype(qkv, "qkv", /*allow_fp32=*/false);
  const int64_t C = C3 / 3, d = C / num_heads;
  check_head_dim(d, "qkv");
  check_area(area, H * W);
  return {B, C, H, W, d};
}

// Depthwise weight (C, 1, k, k) and bias (C,) as the kernel reads them: contiguous, in their own
// dtype (fp32, fp16 or bf16, widened in the kernel), so the model's weights go in as they are and
// a call launches no conversion (a (C, 1, k, k) weight is contiguous in either memory format).
// Only other dtypes (float64), a bias of another dtype than the weight, or a strided view are
// converted here.
struct PeParams {
  at::Tensor weight, bias;
  int64_t ksize = 0;
  y12_dtype dtype = Y12_FLOAT32;
};

at::Tensor pe_param(const at::Tensor& t, at::ScalarType dtype) {
  return t.to(dtype).contiguous();  // no-ops (no copy, no launch) when already so
}

PeParams prepare_pe(const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t C,
                    const at::Tensor& like, const char* wname, const char* bname) {
  check_device(weight, wname);
  TORCH_CHECK_VALUE(weight.device() == like.device(), wname, ": on ", weight.device(),
                    " but the input is on ", like.device());
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1 &&
                        weight.size(2) == weight.size(3),
                    wname, ": expected a depthwise weight of shape (", C, ", 1, k, k), got ",
                    weight.sizes());
  const int64_t k = weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 31, wname, ": kernel size must be odd and <= 31, got ", k);
  TORCH_CHECK_TYPE(weight.is_floating_point(), wname, ": expected a floating dtype, got ",
                   weight.scalar_type());
  PeParams pe;
  const at::ScalarType wtype = weight.scalar_type();
  const bool native = wtype == at::kFloat || wtype == at::kHalf || wtype == at::kBFloat16;
  pe.weight = pe_param(weight, native ? wtype : at::kFloat);
  pe.dtype = kernel_dtype(pe.weight, wname, /*allow_fp32=*/true);
  pe.ksize = k;
  if (bias.has_value() && bias->defined()) {
    check_device(*bias, bname);
    TORCH_CHECK_VALUE(bias->device() == like.device(), bname, ": on ", bias->device(),
                      " but the input is on ", like.device());
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == C, bname, ": expected shape (", C,
                      ",), got ", bias->sizes());
    TORCH_CHECK_TYPE(bias->is_floating_point(), bname, ": expected a floating dtype, got ",
                     bias->scalar_type());
    pe.bias = pe_param(*bias, pe.weight.scalar_type());
  }
  return pe;
}

void fill_pe(y12_pe_params& p, const PeParams& pe, const at::Tensor& o, int64_t B, int64_t C,
             int64_t H, int64_t W, y12_dtype dtype, bool accumulate) {
  p.out = o.data_ptr();
  p.out_sb = o.stride(0); p.out_sc = o.stride(1); p.out_sh = o.stride(2); p.out_sw = o.stride(3);
  p.weight = pe.weight.data_ptr();
  p.bias = pe.bias.defined() ? pe.bias.data_ptr() : nullptr;
  p.param_dtype = pe.dtype;
  p.batch = B; p.channels = C; p.height = H; p.width = W;
  p.ksize = static_cast<int>(pe.ksize);
  p.accumulate = accumulate ? 1 : 0;
  p.dtype = dtype;
}

// out = attention(qkv) (+ pe(v) when pe_weight is given), v read in place from qkv: the attention
// kernel writes out, then the depthwise conv adds bias + conv(v) onto it, on the same stream.
void launch_fused(const at::Tensor& qkv_in, const QkvShape& s, int64_t num_heads, int64_t area,
                  const std::optional<PeParams>& pe, double scale, const at::Tensor& o) {
  // the kernels read the H*W tokens as one axis; a view whose rows are not evenly spaced is copied
  const at::Tensor qkv = flat_tokens(qkv_in) ? qkv_in : qkv_in.contiguous();
  const DeviceGuard guard(qkv.device());
  const y12_dtype dtype = kernel_dtype(qkv, "qkv", false);
  check_bf16_arch(dtype, "qkv");
  const int64_t cs = qkv.stride(1);  // channel stride
  const char* base = static_cast<const char*>(qkv.data_ptr());
  const int64_t esz = qkv.element_size();
  y12_attention_params p{};
  p.q = base;
  p.k = base + s.d * cs * esz;       // channel h*3d + d + j
  p.v = base + 2 * s.d * cs * esz;   // channel h*3d + 2d + j
  p.o = o.data_ptr();
  p.q_sb = p.k_sb = p.v_sb = qkv.stride(0);
  p.q_st = p.k_st = p.v_st = qkv.stride(3);
  p.q_sh = p.k_sh = p.v_sh = 3 * s.d * cs;
  p.q_sd = p.k_sd = p.v_sd = cs;
  p.o_sb = o.stride(0);
  p.o_st = o.stride(3);
  p.o_sh = s.d * o.stride(1);  // output channel h*d + j
  p.o_sd = o.stride(1);
  p.batch = s.B;
  p.num_tokens = s.H * s.W;
  p.num_heads = num_heads;
  p.area = area;
  p.head_dim = static_cast<int>(s.d);
  p.scale = static_cast<float>(scale);
  p.dtype = dtype;
  check_launch(y12_area_attention_fwd(&p, current_stream(qkv)), "fused_area_attention");
  if (!pe.has_value()) return;

  y12_pe_params c{};
  c.in = base + 2 * s.d * cs * esz;
  c.in_sb = qkv.stride(0);
  c.in_group = s.d;         // v channel c = head c / d, slice c % d
  c.in_sg = 3 * s.d * cs;   // next head's group of 3d channels
  c.in_sc = cs;
  c.in_sh = qkv.stride(2);
  c.in_sw = qkv.stride(3);
  fill_pe(c, *pe, o, s.B, s.C, s.H, s.W, dtype, /*accumulate=*/true);
  check_launch(y12_depthwise_conv_fwd(&c, current_stream(qkv)), "fused_area_attention (pe)");
}

std::optional<PeParams> fused_pe(const std::optional<at::Tensor>& pe_weight,
                                 const std::optional<at::Tensor>& pe_bias, int64_t C,
                                 const at::Tensor& qkv) {
  if (pe_weight.has_value() && pe_weight->defined())
    return prepare_pe(*pe_weight, pe_bias, C, qkv, "pe_weight", "pe_bias");
  TORCH_CHECK_VALUE(!(pe_bias.has_value() && pe_bias->defined()),
                    "pe_bias: given without pe_weight");
  return std::nullopt;
}

// The output takes qkv's memory format (the rule of the Python fake kernel,
// yolov12_kernels._layout.is_channels_last): channels-last when qkv's channels vary fastest, as
// in the fused conv path, where the proj conv then reads contiguous channels and the attention
// and pe kernels store 8 channels at a time; NCHW otherwise.
at::Tensor fused_area_attention(const at::Tensor& qkv, int64_t num_heads, int64_t area,
                                const std::optional<at::Tensor>& pe_weight,
                                const std::optional<at::Tensor>& pe_bias, double scale) {
  const QkvShape s = check_qkv(qkv, num_heads, area);
  const std::optional<PeParams> pe = fused_pe(pe_weight, pe_bias, s.C, qkv);
  const at::MemoryFormat format = qkv.stride(1) < qkv.stride(3) ? at::MemoryFormat::ChannelsLast
                                                                 : at::MemoryFormat::Contiguous;
  at::Tensor o = at::empty({s.B, s.C, s.H, s.W}, qkv.options().memory_format(format));
  launch_fused(qkv, s, num_heads, area, pe, scale, o);
  return o;
}

void fused_area_attention_out(const at::Tensor& qkv, int64_t num_heads, int64_t area,
                              const std::optional<at::Tensor>& pe_weight,
                              const std::optional<at::Tensor>& pe_bias, double scale,
                              const at::Tensor& out) {
  const QkvShape s = check_qkv(qkv, num_heads, area);
  const std::optional<PeParams> pe = fused_pe(pe_weight, pe_bias, s.C, qkv);
  check_out(out, qkv, "qkv", {s.B, s.C, s.H, s.W});
  TORCH_CHECK_VALUE(flat_tokens(out), "out: the H and W dimensions must be flattenable into one "
                    "token axis (stride(2) == W * stride(3)), got strides ", out.strides());
  at::assert_no_overlap(out, qkv);
  launch_fused(qkv, s, num_heads, area, pe, scale, out);
}

// ---------------------------------------------------------------------------------------------
// Depthwise k x k conv + bias on (B, C, H, W), any strides.
void check_pe_input(const at::Tensor& v) {
  check_device(v, "v");
  TORCH_CHECK_VALUE(v.dim() == 4, "v: expected (B, C, H, W), got shape ", v.sizes());
  TORCH_CHECK_VALUE(v.size(0) > 0 && v.size(1) > 0 && v.size(2) > 0 && v.size(3) > 0,
                    "v: empty shape ", v.sizes());
  kernel_dtype(v, "v", /*allow_fp32=*/true);
}

void launch_pe(const at::Tensor& v, const PeParams& pe, const at::Tensor& o, bool accumulate) {
  const DeviceGuard guard(v.device());
  y12_pe_params p{};
  p.in = v.data_ptr();
  p.in_sb = v.stride(0); p.in_sc = v.stride(1); p.in_sh = v.stride(2); p.in_sw = v.stride(3);
  p.in_group = v.size(1);  // one group: channel c at c * in_sc
  p.in_sg = 0;
  fill_pe(p, pe, o, v.size(0), v.size(1), v.size(2), v.size(3), kernel_dtype(v, "v", true),
          accumulate);
  check_launch(y12_depthwise_conv_fwd(&p, current_stream(v)), "position_perceiver");
}

at::Tensor position_perceiver(const at::Tensor& v, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias) {
  check_pe_input(v);
  const PeParams pe = prepare_pe(weight, bias, v.size(1), v, "weight", "bias");
  at::Tensor o = at::empty(v.sizes(), v.options());
  launch_pe(v, pe, o, /*accumulate=*/false);
  return o;
}

void position_perceiver_out(const at::Tensor& v, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& out,
                            bool accumulate) {
  check_pe_input(v);
  const PeParams pe = prepare_pe(weight, bias, v.size(1), v, "weight", "bias");
  check_out(out, v, "v", v.sizes());
  at::assert_no_overlap(out, v);
  launch_pe(v, pe, out, accumulate);
}

// The PTX arch the attention kernel runs as on the device of `device_probe` (75, 80, ..., see
// y12_attention_ptx_arch); the probe is any tensor on that device (an empty one is enough).
int64_t attention_ptx_arch(const at::Tensor& device_probe, bool bf16) {
  check_device(device_probe, "device_probe");
  const DeviceGuard guard(device_probe.device());
  int arch = 0;
  check_launch(y12_attention_ptx_arch(bf16 ? Y12_BFLOAT16 : Y12_FLOAT16, &arch),
               "attention kernel attributes");
  return arch;
}

}  // namespace

TORCH_LIBRARY_IMPL(yolov12, Y12_DISPATCH_KEY, m) {
  m.impl("cuda_area_attention", TORCH_FN(area_attention));
  m.impl("cuda_area_attention_out", TORCH_FN(area_attention_out));
  m.impl("cuda_fused_area_attention", TORCH_FN(fused_area_attention));
  m.impl("cuda_fused_area_attention_out", TORCH_FN(fused_area_attention_out));
  m.impl("cuda_position_perceiver", TORCH_FN(position_perceiver));
  m.impl("cuda_position_perceiver_out", TORCH_FN(position_perceiver_out));
  m.impl("cuda_attention_ptx_arch", TORCH_FN(attention_ptx_arch));
}

// The hash of the operator schemas these kernels implement (cuda_backend.SCHEMA_TAG), which
// cuda_backend.py looks for in the file before loading it: loading a library whose signatures do
// not match the schemas would abort the process in the dispatcher's check. Change it with the
// schemas; tests/test_cuda_backend.py checks that it is current and that the signatures match.
extern "C" __attribute__((used, visibility("default")))
const char y12_ops_schema_tag[] = "yolov12-cuda-ops-schemas:6a17aa16d1bef51b";
