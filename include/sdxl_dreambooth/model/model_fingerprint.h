// Which base model a run trained on, precisely: every weight file of the pipeline's networks
// with its size and SHA-256 (the checksum the Hugging Face hub shows for LFS files). Stored in
// checkpoints for provenance and compared on resume, so a checkpoint is never continued on
// another model, wherever the folder has moved.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

struct WeightFileFingerprint {
  std::string file;  // relative to the pipeline folder, e.g. "unet/diffusion_pytorch_model.safetensors"
  std::uint64_t bytes = 0;
  std::string sha256;  // lower-case hex

  // "<sha256> <bytes> <file>" (sha256sum-like, one line per file in checkpoints).
  std::string to_line() const;
  static std::optional<WeightFileFingerprint> from_line(const std::string& line);
};

struct ModelFingerprint {
  std::string spec;  // as configured (folder or hub id)
  std::string root;  // the folder it resolved to
  std::vector<WeightFileFingerprint> files;
  std::uint64_t total_bytes() const;
};

// Fingerprints the unet, vae (or the separate `vae` spec), text_encoder and text_encoder_2
// weights that loading with `variant` reads. Files in the HF cache are symlinks to blobs
// named by their SHA-256, which is used as is; other files are hashed (about 1-2 GB/s).
ModelFingerprint fingerprint_pipeline(const std::string& spec, const std::string& revision,
                                      const std::optional<std::string>& variant,
                                      const std::optional<std::string>& vae);

std::string sha256_file(const std::string& path);

// The first difference between two fingerprints' file lists ("" when they match).
std::string fingerprint_difference(const std::vector<WeightFileFingerprint>& a,
                                   const std::vector<WeightFileFingerprint>& b);

}  // namespace sdxl::model
