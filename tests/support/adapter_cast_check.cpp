#include "support/adapter_cast_check.h"

#include "sdxl_dreambooth/nn/adapter_cast.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "support/small_unet.h"

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace sdxl::test {
namespace {

struct Trained {
  nn::UNet2DConditionModel unet{nullptr};
  nn::LoraNetwork lora;
  std::unique_ptr<train::AdamW> adamw;  // lays the adapters out in one buffer, as training does
};

Trained small_lora_unet(const torch::Device& device, bool fuse) {
  Trained t;
  t.unet = small_unet();
  t.unet->to(device, torch::kBFloat16);
  for (auto& p : t.unet->parameters()) p.set_requires_grad(false);
  auto gen = at::detail::createCPUGenerator(5);
  t.lora = nn::LoraNetwork::inject(*t.unet, {4, 8.0, {"to_q", "to_k", "to_v", "to_out.0"}}, gen, "UNet");
  {
    torch::NoGradGuard no_grad;
    // B starts at zero; non-zero B puts every adapter's term into the output and A's gradient.
    for (auto& [name, p] : t.lora.named_parameters()) {
      if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.1, gen);
    }
  }
  if (fuse) t.unet->fuse_projections();
  t.adamw = std::make_unique<train::AdamW>(t.lora.parameters(), train::AdamWOptions{});
  return t;
}

struct Outcome {
  torch::Tensor out;
  std::map<std::string, torch::Tensor> grads;
  std::map<std::string, int> nodes;  // autograd nodes of the pass, by name
};

void count_nodes(const std::shared_ptr<torch::autograd::Node>& node, std::set<const torch::autograd::Node*>& seen,
                 std::map<std::string, int>& counts) {
  if (!node || !seen.insert(node.get()).second) return;
  ++counts[node->name()];
  for (const auto& edge : node->next_edges()) count_nodes(edge.function, seen, counts);
}

Outcome forward_backward(Trained& t, bool prepared) {
  torch::manual_seed(1);
  const auto dtype = t.unet->conv_in->weight.scalar_type();
  const auto device = t.unet->conv_in->weight.device();
  const auto in = [&](const torch::Tensor& x) { return x.to(device, dtype); };
  const auto sample = in(torch::randn({2, 4, 8, 8})), context = in(torch::randn({2, 7, 24}));
  const auto text = in(torch::randn({2, 8})), time_ids = in(torch::rand({2, 6}) * 64);
  Outcome r;
  {
    std::optional<nn::AdapterCast> cast;
    if (prepared) {
      cast.emplace(t.lora, dtype);
      EXPECT_TRUE(cast->active());
    }
    r.out = t.unet(sample, torch::tensor({10, 500}).to(device), context, text, time_ids);
  }
  for (const auto& m : t.lora.modules()) EXPECT_FALSE(m->cast_A.defined() || m->cast_B.defined());
  const torch::Tensor loss = r.out.to(torch::kFloat).pow(2).sum();
  std::set<const torch::autograd::Node*> seen;
  count_nodes(loss.grad_fn(), seen, r.nodes);
  loss.backward();
  for (auto& [name, p] : t.lora.named_parameters()) {
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat) << name;
    r.grads[name] = p.grad().clone();
    p.mutable_grad().reset();
  }
  return r;
}

}  // namespace

void expect_adapter_cast_matches_per_use_casts(const torch::Device& device, bool fuse, double tolerance) {
  SCOPED_TRACE(fuse ? "fused projections" : "separate projections");
  Trained t = small_lora_unet(device, fuse);
  const Outcome each = forward_backward(t, false);
  const Outcome once = forward_backward(t, true);
  const auto same = [&](const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
    if (tolerance == 0) {
      EXPECT_TRUE(torch::equal(a, b)) << what;
      return;
    }
    const double scale = b.abs().max().item<double>();
    const double rel = (a.to(torch::kFloat) - b.to(torch::kFloat)).abs().max().item<double>() / scale;
    std::cout << "[ measured ] " << what << ": max |once - per use| / max |per use| = " << rel << std::endl;
    EXPECT_LE(rel, tolerance) << what;
  };
  same(once.out, each.out, "output");
  ASSERT_EQ(once.grads.size(), 2 * t.lora.size());
  for (const auto& [name, g] : each.grads) {
    EXPECT_GT(g.abs().max().item<double>(), 0.0) << name;
    same(once.grads.at(name), g, name);
  }
  // Per use: a cast node (ToCopyBackward0) per adapter weight (fused projections cast their
  // A's together); once: one node for all of them. The activations' own casts (softmax in
  // float32, the test's output to float32) are in both.
  const auto count = [](const Outcome& o, const std::string& part) {
    int n = 0;
    for (const auto& [name, k] : o.nodes) n += name.find(part) != std::string::npos ? k : 0;
    return n;
  };
  const int adapters = static_cast<int>(t.lora.size());
  const int saved = count(each, "ToCopyBackward0") - count(once, "ToCopyBackward0");
  if (fuse) {
    EXPECT_GT(saved, adapters);
    EXPECT_LT(saved, 2 * adapters);
  } else {
    EXPECT_EQ(saved, 2 * adapters);
  }
  EXPECT_EQ(count(once, "FlatCast"), 1);
  EXPECT_EQ(count(each, "FlatCast"), 0);
}

}  // namespace sdxl::test
