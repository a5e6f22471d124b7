// The images of a training folder (instance or class images), with optional per-image
// captions from sidecar files (kohya's convention: photo.jpg + photo.txt).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sdxl::data {

struct ImageFile {
  std::string path;
  std::optional<std::string> caption;  // set when a non-empty caption file exists
  int repeats = 1;                     // times per epoch (kohya folders' <repeats>_<name>)
};

// True for the extensions decode_image reads: .jpg .jpeg .png .webp, any case.
bool has_image_extension(const std::string& path);

// The image files directly in `dir`, sorted by name (hidden files skipped). With
// `caption_ext` (".txt"), each image's caption is read from the file with the same stem.
// Throws UsageError naming `key` when the folder is missing or not a folder; an empty
// result is the caller's to judge.
std::vector<ImageFile> list_image_files(const std::string& dir, const std::string& key,
                                        const std::optional<std::string>& caption_ext = std::nullopt);

// list_image_files(dir, key) sorted out by each file's first bytes: the images, and the files
// named like images that are not JPEG, PNG or WebP (a class folder's count must not include them).
struct SortedImageFiles {
  std::vector<std::string> images;
  std::vector<std::string> not_images;
};
SortedImageFiles sort_out_image_files(const std::string& dir, const std::string& key);

// The caption of `image` from its sidecar file with extension `ext` (first line, trimmed);
// nothing when there is no such file or it is empty. A caption that is not UTF-8 is a
// UsageError naming the file.
std::optional<std::string> read_caption_file(const std::string& image, const std::string& ext);

}  // namespace sdxl::data
