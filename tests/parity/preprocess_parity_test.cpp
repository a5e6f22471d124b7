// Image preprocessing against diffusers' DreamBooth dataset (PIL + torchvision), on the
// chelsea photos at 64 and 128 px: sizes and crops exact, pixels within the README's
// tolerance (mean |d| <= 0.02, max <= 0.25).
#include "parity_support.h"
#include "sdxl_dreambooth/data/preprocess.h"

#include <nlohmann/json.hpp>

#include <fstream>

using namespace sdxl;

TEST(PreprocessParity, ChelseaAt64And128) {
  SDXL_REQUIRE_REFERENCE();
  const auto ref = test::vectors("preprocess");
  std::ifstream in(test::reference_dir() / "vectors" / "preprocess.json");
  ASSERT_TRUE(in) << "preprocess.json";
  const nlohmann::json meta = nlohmann::json::parse(in);
  ASSERT_EQ(meta.size(), 10u);
  for (const auto& [key, m] : meta.items()) {
    SCOPED_TRACE(key);
    const int resolution = std::stoi(key.substr(0, key.find('/')));
    const std::string file = key.substr(key.find('/') + 1);
    const auto decoded = data::decode_image_file((test::subjects_dir() / "chelsea" / file).string());
    std::mt19937_64 rng(0);
    const auto p = data::preprocess(decoded.image, {resolution, /*center_crop=*/true, /*flip=*/false}, rng);
    EXPECT_EQ(p.original_size_hw[0], m["original_size_hw"][0].get<std::int64_t>());
    EXPECT_EQ(p.original_size_hw[1], m["original_size_hw"][1].get<std::int64_t>());
    EXPECT_EQ(p.resized_hw[0], m["resized_hw"][0].get<std::int64_t>());
    EXPECT_EQ(p.resized_hw[1], m["resized_hw"][1].get<std::int64_t>());
    EXPECT_EQ(p.crop_top_left_yx[0], m["crop_top_left_yx"][0].get<std::int64_t>());
    EXPECT_EQ(p.crop_top_left_yx[1], m["crop_top_left_yx"][1].get<std::int64_t>());
    const torch::Tensor expected = ref.tensor(key);
    ASSERT_EQ(p.pixels.sizes(), expected.sizes());
    const torch::Tensor d = (p.pixels - expected).abs();
    EXPECT_LE(d.mean().item<double>(), 0.02);
    EXPECT_LE(d.max().item<double>(), 0.25);
  }
}
