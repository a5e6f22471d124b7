// Where a model lives: a diffusers folder given by path, or a hub id
// (ORG/NAME) resolved offline in the Hugging Face cache. The network is never touched.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace sdxl::model {

// The HF hub cache folders consulted, in order: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE,
// $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub.
std::vector<std::filesystem::path> hf_cache_roots();

// Resolves `spec` to a folder: an existing folder as is; a hub id through
// models--ORG--NAME/refs/<revision> -> snapshots/<hash> (or snapshots/<revision> for a
// commit hash). Throws sdxl::Error listing every place it looked.
std::filesystem::path resolve_model_dir(const std::string& spec, const std::string& revision);

// An SDXL pipeline folder (model_index.json + component sub-folders).
struct PipelineFolder {
  std::filesystem::path root;
  std::string spec;  // as the user gave it
  std::filesystem::path component(const std::string& name) const { return root / name; }
};

// Resolves and checks a pipeline: model_index.json names StableDiffusionXLPipeline (or a
// compatible class) and every SDXL component folder exists.
PipelineFolder open_pipeline(const std::string& spec, const std::string& revision);

// A single component (e.g. a separate VAE): a folder with config.json, or a pipeline
// folder whose `component` sub-folder is used.
std::filesystem::path resolve_component_dir(const std::string& spec, const std::string& revision,
                                            const std::string& component);

}  // namespace sdxl::model
