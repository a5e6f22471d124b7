#include "sdxl_dreambooth/train/progress_grid.h"

#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/io/durable_file.h"
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/pipeline/image_grid.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <utility>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

// samples/step_N/P-K.png, by step and then by (prompt P, image K).
using Cell = std::pair<long long, long long>;
std::map<long long, std::map<Cell, fs::path>> validation_images(const fs::path& samples_dir) {
  std::map<long long, std::map<Cell, fs::path>> steps;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(samples_dir, ec)) {
    long long step = 0;
    if (!d.is_directory() || std::sscanf(d.path().filename().c_str(), "step_%lld", &step) != 1) continue;
    for (const auto& f : fs::directory_iterator(d.path(), ec)) {
      long long p = 0, k = 0;
      char tail[8] = {0};
      const std::string name = f.path().filename().string();
      if (std::sscanf(name.c_str(), "%lld-%lld.%7s", &p, &k, tail) == 3 && std::string(tail) == "png") {
        steps[step][{p, k}] = f.path();
      }
    }
  }
  return steps;
}

}  // namespace

torch::Tensor write_progress_grid(const fs::path& samples_dir, const std::vector<std::string>& prompts) {
  const auto steps = validation_images(samples_dir);
  if (steps.empty()) return {};
  // The columns and the size of the newest validation.
  const auto& newest = steps.rbegin()->second;
  pipeline::ImageGrid g;
  std::vector<Cell> columns;
  for (const auto& [cell, path] : newest) {
    columns.push_back(cell);
    const auto p = static_cast<std::size_t>(cell.first);
    g.column_labels.push_back((p < prompts.size() ? prompts[p] : "prompt " + std::to_string(cell.first)) + " #" +
                              std::to_string(cell.second));
  }
  std::vector<std::vector<std::uint8_t>> pixels;  // owns what g.rows points at
  std::vector<std::vector<std::size_t>> row_cells;
  for (const auto& [step, cells] : steps) {
    std::vector<std::size_t> row;
    for (const Cell& c : columns) {
      auto it = cells.find(c);
      if (it == cells.end()) break;
      const data::RgbImage img = data::decode_image_file(it->second.string()).image;
      if (g.width == 0) {
        g.width = img.width;
        g.height = img.height;
      }
      if (img.width != g.width || img.height != g.height) break;
      pixels.push_back(img.pixels);
      row.push_back(pixels.size() - 1);
    }
    if (row.size() != columns.size()) continue;  // another layout or size: not in this grid
    row_cells.push_back(row);
    g.row_captions.push_back("step " + std::to_string(step));
  }
  for (const auto& row : row_cells) {
    std::vector<const std::uint8_t*> ptrs;
    for (std::size_t i : row) ptrs.push_back(pixels[i].data());
    g.rows.push_back(ptrs);
  }
  g.text = {{"software", "sdxl-dreambooth validation progress"}};
  const fs::path path = samples_dir / "progress.png";
  pipeline::ComposedGrid grid = pipeline::compose_image_grid(g, path.string());
  io::write_png(path.string() + ".tmp", grid.pixels.data(), grid.width, grid.height, grid.text);
  io::commit_file(path.string() + ".tmp", path.string());
  return torch::from_blob(grid.pixels.data(), {grid.height, grid.width, 3}, torch::kUInt8).clone();
}

}  // namespace sdxl::train
