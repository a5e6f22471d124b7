#include "sdxl_dreambooth/nn/batched_matmul.h"

#include "sdxl_dreambooth/util/shared_object.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <optional>

namespace sdxl::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The Fortran BLAS interface (32-bit integers) of the sgemm_ LibTorch's own CPU products call.
using Sgemm = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

// Resolved once; nullptr where LibTorch's BLAS is not a visible shared library (PyTorch's own
// builds link MKL statically), and the products then stay with torch::matmul.
Sgemm loaded_sgemm() {
  static const Sgemm gemm = reinterpret_cast<Sgemm>(util::blas_gemm_symbol());
  return gemm;
}

// A [rows, cols] matrix with strides (rs, cs) as BLAS sees it: column-major, so a row-major
// matrix is its own transpose ('N' on the transposed product) with leading dimension rs, and a
// column-major one is 'T' with leading dimension cs.
struct BlasMatrix {
  char trans;
  int ld;
};

std::optional<BlasMatrix> blas_layout(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs) {
  const std::int64_t limit = std::numeric_limits<int>::max();
  if ((cols == 1 || cs == 1) && (rows == 1 || rs >= std::max<std::int64_t>(cols, 1)) && rs <= limit) {
    return BlasMatrix{'N', static_cast<int>(rows == 1 ? std::max<std::int64_t>(cols, 1) : rs)};
  }
  if ((rows == 1 || rs == 1) && (cols == 1 || cs >= std::max<std::int64_t>(rows, 1)) && cs <= limit) {
    return BlasMatrix{'T', static_cast<int>(cols == 1 ? std::max<std::int64_t>(rows, 1) : cs)};
  }
  return std::nullopt;
}

bool direct_applies(const torch::Tensor& a, const torch::Tensor& b) {
  if (loaded_sgemm() == nullptr) return false;
  if (!a.device().is_cpu() || !b.device().is_cpu()) return false;
  if (a.layout() != torch::kStrided || b.layout() != torch::kStrided) return false;
  if (a.scalar_type() != torch::kFloat || b.scalar_type() != torch::kFloat) return false;
  if (a.dim() < 3 || a.dim() != b.dim()) return false;
  const auto n = a.dim();
  for (std::int64_t d = 0; d < n - 2; ++d) {
    if (a.size(d) != b.size(d)) return false;  // no broadcasting
  }
  if (a.size(-1) != b.size(-2)) return false;
  const std::int64_t limit = std::numeric_limits<int>::max();
  if (a.size(-2) > limit || a.size(-1) > limit || b.size(-1) > limit) return false;
  if (a.numel() == 0 || b.numel() == 0) return false;
  return blas_layout(a.size(-2), a.size(-1), a.stride(-2), a.stride(-1)) &&
         blas_layout(b.size(-2), b.size(-1), b.stride(-2), b.stride(-1));
}

// Offset of batch item `i` (row-major over the leading dimensions) in elements.
std::int64_t item_offset(const torch::Tensor& t, std::int64_t i) {
  std::int64_t offset = 0;
  for (std::int64_t d = t.dim() - 3; d >= 0; --d) {
    offset += (i % t.size(d)) * t.stride(d);
    i /= t.size(d);
  }
  return offset;
}

// out = a·b on the direct path; out is a new contiguous [..., n, m] tensor.
torch::Tensor direct_product(const torch::Tensor& a, const torch::Tensor& b) {
  auto shape = a.sizes().vec();
  shape.back() = b.size(-1);
  torch::Tensor out = torch::empty(shape, a.options().memory_format(at::MemoryFormat::Contiguous));
  const Sgemm sgemm = loaded_sgemm();
  const int n = static_cast<int>(a.size(-2)), k = static_cast<int>(a.size(-1)), m = static_cast<int>(b.size(-1));
  const BlasMatrix la = *blas_layout(a.size(-2), a.size(-1), a.stride(-2), a.stride(-1));
  const BlasMatrix lb = *blas_layout(b.size(-2), b.size(-1), b.stride(-2), b.stride(-1));
  const std::int64_t items = out.numel() / (static_cast<std::int64_t>(n) * m);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = out.data_ptr<float>();
  const float one = 1.0f, zero = 0.0f;
  const int ldc = std::max(m, 1);
  // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: B's layout goes first. Each thread takes
  // whole matrices (about 64k multiply-adds at least), and the BLAS runs single-threaded inside
  // a parallel region.
  const std::int64_t work = std::max<std::int64_t>(1, static_cast<std::int64_t>(n) * m * k);
  at::parallel_for(0, items, std::max<std::int64_t>(1, 65536 / work), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      sgemm(&lb.trans, &la.trans, &m, &n, &k, &one, pb + item_offset(b, i), &lb.ld, pa + item_offset(a, i), &la.ld,
            &zero, pc + i * static_cast<std::int64_t>(n) * m, &ldc);
    }
  });
  return out;
}

// Any product of the backward: direct when the layouts allow, torch::matmul otherwise.
torch::Tensor product(const torch::Tensor& a, const torch::Tensor& b) {
  return direct_applies(a, b) ? direct_product(a, b) : torch::matmul(a, b);
}

struct BatchedMatmul : public torch::autograd::Function<BatchedMatmul> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return direct_product(a, b);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& a = saved[0];
    const torch::Tensor& b = saved[1];
    const torch::Tensor& grad = grads[0];
    torch::Tensor grad_a, grad_b;
    if (grad.defined()) {
      if (ctx->needs_input_grad(0)) grad_a = product(grad, b.transpose(-1, -2));
      if (ctx->needs_input_grad(1)) grad_b = product(a.transpose(-1, -2), grad);
    }
    return {grad_a, grad_b};
  }
};

}  // namespace

bool batched_matmul_is_direct(const torch::Tensor& a, const torch::Tensor& b) { return direct_applies(a, b); }

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (!direct_applies(a, b)) return torch::matmul(a, b);
  if (!torch::GradMode::is_enabled() || (!a.requires_grad() && !b.requires_grad())) return direct_product(a, b);
  return BatchedMatmul::apply(a, b);
}

}  // namespace sdxl::nn
