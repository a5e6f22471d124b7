#include "sdxl_dreambooth/nn/checkpoint.h"

namespace sdxl::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FunctionHolder : torch::CustomClassHolder {
  explicit FunctionHolder(CheckpointedFn f) : fn(std::move(f)) {}
  CheckpointedFn fn;
};

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // inputs and params are passed as TensorLists so autograd creates an edge for each.
  static torch::Tensor forward(AutogradContext* ctx, at::TensorList inputs, at::TensorList params,
                               c10::intrusive_ptr<FunctionHolder> holder) {
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    ctx->saved_data["num_inputs"] = static_cast<std::int64_t>(inputs.size());
    std::vector<torch::Tensor> saved(inputs.begin(), inputs.end());
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    torch::NoGradGuard no_grad;
    return holder->fn(std::vector<torch::Tensor>(inputs.begin(), inputs.end()));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule());
    const auto num_inputs = static_cast<std::size_t>(ctx->saved_data["num_inputs"].toInt());
    const variable_list saved = ctx->get_saved_variables();
    std::vector<torch::Tensor> inputs;
    std::vector<torch::Tensor> wrt;  // what gradients are asked for
    std::vector<std::size_t> wrt_index;
    for (std::size_t i = 0; i < num_inputs; ++i) {
      torch::Tensor x = saved[i].defined() ? saved[i].detach() : saved[i];
      if (x.defined() && saved[i].requires_grad()) {
        x.requires_grad_(true);
        wrt.push_back(x);
        wrt_index.push_back(i);
      }
      inputs.push_back(x);
    }
    for (std::size_t i = num_inputs; i < saved.size(); ++i) {
      wrt.push_back(saved[i]);
      wrt_index.push_back(i);
    }
    torch::Tensor out;
    {
      torch::AutoGradMode enable(true);
      out = holder->fn(inputs);
    }
    variable_list result(saved.size() + 1);  // + the holder, which gets no gradient
    if (!wrt.empty() && out.requires_grad()) {
      const variable_list grads = torch::autograd::grad({out}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                                        /*create_graph=*/false, /*allow_unused=*/true);
      for (std::size_t k = 0; k < grads.size(); ++k) result[wrt_index[k]] = grads[k];
    }
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> trainable_parameters(const torch::nn::Module& module) {
  std::vector<torch::Tensor> out;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

torch::Tensor checkpoint(const CheckpointedFn& fn, const std::vector<torch::Tensor>& inputs,
                         const std::vector<torch::Tensor>& params) {
  const bool any_grad = std::any_of(inputs.begin(), inputs.end(),
                                    [](const torch::Tensor& t) { return t.defined() && t.requires_grad(); }) ||
                        !params.empty();
  if (!torch::GradMode::is_enabled() || !any_grad) return fn(inputs);
  return CheckpointFunction::apply(at::TensorList(inputs), at::TensorList(params),
                                   c10::make_intrusive<FunctionHolder>(fn));
}

}  // namespace sdxl::nn
