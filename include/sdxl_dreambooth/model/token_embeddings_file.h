// Pivotal tuning's embeddings file, `<name>_emb.safetensors` as the advanced diffusers script
// writes it: "clip_l" [n, 768] (text_encoder) and "clip_g" [n, 1280] (text_encoder_2), the
// rows of the new tokens <s0> ... <s(n-1)> in order. Our files add metadata naming the tokens
// and the abstractions they stand for ("TOK"), which other readers ignore; a file without it
// (diffusers', or A1111's single-name convention) gets the tokens <s0> ... and no abstraction.
#pragma once

#include "sdxl_dreambooth/text/token_abstractions.h"

#include <torch/torch.h>

#include <map>
#include <string>

namespace sdxl::model {

struct TokenEmbeddings {
  text::TokenAbstractions abstractions;
  torch::Tensor clip_l, clip_g;  // float32, CPU
};

// Written via path.tmp and a rename. `metadata` is added to the file's own.
void write_token_embeddings(const std::string& path, const TokenEmbeddings& embeddings,
                            const std::map<std::string, std::string>& metadata = {});

// Reads and checks `path`: both tensors present, 2-D, the same number of rows, finite, and
// (with our metadata) as many rows as tokens. Errors name the file and what was expected.
TokenEmbeddings read_token_embeddings(const std::string& path);

}  // namespace sdxl::model
