#include "sdxl_dreambooth/data/image_folder.h"

#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace sdxl::data {

bool has_image_extension(const std::string& path) {
  const std::string ext = util::to_lower(fs::path(path).extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".webp";
}

std::vector<ImageFile> list_image_files(const std::string& dir, const std::string& key,
                                        const std::optional<std::string>& caption_ext) {
  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (ec || !fs::exists(status)) throw UsageError(key + ": folder " + util::quoted(dir) + " does not exist");
  if (!fs::is_directory(status)) throw UsageError(key + ": " + util::quoted(dir) + " is not a folder");
  std::vector<ImageFile> files;
  fs::directory_iterator it(dir, ec);
  if (ec) throw UsageError(key + ": cannot list " + util::quoted(dir) + ": " + ec.message());
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !has_image_extension(name)) continue;
    // A folder named like an image is not one. Anything else is kept, so that reading it
    // names it: a dangling link, a FIFO or a device (an error, or skipped with a warning under
    // data.skip_bad_images — never silently).
    if (entry.is_directory(ec)) continue;
    files.push_back({entry.path().string(), std::nullopt});
  }
  std::sort(files.begin(), files.end(), [](const ImageFile& a, const ImageFile& b) { return a.path < b.path; });
  if (caption_ext) {
    for (auto& f : files) f.caption = read_caption_file(f.path, *caption_ext);
  }
  return files;
}

std::optional<std::string> read_caption_file(const std::string& image, const std::string& ext) {
  const fs::path caption_path = fs::path(image).replace_extension(ext);
  util::require_regular_file(caption_path.string());
  std::ifstream in(caption_path);
  if (!in) return std::nullopt;
  // kohya's convention: the caption is the file's first line.
  std::string caption;
  std::getline(in, caption);
  caption = util::trim(caption);
  if (!util::is_valid_utf8(caption)) {
    throw UsageError("data.caption_ext: caption file " + util::quoted(caption_path.string()) +
                         " is not UTF-8 text: " + util::quoted(caption),
                     "captions are one line of UTF-8 text; re-save the file as UTF-8 or remove it");
  }
  if (caption.empty()) return std::nullopt;
  return caption;
}

SortedImageFiles sort_out_image_files(const std::string& dir, const std::string& key) {
  SortedImageFiles out;
  for (const ImageFile& f : list_image_files(dir, key)) {
    (image_format_of_file(f.path).empty() ? out.not_images : out.images).push_back(f.path);
  }
  return out;
}

}  // namespace sdxl::data
