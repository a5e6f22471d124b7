#include "sdxl_dreambooth/pipeline/comparison_grid.h"

#include "sdxl_dreambooth/pipeline/image_grid.h"
#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::pipeline {

void write_comparison_grid(const std::string& path, const std::vector<GeneratedImage>& base,
                           const std::vector<GeneratedImage>& tuned, const GenerationRequest& req,
                           const std::string& lora, double scale) {
  ImageGrid g;
  g.width = static_cast<int>(req.width);
  g.height = static_cast<int>(req.height);
  const std::string tuned_label = "with LoRA (scale " + util::format_number(scale) + ")";
  g.column_labels = {"base model", tuned_label};
  g.text = {{"columns", "left: base model | right: " + tuned_label + " " + lora}};
  for (std::size_t r = 0; r < base.size(); ++r) {
    g.rows.push_back({base[r].rgb.data_ptr<std::uint8_t>(), tuned[r].rgb.data_ptr<std::uint8_t>()});
    const auto& img = base[r];
    g.row_captions.push_back(req.prompts[img.prompt_index] + " (image " + std::to_string(img.image_index) +
                             ", seed " + std::to_string(img.seed) + ")");
  }
  write_image_grid(path, g);
}

}  // namespace sdxl::pipeline
