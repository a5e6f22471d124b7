// The set of LoRA adapters of one model (UNet or text encoder): which projections (and, for
// kohya's LoCon, convolutions) carry an adapter, their parameters under the names
// `<module path>.lora_A.weight` / `.lora_B.weight` (the names the reference vectors,
// checkpoints and exports start from), and loading them.
#pragma once

#include "sdxl_dreambooth/nn/lora_conv.h"
#include "sdxl_dreambooth/nn/lora_linear.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::nn {

struct LoraSpec {
  std::int64_t rank = 4;
  double alpha = 4.0;
  // Last components of the module paths to wrap, e.g. "to_q", "to_out.0" (UNet) or
  // "q_proj" (text encoders).
  std::vector<std::string> targets;
  // DoRA (peft's use_dora): each adapter also trains a magnitude per output feature.
  bool dora = false;
  double dropout = 0.0;  // peft's lora_dropout, in training mode
  // Only modules under these module-path prefixes ("up_blocks.0.attentions.0"); empty: all.
  std::vector<std::string> blocks;
  // Convolutions with a kernel larger than 1x1 (LoCon's conv_dim / conv_alpha); linear layers and
  // 1x1 convolutions take rank and alpha, as kohya's networks.lora.
  std::int64_t conv_rank = 4;
  double conv_alpha = 4.0;
  // The targets come from a preset (lora.preset): inside lora.blocks those a block lacks (the
  // samplers of an attention block) are simply not there; each block must still hold one.
  bool preset = false;
};

class LoraNetwork {
 public:
  LoraNetwork() = default;

  // Freezes every parameter of `root` and adds an adapter to each LoraCompatibleLinear (and
  // LoraCompatibleConv) whose path ends with ".<target>", in module order, drawing A from
  // `generator`. `what` names the model in errors ("UNet"). A target that matches no layer is
  // a UsageError, and so is DoRA on a convolution.
  static LoraNetwork inject(torch::nn::Module& root, const LoraSpec& spec, at::Generator& generator,
                            const std::string& what);

  const LoraSpec& spec() const { return spec_; }
  // Adapted layers, linear and convolutional.
  std::size_t size() const { return paths_.size() + conv_paths_.size(); }
  bool empty() const { return size() == 0; }
  // The linear layers' paths and modules, in module order.
  const std::vector<std::string>& module_paths() const { return paths_; }
  const std::vector<LoraCompatibleLinear>& modules() const { return modules_; }
  // The convolutions' (LoCon), in module order.
  const std::vector<std::string>& conv_paths() const { return conv_paths_; }
  const std::vector<LoraCompatibleConv>& conv_modules() const { return conv_modules_; }

  // Per linear module: A, B and with DoRA its magnitude `<path>.lora_magnitude_vector` (peft's
  // name), in module order; then per convolution A and B.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  std::vector<torch::Tensor> parameters() const;
  std::int64_t num_parameters() const;
  // 2, or 3 with DoRA.
  std::size_t params_per_module() const { return spec_.dora ? 3 : 2; }

  // Copies tensors named like named_parameters() into the adapters. Every adapter tensor
  // must be present with its shape; names that are not adapters are an error. `source`
  // names the origin in errors.
  void load(const std::map<std::string, torch::Tensor>& tensors, const std::string& source);

  // Scale of the adapters' contribution at run time (1 = as trained).
  void set_scale(double scale);

 private:
  void add_conv(const std::string& path, LoraCompatibleConv conv, at::Generator& generator);

  LoraSpec spec_;
  std::vector<std::string> paths_;
  std::vector<LoraCompatibleLinear> modules_;
  std::vector<std::string> conv_paths_;
  std::vector<LoraCompatibleConv> conv_modules_;
};

}  // namespace sdxl::nn
