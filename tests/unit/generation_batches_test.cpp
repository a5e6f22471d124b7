// How generation requests are cut into batches and dealt to ranks, and the activation-memory
// estimate that sizes the batches.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/pipeline/activation_memory.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <set>

namespace sdxl {
namespace {

using pipeline::ImageRef;

pipeline::GenerationRequest request(std::size_t prompts, std::int64_t images, std::int64_t batch) {
  pipeline::GenerationRequest r;
  r.prompts.assign(prompts, "p");
  r.images_per_prompt = images;
  r.batch_size = batch;
  return r;
}

TEST(GenerationBatches, ConsecutiveImagesInPromptOrderAcrossPromptBoundaries) {
  const auto batches = pipeline::plan_batches(request(2, 3, 4));
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0], (std::vector<ImageRef>{{0, 0}, {0, 1}, {0, 2}, {1, 0}}));
  EXPECT_EQ(batches[1], (std::vector<ImageRef>{{1, 1}, {1, 2}}));
  EXPECT_EQ(pipeline::plan_batches(request(2, 3, 1)).size(), 6u);
  EXPECT_EQ(pipeline::plan_batches(request(2, 3, 100)).size(), 1u);
  EXPECT_THROW(pipeline::plan_batches(request(1, 1, 0)), UsageError);
}

TEST(GenerationBatches, RanksGetWholeBatchesThatTogetherCoverEveryImageOnce) {
  const auto batches = pipeline::plan_batches(request(3, 5, 4));  // 15 images: 4 + 4 + 4 + 3
  for (int world = 1; world <= 6; ++world) {
    std::multiset<ImageRef> seen;
    for (int rank = 0; rank < world; ++rank) {
      const auto mine = pipeline::rank_share(batches, rank, world);
      // Cut back by the batch size, a rank's share gives exactly the planned batches j = rank mod world.
      std::size_t j = static_cast<std::size_t>(rank);
      for (std::size_t first = 0; first < mine.size(); first += 4, j += static_cast<std::size_t>(world)) {
        ASSERT_LT(j, batches.size());
        const std::vector<ImageRef> cut(mine.begin() + static_cast<std::ptrdiff_t>(first),
                                        mine.begin() + static_cast<std::ptrdiff_t>(std::min(first + 4, mine.size())));
        EXPECT_EQ(cut, batches[j]) << "world " << world << " rank " << rank;
      }
      EXPECT_GE(j, batches.size()) << "rank " << rank << " of " << world << " missed a batch";
      seen.insert(mine.begin(), mine.end());
    }
    EXPECT_EQ(seen.size(), 15u);
    EXPECT_EQ(std::set<ImageRef>(seen.begin(), seen.end()).size(), 15u) << "an image drawn twice";
  }
}

TEST(ActivationMemory, BatchSizeIsTheLargestThatFits) {
  EXPECT_EQ(pipeline::batch_size_for_budget(10.0, 0.0, 3.0, 100), 3);
  EXPECT_EQ(pipeline::batch_size_for_budget(9.0, 0.0, 3.0, 100), 3);
  EXPECT_EQ(pipeline::batch_size_for_budget(10.0, 1.0, 3.0, 100), 3);  // 1 + 3 * 3 = 10
  EXPECT_EQ(pipeline::batch_size_for_budget(10.0, 2.0, 3.0, 100), 2);
  EXPECT_EQ(pipeline::batch_size_for_budget(9.0, 0.0, 3.0, 2), 2);     // never more than the images
  EXPECT_EQ(pipeline::batch_size_for_budget(2.0, 0.0, 3.0, 100), 1);   // one image at a time, over budget
  EXPECT_EQ(pipeline::batch_size_for_budget(2.0, 5.0, 3.0, 100), 1);
}

TEST(ActivationMemory, ScalesWithPixelsDtypeAndMaterializedScores) {
  SDXL_REQUIRE_REFERENCE();
  const auto dir = test::reference_dir() / "sdxl-base-1.0-manifest";
  const auto unet = model::UNetConfig::load(dir / "unet.config.json");
  const auto vae = model::VaeConfig::load(dir / "vae.config.json");
  pipeline::AttentionCost fused;
  fused.scores_materialized = false;
  const pipeline::AttentionCost portable;
  const double u512 = pipeline::unet_forward_bytes_per_sample(unet, 512, 512, torch::kHalf, fused);
  const double u1024 = pipeline::unet_forward_bytes_per_sample(unet, 1024, 1024, torch::kHalf, fused);
  EXPECT_DOUBLE_EQ(u1024, 4 * u512);  // activations are linear in pixels without a score matrix
  EXPECT_DOUBLE_EQ(pipeline::unet_forward_bytes_per_sample(unet, 1024, 1024, torch::kFloat, fused), 2 * u1024);
  // SDXL at 1024², fp16: a few hundred MB per UNet row, the 4096-token level's score matrix
  // (10 heads x 4096 x 4096) several times that on the portable path.
  EXPECT_GT(u1024, 100e6);
  EXPECT_LT(u1024, 1e9);
  const double scores = 10.0 * 4096 * 4096 * (2 + 4);
  EXPECT_GT(pipeline::unet_forward_bytes_per_sample(unet, 1024, 1024, torch::kHalf, portable), u1024 + scores);
  // The VAE decode at 1024² in float32 (SDXL's VAE is upcast) is the largest single step:
  // its last block holds 128-256 channels at a million pixels.
  const double decode = pipeline::vae_decode_bytes(vae, 1024, 1024, torch::kFloat, fused);
  EXPECT_GT(decode, 2.0 * (1 << 30));
  EXPECT_LT(decode, 6.0 * (1 << 30));
  EXPECT_GT(decode, 2 * u1024);
  // Per call: a working copy of the widest convolution (an up-path resnet's conv1, 2560 -> 1280, 3x3).
  EXPECT_DOUBLE_EQ(pipeline::unet_forward_fixed_bytes(unet, torch::kFloat), 1280.0 * 2560 * 9 * 4);
}

}  // namespace
}  // namespace sdxl
