/* A stand-in for the CUDA driver (libcuda.so.1) so that Triton's own launchers run on a machine
   without a GPU (tests/test_launcher_abi.py builds it with gcc against the cuda.h that Triton
   ships, and puts it where Triton and the dynamic loader look for libcuda.so.1).

   Every entry point that Triton's driver module and launchers call (Triton 3.6 and 3.9)
   succeeds. Nothing runs: cuLaunchKernelEx counts the launch and keeps what it was asked for
   (grid, block, shared memory, kernel, stream, parameter bytes), which the test reads through
   ctypes. The device it describes is an H100 (sm_90, 132 SMs, 227 KB of shared memory). */
#include <string.h>

#include "cuda.h"

long long stub_launches;             /* launches so far */
unsigned stub_grid[3], stub_block[3], stub_shared;  /* the last launch's */
unsigned long long stub_function, stub_stream;  /* its kernel handle and stream */
/* The test sets the sizes of the next launch's parameters (the driver would read them from the
   cubin); the launch copies that many bytes of each into stub_params, back to back. */
int stub_nparams, stub_param_sizes[256];
unsigned char stub_params[256 * 8];

CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **params, void **extra) {
  int off = 0;
  stub_launches++;
  stub_grid[0] = c->gridDimX, stub_grid[1] = c->gridDimY, stub_grid[2] = c->gridDimZ;
  stub_block[0] = c->blockDimX, stub_block[1] = c->blockDimY, stub_block[2] = c->blockDimZ;
  stub_shared = c->sharedMemBytes;
  stub_function = (unsigned long long)f, stub_stream = (unsigned long long)c->hStream;
  for (int i = 0; i < stub_nparams && off + stub_param_sizes[i] <= (int)sizeof stub_params; i++)
    memcpy(stub_params + off, params[i], stub_param_sizes[i]), off += stub_param_sizes[i];
  return extra == NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev) {
  switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *pi = 9; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *pi = 132; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *pi = 227 * 1024; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *pi = 32; break;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: *pi = 65536; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *pi = 0; break;
    default: *pi = 1;
  }
  return CUDA_SUCCESS;
}

CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc) {
  *pi = attrib == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK ? 1024 : 0;  /* no registers, spills */
  return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  static unsigned long long modules;
  *module = (CUmodule)(++modules << 20);
  return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name) {
  *hfunc = (CUfunction)((unsigned long long)hmod + 1);  /* one kernel per module: distinct */
  return CUDA_SUCCESS;
}

/* Host memory stands for device memory: a pointer is its own device pointer. */
CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr) {
  *(CUdeviceptr *)data = ptr;
  return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult error, const char **pStr) {
  *pStr = "stub libcuda error";
  return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *pctx) { *pctx = (CUcontext)0x1; return CUDA_SUCCESS; }
CUresult cuCtxGetDevice(CUdevice *device) { *device = 0; return CUDA_SUCCESS; }
CUresult cuDeviceGet(CUdevice *device, int ordinal) { *device = ordinal; return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
  *pctx = (CUcontext)0x1;
  return CUDA_SUCCESS;
}
CUresult cuDriverGetVersion(int *version) { *version = 13000; return CUDA_SUCCESS; }
CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit) { *pvalue = 0; return CUDA_SUCCESS; }
CUresult cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus *status) {
  *status = CU_STREAM_CAPTURE_STATUS_NONE;
  return CUDA_SUCCESS;
}
CUresult cuCtxSetCurrent(CUcontext ctx) { return CUDA_SUCCESS; }
CUresult cuCtxSetLimit(CUlimit limit, size_t value) { return CUDA_SUCCESS; }
CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) { return CUDA_SUCCESS; }
CUresult cuFuncSetCacheConfig(CUfunction f, CUfunc_cache config) { return CUDA_SUCCESS; }
CUresult cuModuleUnload(CUmodule hmod) { return CUDA_SUCCESS; }
