#include "sdxl_dreambooth/nn/geglu_product.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/torch_compat.h"

#if defined(SDXL_GEGLU_KERNELS)
#include "sdxl_dreambooth/nn/geglu_kernel.h"

#include <c10/cuda/CUDAGuard.h>
#endif

namespace sdxl::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#if defined(SDXL_GEGLU_KERNELS)
kernels::ElementType element_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return kernels::ElementType::kFloat32;
    case torch::kHalf: return kernels::ElementType::kFloat16;
    case torch::kBFloat16: return kernels::ElementType::kBFloat16;
    default: break;
  }
  throw Error(std::string("internal: GEGLU's fused kernel has no ") + c10::toString(t.scalar_type()) + " version");
}

void check_launch(const char* error, const char* what, const torch::Tensor& like) {
  if (error != nullptr) {
    throw Error(std::string("GEGLU's fused ") + what + " kernel on " + like.device().str() + " over " +
                    std::to_string(like.numel()) + " elements failed: " + error,
                "set train.fused_kernels = false to run ATen's kernels instead");
  }
}
#endif

// The kernels read and write flat memory of one type (the operands are made contiguous).
bool kernel_applies(const torch::Tensor& a, bool fused_kernel) {
#if defined(SDXL_GEGLU_KERNELS)
  const auto t = a.scalar_type();
  return fused_kernel && a.is_cuda() && (t == torch::kFloat || t == torch::kHalf || t == torch::kBFloat16);
#else
  (void)a, (void)fused_kernel;
  return false;
#endif
}

torch::Tensor composed(const torch::Tensor& a, const torch::Tensor& gate) { return a * torch::gelu(gate); }

struct GegluProduct : public torch::autograd::Function<GegluProduct> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& gate,
                               bool fused_kernel) {
    const bool kernel = kernel_applies(a, fused_kernel);
    ctx->saved_data["kernel"] = kernel;
    ctx->save_for_backward({a, gate});
    if (!kernel) return composed(a, gate);
#if defined(SDXL_GEGLU_KERNELS)
    const c10::cuda::CUDAGuard on_device(a.device());  // the launch goes to the current device
    const torch::Tensor ca = a.contiguous(), cg = gate.contiguous();
    torch::Tensor out = torch::empty_like(ca, at::MemoryFormat::Contiguous);
    check_launch(kernels::geglu_forward(element_type(ca), ca.data_ptr(), cg.data_ptr(), out.data_ptr(), ca.numel(),
                                        compat::current_cuda_stream(ca.get_device())),
                 "forward", ca);
    return out;
#else
    return {};
#endif
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& a = saved[0];
    const torch::Tensor& gate = saved[1];
    const torch::Tensor& grad = grads[0];
    if (!grad.defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    if (ctx->saved_data["kernel"].toBool()) {
#if defined(SDXL_GEGLU_KERNELS)
      const c10::cuda::CUDAGuard on_device(a.device());
      const torch::Tensor cd = grad.contiguous(), ca = a.contiguous(), cg = gate.contiguous();
      torch::Tensor grad_a = torch::empty_like(ca, at::MemoryFormat::Contiguous);
      torch::Tensor grad_gate = torch::empty_like(cg, at::MemoryFormat::Contiguous);
      check_launch(kernels::geglu_backward(element_type(ca), cd.data_ptr(), ca.data_ptr(), cg.data_ptr(),
                                           grad_a.data_ptr(), grad_gate.data_ptr(), ca.numel(),
                                           compat::current_cuda_stream(ca.get_device())),
                   "backward", ca);
      return {grad_a, grad_gate, torch::Tensor()};
#endif
    }
    // Autograd's own arithmetic for the composition (mul's backward, then gelu's), so the
    // gradients are bit for bit those of a * torch::gelu(gate).
    torch::Tensor grad_a, grad_gate;
    if (ctx->needs_input_grad(0)) grad_a = grad * torch::gelu(gate);
    if (ctx->needs_input_grad(1)) grad_gate = torch::gelu_backward(grad * a, gate);
    return {grad_a, grad_gate, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor geglu_product(const torch::Tensor& a, const torch::Tensor& gate, bool fused_kernel) {
  // Broadcasting or type promotion: autograd's own backward reduces and casts the gradients.
  if (a.sizes() != gate.sizes() || a.scalar_type() != gate.scalar_type() || a.device() != gate.device()) {
    return composed(a, gate);
  }
  const bool recorded = torch::GradMode::is_enabled() && (a.requires_grad() || gate.requires_grad());
  if (!recorded && !kernel_applies(a, fused_kernel)) return composed(a, gate);
  return GegluProduct::apply(a, gate, fused_kernel);
}

bool geglu_kernels_built() {
#if defined(SDXL_GEGLU_KERNELS)
  return true;
#else
  return false;
#endif
}

}  // namespace sdxl::nn
