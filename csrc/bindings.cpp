// Torch binding of the csrc/ kernels: module yolov12_kernels._C (TORCH_EXTENSION_NAME).
//
// Host-only C++ (compiled by the host compiler, no CUDA code here): it checks every argument
// (device, dtype, shape, the strides the kernels rely on) with a TORCH_CHECK naming the argument,
// fills the C parameter structs of yolov12_kernels.h, launches on the current stream of the
// tensors' device and turns any launch error into a RuntimeError.
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE
// headers): c10::cuda::getCurrentCUDAStream is the function at::cuda::getCurrentCUDAStream names.
#include <torch/extension.h>

#include <ATen/MemoryOverlap.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "yolov12_kernels.h"

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
  TORCH_CHECK(false, name, ": dtype ", t.scalar_type(), " is not supported by the CUDA kernel (",
              allow_fp32 ? "float32, float16 or bfloat16" : "float16 or bfloat16", " only)");
  return Y12_FLOAT32;  // unreachable
}

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.defined(), name, ": tensor is undefined");
  TORCH_CHECK(t.is_cuda(), name, ": expected a CUDA tensor, got one on ", t.device(),
              " (the yolov12_kernels CUDA backend runs on GPU tensors only)");
}

void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_cuda(t, name);
  TORCH_CHECK(t.device() == ref.device(), name, ": on ", t.device(), " but ", ref_name, " is on ",
              ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, ": dtype ", t.scalar_type(),
              " does not match ", ref_name, "'s ", ref.scalar_type());
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA kernel launch failed: ", cudaGetErrorString(err),
              " (", static_cast<int>(err), ")");
}

// bf16 needs code compiled for sm_80+; say which code this GPU runs when it is not.
void check_bf16_arch(y12_dtype dtype, const char* name) {
  if (dtype != Y12_BFLOAT16) return;
  int arch = 0;
  check_launch(y12_attention_ptx_arch(dtype, &arch), "attention kernel attributes");
  TORCH_CHECK(arch >= 80, name, ": bfloat16 attention needs kernels compiled for sm_80 or newer; "
              "on this GPU the extension runs code compiled for compute_", arch,
              " (use float16, or rebuild with YOLOV12_CUDA_ARCHS including this GPU)");
}

void check_head_dim(int64_t d, const char* name) {
  TORCH_CHECK(d == 32 || d == 64, name, ": head_dim ", d,
              " is not supported by the CUDA kernel (32 or 64 only)");
}

void check_area(int64_t area, int64_t N) {
  TORCH_CHECK(area >= 1, "area: must be >= 1, got ", area);
  TORCH_CHECK(N % area == 0, "area: ", area, " does not divide the number of tokens N=", N);
}

// (B, C, H, W) tensors whose H*W tokens are read as one row-major token axis of stride stride(3).
void check_flat_tokens(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.size(2) == 1 || t.stride(2) == t.size(3) * t.stride(3), name,
              ": the H and W dimensions must be flattenable into one token axis (stride(2) == "
              "W * stride(3)), got strides ", t.strides(), "; pass a contiguous tensor");
}

// ---------------------------------------------------------------------------------------------
at::Tensor area_attention_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              int64_t area, double scale, std::optional<at::Tensor> out) {
  check_cuda(q, "q");
  check_like(k, "k", q, "q");
  check_like(v, "v", q, "q");
  TORCH_CHECK(q.dim() == 4, "q: expected (B, N, heads, head_dim), got shape ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes(), "k: shape ", k.sizes(), " does not match q's ", q.sizes());
  TORCH_CHECK(v.sizes() == q.sizes(), "v: shape ", v.sizes(), " does not match q's ", q.sizes());
  const y12_dtype dtype = kernel_dtype(q, "q", /*allow_fp32=*/false);
  const int64_t B = q.size(0), N = q.size(1), heads = q.size(2), d = q.size(3);
  TORCH_CHECK(B > 0 && N > 0 && heads > 0, "q: empty shape ", q.sizes());
  check_head_dim(d, "q");
  check_area(area, N);
  at::Tensor o;
  if (out.has_value()) {
    o = *out;
    check_like(o, "out", q, "q");
    TORCH_CHECK(o.sizes() == q.sizes(), "out: shape ", o.sizes(), " does not match q's ",
                q.sizes());
    // every CTA of a (batch, area, head) problem reads all its K/V rows: an out that overlaps an
    // input would be overwritten while other CTAs still read it (a race, not an in-place op)
    at::assert_no_overlap(o, q);
    at::assert_no_overlap(o, k);
    at::assert_no_overlap(o, v);
  } else {
    o = at::empty(q.sizes(), q.options());
  }
  const c10::cuda::CUDAGuard guard(q.device());
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
  p.batch = B;
  p.num_tokens = N;
  p.num_heads = heads;
  p.area = area;
  p.head_dim = static_cast<int>(d);
  p.scale = static_cast<float>(scale);
  p.dtype = dtype;
  check_launch(y12_area_attention_fwd(&p, c10::cuda::getCurrentCUDAStream(q.get_device()).stream()),
               "area_attention");
  return o;
}

// The model layout: qkv (B, 3C, H, W), per head [q | k | v] groups of head_dim channels.
struct QkvShape {
  int64_t B, C, H, W, d;
};

QkvShape check_qkv(const at::Tensor& qkv, int64_t num_heads, int64_t area) {
  check_cuda(qkv, "qkv");
  TORCH_CHECK(qkv.dim() == 4, "qkv: expected (B, 3C, H, W), got shape ", qkv.sizes());
  TORCH_CHECK(num_heads >= 1, "num_heads: must be >= 1, got ", num_heads);
  const int64_t B = qkv.size(0), C3 = qkv.size(1), H = qkv.size(2), W = qkv.size(3);
  TORCH_CHECK(C3 % (3 * num_heads) == 0, "qkv: channel count ", C3,
              " is not 3 * num_heads * head_dim for num_heads=", num_heads);
  TORCH_CHECK(B > 0 && C3 > 0 && H > 0 && W > 0, "qkv: empty shape ", qkv.sizes());
  const int64_t C = C3 / 3, d = C / num_heads;
  check_head_dim(d, "qkv");
  check_flat_tokens(qkv, "qkv");
  check_area(area, H * W);
  return {B, C, H, W, d};
}

at::Tensor make_out_nchw(std::optional<at::Tensor> out, const at::Tensor& like, int64_t B,
                         int64_t C, int64_t H, int64_t W, const char* like_name) {
  if (!out.has_value()) return at::empty({B, C, H, W}, like.options());
  at::Tensor o = *out;
  check_like(o, "out", like, like_name);
  TORCH_CHECK(o.dim() == 4 && o.size(0) == B && o.size(1) == C && o.size(2) == H && o.size(3) == W,
              "out: expected shape (", B, ", ", C, ", ", H, ", ", W, "), got ", o.sizes());
  // the kernels read `like` (qkv, or v with its k x k halo) from other CTAs than the one writing
  // an output element: out must not alias it (out = v, accumulate=True is not an in-place v + pe(v))
  at::assert_no_overlap(o, like);
  return o;
}

void launch_qkv_attention(const at::Tensor& qkv, const QkvShape& s, int64_t num_heads,
                          int64_t area, double scale, const at::Tensor& o, y12_dtype dtype) {
  check_flat_tokens(o, "out");
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
  check_launch(y12_area_attention_fwd(&p, c10::cuda::getCurrentCUDAStream(qkv.get_device()).stream()),
               "area_attention (qkv layout)");
}

at::Tensor area_attention_qkv_fwd(const at::Tensor& qkv, int64_t num_heads, int64_t area,
                                  double scale, std::optional<at::Tensor> out) {
  const QkvShape s = check_qkv(qkv, num_heads, area);
  const y12_dtype dtype = kernel_dtype(qkv, "qkv", /*allow_fp32=*/false);
  at::Tensor o = make_out_nchw(out, qkv, s.B, s.C, s.H, s.W, "qkv");
  const c10::cuda::CUDAGuard guard(qkv.device());
  check_bf16_arch(dtype, "qkv");
  launch_qkv_attention(qkv, s, num_heads, area, scale, o, dtype);
  return o;
}

// Depthwise weight (C, 1, k, k) and bias (C,) as the fp32 contiguous buffers the kernel reads
// (C*k*k values: converting them costs nothing next to the conv itself).
struct PeParams {
  at::Tensor weight, bias;
  int64_t ksize;
};

PeParams prepare_pe(const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t C,
                    const at::Tensor& like, const char* wname, const char* bname) {
  check_cuda(weight, wname);
  TORCH_CHECK(weight.device() == like.device(), wname, ": on ", weight.device(),
              " but the input is on ", like.device());
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1 &&
                  weight.size(2) == weight.size(3),
              wname, ": expected a depthwise weight of shape (", C, ", 1, k, k), got ",
              weight.sizes());
  const int64_t k = weight.size(2);
  TORCH_CHECK(k % 2 == 1 && k <= 31, wname, ": kernel size must be odd and <= 31, got ", k);
  TORCH_CHECK(weight.is_floating_point(), wname, ": expected a floating dtype, got ",
              weight.scalar_type());
  PeParams pe;
  pe.weight = weight.to(at::kFloat).contiguous();
  pe.ksize = k;
  if (bias.has_value() && bias->defined()) {
    check_cuda(*bias, bname);
    TORCH_CHECK(bias->device() == like.device(), bname, ": on ", bias->device(),
                " but the input is on ", like.device());
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == C, bname, ": expected shape (", C,
                ",), got ", bias->sizes());
    TORCH_CHECK(bias->is_floating_point(), bname, ": expected a floating dtype, got ",
                bias->scalar_type());
    pe.bias = bias->to(at::kFloat).contiguous();
  }
  return pe;
}

void fill_pe_out(y12_pe_params& p, const at::Tensor& o) {
  p.out = o.data_ptr();
  p.out_sb = o.stride(0); p.out_sc = o.stride(1); p.out_sh = o.stride(2); p.out_sw = o.stride(3);
}

at::Tensor position_perceiver_fwd(const at::Tensor& v, const at::Tensor& weight,
                                  std::optional<at::Tensor> bias, std::optional<at::Tensor> out,
                                  bool accumulate) {
  check_cuda(v, "v");
  TORCH_CHECK(v.dim() == 4, "v: expected (B, C, H, W), got shape ", v.sizes());
  const int64_t B = v.size(0), C = v.size(1), H = v.size(2), W = v.size(3);
  TORCH_CHECK(B > 0 && C > 0 && H > 0 && W > 0, "v: empty shape ", v.sizes());
  const y12_dtype dtype = kernel_dtype(v, "v", /*allow_fp32=*/true);
  TORCH_CHECK(!accumulate || out.has_value(), "out: accumulate=True needs an output to add onto");
  const PeParams pe = prepare_pe(weight, bias, C, v, "weight", "bias");
  at::Tensor o = make_out_nchw(out, v, B, C, H, W, "v");
  const c10::cuda::CUDAGuard guard(v.device());
  y12_pe_params p{};
  p.in = v.data_ptr();
  p.in_sb = v.stride(0); p.in_sc = v.stride(1); p.in_sh = v.stride(2); p.in_sw = v.stride(3);
  p.in_group = C;  // one group: channel c at c * in_sc
  p.in_sg = 0;
  fill_pe_out(p, o);
  p.weight = pe.weight.data_ptr<float>();
  p.bias = pe.bias.defined() ? pe.bias.data_ptr<float>() : nullptr;
  p.batch = B; p.channels = C; p.height = H; p.width = W;
  p.ksize = static_cast<int>(pe.ksize);
  p.accumulate = accumulate ? 1 : 0;
  p.dtype = dtype;
  check_launch(y12_depthwise_conv_fwd(&p, c10::cuda::getCurrentCUDAStream(v.get_device()).stream()),
               "position_perceiver");
  return o;
}

// AAttn's core: out = area_attention(qkv) + pe(v), v read in place from qkv. Two launches on one
// stream: the attention writes out, then the depthwise conv adds bias + conv(v) onto it.
at::Tensor fused_area_attention_fwd(const at::Tensor& qkv, int64_t num_heads, int64_t area,
                                    const at::Tensor& pe_weight, std::optional<at::Tensor> pe_bias,
                                    double scale, std::optional<at::Tensor> out) {
  const QkvShape s = check_qkv(qkv, num_heads, area);
  const y12_dtype dtype = kernel_dtype(qkv, "qkv", /*allow_fp32=*/false);
  const PeParams pe = prepare_pe(pe_weight, pe_bias, s.C, qkv, "pe_weight", "pe_bias");
  at::Tensor o = make_out_nchw(out, qkv, s.B, s.C, s.H, s.W, "qkv");
  const c10::cuda::CUDAGuard guard(qkv.device());
  check_bf16_arch(dtype, "qkv");
  launch_qkv_attention(qkv, s, num_heads, area, scale, o, dtype);

  const int64_t cs = qkv.stride(1);
  y12_pe_params p{};
  p.in = static_cast<const char*>(qkv.data_ptr()) + 2 * s.d * cs * qkv.element_size();
  p.in_sb = qkv.stride(0);
  p.in_group = s.d;         // v channel c = head c / d, slice c % d
  p.in_sg = 3 * s.d * cs;   // next head's group of 3d channels
  p.in_sc = cs;
  p.in_sh = qkv.stride(2);
  p.in_sw = qkv.stride(3);
  fill_pe_out(p, o);
  p.weight = pe.weight.data_ptr<float>();
  p.bias = pe.bias.defined() ? pe.bias.data_ptr<float>() : nullptr;
  p.batch = s.B; p.channels = s.C; p.height = s.H; p.width = s.W;
  p.ksize = static_cast<int>(pe.ksize);
  p.accumulate = 1;
  p.dtype = dtype;
  check_launch(y12_depthwise_conv_fwd(&p, c10::cuda::getCurrentCUDAStream(qkv.get_device()).stream()),
               "fused_area_attention (pe)");
  return o;
}

// The PTX arch the attention kernel runs as on `device` (75, 80, ..., see y12_attention_ptx_arch).
int64_t attention_ptx_arch(int64_t device, bool bf16) {
  TORCH_CHECK(device >= 0, "device: expected a CUDA device index, got ", device);
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  int arch = 0;
  check_launch(y12_attention_ptx_arch(bf16 ? Y12_BFLOAT16 : Y12_FLOAT16, &arch),
               "attention kernel attributes");
  return arch;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "yolov12_kernels CUDA kernels (forward only): area attention and depthwise conv";
  m.def("area_attention_fwd", &area_attention_fwd,
        "area attention on (B, N, heads, d) q, k, v (fp16/bf16, d in {32, 64}, any strides)",
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("area"), py::arg("scale"),
        py::arg("out") = py::none());
  m.def("area_attention_qkv_fwd", &area_attention_qkv_fwd,
        "area attention on the model's qkv (B, 3C, H, W) -> (B, C, H, W)", py::arg("qkv"),
        py::arg("num_heads"), py::arg("area"), py::arg("scale"), py::arg("out") = py::none());
  m.def("position_perceiver_fwd", &position_perceiver_fwd,
        "depthwise kxk conv + bias on (B, C, H, W), written to or added onto out", py::arg("v"),
        py::arg("weight"), py::arg("bias") = py::none(), py::arg("out") = py::none(),
        py::arg("accumulate") = false);
  m.def("fused_area_attention_fwd", &fused_area_attention_fwd,
        "area attention(qkv) + pe(v) on the model layout -> (B, C, H, W)", py::arg("qkv"),
        py::arg("num_heads"), py::arg("area"), py::arg("pe_weight"),
        py::arg("pe_bias"), py::arg("scale"), py::arg("out") = py::none());
  m.def("attention_ptx_arch", &attention_ptx_arch,
        "PTX arch (e.g. 75, 80, 90) the attention kernel runs as on a device", py::arg("device"),
        py::arg("bf16") = false);
}
