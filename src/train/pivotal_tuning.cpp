#include "sdxl_dreambooth/train/pivotal_tuning.h"

#include <cmath>

namespace sdxl::train {
namespace {

torch::Tensor initial_rows(const nn::ClipTextModel& encoder, std::int64_t n, double std, at::Generator& init,
                           const torch::Device& device) {
  const std::int64_t hidden = encoder->config().hidden_size;
  torch::Tensor rows = at::randn({n, hidden}, init, torch::TensorOptions().dtype(torch::kFloat)) * std;
  return rows.to(device).set_requires_grad(true);
}

double table_std(const nn::ClipTextModel& encoder) {
  return encoder->text_model->embeddings->token_embedding->weight.detach().to(torch::kFloat).std().item<double>();
}

}  // namespace

std::unique_ptr<PivotalTuning> PivotalTuning::start(const config::LoraConfig& lora, pipeline::SdxlPipeline& pipe,
                                                    at::Generator& init) {
  if (!lora.train_text_encoder_ti) return nullptr;
  // The encoders' own weights (their embedding tables included) take no gradient: backward
  // reaches the new rows only.
  for (auto* encoder : {&pipe.text_encoder, &pipe.text_encoder_2}) {
    for (auto& p : (*encoder)->parameters()) p.set_requires_grad(false);
  }
  auto abstractions = text::TokenAbstractions::parse(lora.token_abstraction, lora.num_new_tokens_per_abstraction);
  const auto n = static_cast<std::int64_t>(abstractions.tokens().size());
  const double std_l = table_std(pipe.text_encoder), std_g = table_std(pipe.text_encoder_2);
  const torch::Device device = pipe.options.device;
  torch::Tensor clip_l = initial_rows(pipe.text_encoder, n, std_l, init, device);
  torch::Tensor clip_g = initial_rows(pipe.text_encoder_2, n, std_g, init, device);
  pipe.add_tokens(abstractions, clip_l, clip_g);
  return std::unique_ptr<PivotalTuning>(new PivotalTuning(std::move(abstractions), clip_l, clip_g, std_l, std_g));
}

PivotalTuning::PivotalTuning(text::TokenAbstractions abstractions, torch::Tensor clip_l, torch::Tensor clip_g,
                             double std_l, double std_g)
    : abstractions_(std::move(abstractions)),
      clip_l_(std::move(clip_l)),
      clip_g_(std::move(clip_g)),
      std_l_(std_l),
      std_g_(std_g) {}

std::vector<std::pair<std::string, torch::Tensor>> PivotalTuning::named_parameters() const {
  return {{"token_embeddings.clip_l", clip_l_}, {"token_embeddings.clip_g", clip_g_}};
}

std::int64_t PivotalTuning::pivot_step(double frac, std::int64_t max_steps) {
  // The small epsilon keeps 0.3 × 10 at 3 although 0.3 is not exact in binary.
  return static_cast<std::int64_t>(std::floor(frac * static_cast<double>(max_steps) + 1e-9));
}

void PivotalTuning::renormalize() {
  torch::NoGradGuard no_grad;
  for (auto [rows, std0] : {std::pair<torch::Tensor, double>{clip_l_, std_l_}, {clip_g_, std_g_}}) {
    // ref: train_dreambooth_lora_sdxl_advanced.py TokenEmbeddingsHandler.retract_embeddings
    // (torch.std: unbiased). One row of one value has no spread: left alone.
    if (rows.numel() < 2) continue;
    rows.mul_((std0 / rows.std()).pow(0.1));
  }
}

model::TokenEmbeddings PivotalTuning::embeddings() const {
  return {abstractions_, clip_l_.detach().to(torch::kCPU, torch::kFloat).clone(),
          clip_g_.detach().to(torch::kCPU, torch::kFloat).clone()};
}

}  // namespace sdxl::train
