// The one place where LibTorch version differences live. Debian ships LibTorch 1.13
// (CPU); clusters run CUDA builds of 2.x. Everything else calls these wrappers.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

// SDXL_TORCH_CUDA: set by CMake when LibTorch was built with CUDA (TORCH_CUDA_LIBRARIES);
// the CPU package ships the c10/cuda headers too, so their presence proves nothing.
#if defined(SDXL_TORCH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#define SDXL_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||               \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace sdxl::compat {

// at::scaled_dot_product_attention became a public op (with flash and memory-efficient
// CUDA kernels) in 2.0 and took an explicit scale in 2.1; 1.13 only has private prototypes.
constexpr bool kHasFusedSdpa = SDXL_TORCH_VERSION_AT_LEAST(2, 1);

// Nearest upsampling got bfloat16 kernels on CUDA in 2.1 (pytorch/pytorch#80339); before, the
// UNet's upsamplers cast to float32 and back, as diffusers still does.
constexpr bool kHasBf16NearestUpsample = SDXL_TORCH_VERSION_AT_LEAST(2, 1);

inline std::string torch_version() { return TORCH_VERSION; }

inline bool cuda_available() { return torch::cuda::is_available(); }

// Fused attention softmax(q kᵀ · scale) v over [batch, heads, tokens, head_dim]. Returns
// nullopt when this LibTorch has no fused kernel, and the caller uses its portable path.
inline std::optional<torch::Tensor> fused_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                    const torch::Tensor& v, double scale) {
#if SDXL_TORCH_VERSION_AT_LEAST(2, 1)
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/false, scale);
#else
  (void)q; (void)k; (void)v; (void)scale;
  return std::nullopt;
#endif
}

// The stream LibTorch queues its work for `device` on (a cudaStream_t), so that NCCL's work is
// ordered with it on the device instead of by the host waiting; nullptr (CUDA's legacy default
// stream) without CUDA LibTorch, where no CUDA tensor can exist.
inline void* current_cuda_stream(int device) {
#if defined(SDXL_TORCH_CUDA)
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return nullptr;
#endif
}

// The CUDA caching allocator's peak of allocated bytes on `device` since the last reset
// (torch.cuda.max_memory_allocated); nullopt without CUDA LibTorch. Stat index 0 is the
// aggregate over pools in every version (the StatType enum moved between namespaces).
inline std::optional<std::uint64_t> cuda_peak_allocated_bytes(int device) {
#if defined(SDXL_TORCH_CUDA)
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return static_cast<std::uint64_t>(stats.allocated_bytes[0].peak);
#else
  (void)device;
  return std::nullopt;
#endif
}

inline void cuda_reset_peak_allocated(int device) {
#if defined(SDXL_TORCH_CUDA)
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#else
  (void)device;
#endif
}

// While alive, a CUDA call that makes the host wait for the device (a blocking copy, .item(),
// a stream synchronisation) throws instead of waiting: torch.cuda.set_sync_debug_mode("error").
// The test that a training step never waits uses it; without CUDA LibTorch it does nothing.
class CudaSyncsThrow {
 public:
  CudaSyncsThrow() {
#if defined(SDXL_TORCH_CUDA)
    previous_ = c10::cuda::warning_state().get_sync_debug_mode();
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
#endif
  }
  ~CudaSyncsThrow() {
#if defined(SDXL_TORCH_CUDA)
    c10::cuda::warning_state().set_sync_debug_mode(previous_);
#endif
  }
  CudaSyncsThrow(const CudaSyncsThrow&) = delete;
  CudaSyncsThrow& operator=(const CudaSyncsThrow&) = delete;

 private:
#if defined(SDXL_TORCH_CUDA)
  c10::cuda::SyncDebugMode previous_ = c10::cuda::SyncDebugMode::L_DISABLED;
#endif
};

namespace detail {
template <typename C, typename = void>
struct has_allow_tf32_cudnn : std::false_type {};
template <typename C>
struct has_allow_tf32_cudnn<C, std::void_t<decltype(std::declval<C&>().setAllowTF32CuDNN(true))>> : std::true_type {};
template <typename C, typename = void>
struct has_matmul_precision : std::false_type {};
template <typename C>
struct has_matmul_precision<C, std::void_t<decltype(std::declval<C&>().setFloat32MatmulPrecision(std::string()))>>
    : std::true_type {};

template <typename C>
void set_allow_tf32(C& context, bool allow) {
  if constexpr (has_matmul_precision<C>::value) context.setFloat32MatmulPrecision(allow ? "high" : "highest");
  if constexpr (has_allow_tf32_cudnn<C>::value) context.setAllowTF32CuDNN(allow);
}
template <typename E, typename = void>
struct has_start_ns : std::false_type {};
template <typename E>
struct has_start_ns<E, std::void_t<decltype(std::declval<const E&>().startNs())>> : std::true_type {};
template <typename E, typename = void>
struct has_duration_ns : std::false_type {};
template <typename E>
struct has_duration_ns<E, std::void_t<decltype(std::declval<const E&>().durationNs())>> : std::true_type {};
}  // namespace detail

// A profiler event's duration (torch::autograd::profiler::KinetoEvent): microseconds up to
// 2.0, nanoseconds (durationNs) since 2.1.
template <typename Event>
double profiler_event_seconds(const Event& e) {
  if constexpr (detail::has_duration_ns<Event>::value) {
    return static_cast<double>(e.durationNs()) * 1e-9;
  } else {
    return static_cast<double>(e.durationUs()) * 1e-6;
  }
}

template <typename Event>
double profiler_event_start_seconds(const Event& e) {
  if constexpr (detail::has_start_ns<Event>::value) {
    return static_cast<double>(e.startNs()) * 1e-9;
  } else {
    return static_cast<double>(e.startUs()) * 1e-6;
  }
}

namespace detail {
template <typename F>
struct third_parameter;
template <typename C, typename R, typename A1, typename A2, typename A3, typename A4, typename A5>
struct third_parameter<R (C::*)(A1, A2, A3, A4, A5)> {
  using type = A3;
};
}  // namespace detail

// The type of the totals c10::MemoryReportingInfoBase::reportMemoryUsage receives (the hook
// of LibTorch's memory profiler): int64_t in 1.13, size_t in 2.x.
using MemoryReportTotal =
    detail::third_parameter<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::type;

// TF32 for float32 matmuls and convolutions on Ampere and later GPUs (PyTorch's
// allow_tf32 / set_float32_matmul_precision). LibTorch's defaults differ between the two
// (cuDNN on, cuBLAS off) and the setters were reworked in 2.9, hence the detection.
inline void set_allow_tf32(bool allow) { detail::set_allow_tf32(at::globalContext(), allow); }

// "NVIDIA H100 80GB HBM3"; empty without CUDA LibTorch.
inline std::string cuda_device_name(int device) {
#if defined(SDXL_TORCH_CUDA)
  return at::cuda::getDeviceProperties(device)->name;
#else
  (void)device;
  return {};
#endif
}

// Bytes of memory GPU `device` has; 0 without CUDA LibTorch.
inline double cuda_total_memory(int device) {
#if defined(SDXL_TORCH_CUDA)
  return static_cast<double>(at::cuda::getDeviceProperties(device)->totalGlobalMem);
#else
  (void)device;
  return 0;
#endif
}

// Makes GPU `device` this thread's current one for LibTorch and the CUDA runtime, before
// anything touches CUDA (otherwise every rank of a node creates a context on GPU 0).
// Nothing to do without CUDA LibTorch.
inline void set_cuda_device(int device) {
#if defined(SDXL_TORCH_CUDA)
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
#else
  (void)device;
#endif
}

}  // namespace sdxl::compat
