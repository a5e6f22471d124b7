// Activation memory of inference (no autograd), estimated from the model configs, to size
// generation batches within a memory budget. The estimate depends only on the configs, the
// image size and the dtype, never on the machine, so a batch size chosen from it — and with it
// every generated image — is the same on every run and every rank count.
#pragma once

#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/model/vae_config.h"

#include <torch/torch.h>

#include <cstdint>

namespace sdxl::pipeline {

struct AttentionCost {
  bool scores_materialized = true;  // false with a fused (flash / memory-efficient) kernel
  std::int64_t query_chunk = 4096;  // queries per chunk of the portable path
};

// Bytes alive at the peak of one no-grad UNet forward, per sample of the batch (an image
// with classifier-free guidance is two samples): the skip connections of the down path plus
// the largest working set of one resnet or transformer block, attention scores included.
double unet_forward_bytes_per_sample(const model::UNetConfig& config, std::int64_t height, std::int64_t width,
                                     torch::Dtype dtype, const AttentionCost& attention);

// Bytes one UNet forward needs whatever the batch: a working copy of its largest convolution
// weight (oneDNN reorders conv weights on every call on the CPU; cuDNN takes a workspace of
// similar size), 118 MB for SDXL in float32.
double unet_forward_fixed_bytes(const model::UNetConfig& config, torch::Dtype dtype);

// Bytes alive at the peak of decoding one image with the VAE (images are decoded one at a
// time, as diffusers' enable_vae_slicing does).
double vae_decode_bytes(const model::VaeConfig& config, std::int64_t height, std::int64_t width, torch::Dtype dtype,
                        const AttentionCost& attention);

// The largest batch of images, 1 to max_images, with fixed_bytes + n * bytes_per_image within
// budget_bytes; 1 when even one image does not fit (the caller warns).
std::int64_t batch_size_for_budget(double budget_bytes, double fixed_bytes, double bytes_per_image,
                                   std::int64_t max_images);

}  // namespace sdxl::pipeline
