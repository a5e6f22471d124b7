// The weights of one model component (unet/, vae/, text_encoder/...): a single
// safetensors file or a sharded set (*.safetensors.index.json -> weight_map), with
// diffusers' variant file names (diffusion_pytorch_model.fp16.safetensors).
#pragma once

#include "sdxl_dreambooth/io/safetensors.h"

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

class WeightSource {
 public:
  // Finds the weight files of a component folder; the error lists every name looked for.
  static WeightSource open_component(const std::filesystem::path& dir, const std::optional<std::string>& variant);
  // The weight file (or shard index) open_component would read; nullopt when there is none.
  static std::optional<std::filesystem::path> find_component_file(const std::filesystem::path& dir,
                                                                  const std::optional<std::string>& variant);
  // One safetensors file, or an index.json of shards.
  static WeightSource open_file(const std::filesystem::path& path);

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const io::TensorInfo& info(const std::string& name) const;
  // CPU view of the stored tensor (stored dtype); throws naming the name when absent.
  torch::Tensor tensor(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> files() const;
  std::uint64_t total_bytes() const;
  const std::string& description() const { return description_; }

 private:
  void add_file(const std::filesystem::path& path, const std::vector<std::string>* expected_names);

  std::string description_;
  std::vector<std::shared_ptr<const io::SafetensorsFile>> files_;
  std::map<std::string, std::size_t> where_;
};

}  // namespace sdxl::model
