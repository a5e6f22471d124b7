// The training images of data.instance_dir in the layouts users bring, each found by what the
// folder holds (or named with data.format):
//  - "imagefolder" (diffusers / Hugging Face datasets): metadata.jsonl or metadata.csv files, in
//    the folder or its subfolders, each row naming an image (`file_name`, relative to the
//    metadata file's folder) and its caption (data.caption_column, default "text");
//  - "kohya": subfolders named <repeats>_<name> (kohya's sd-scripts), each image repeated
//    <repeats> times per epoch, captions in sidecar files (data.caption_ext, else .txt, else
//    .caption);
//  - "folder": images directly in the folder, optional sidecar captions (data.caption_ext).
#pragma once

#include "sdxl_dreambooth/data/image_folder.h"

#include <optional>
#include <string>
#include <vector>

namespace sdxl::data {

struct DatasetOptions {
  std::string format = "auto";  // auto | folder | imagefolder | kohya
  std::optional<std::string> caption_ext;
  std::string caption_column = "text";
  // data.skip_bad_images: a bad metadata row is a warning (and a count) instead of an error.
  bool skip_bad_rows = false;
};

struct DatasetListing {
  std::string format;                 // the one used
  std::vector<ImageFile> files;       // sorted by path
  std::vector<std::string> warnings;  // for the log: skipped rows, folders, unlisted images
};

// Throws UsageError naming `key`, the file, the line and what was expected for a folder that
// is not one of the layouts, a metadata row that is not JSON / CSV, names a missing file, lacks
// the caption column or repeats a file; an empty listing is an error too.
DatasetListing list_dataset(const std::string& dir, const std::string& key, const DatasetOptions& options);

// "auto" resolved: imagefolder when a metadata.jsonl / metadata.csv lies in `dir`, else folder
// when images lie directly in it, else kohya when a subfolder is named <repeats>_<name>.
std::string detect_dataset_format(const std::string& dir);

}  // namespace sdxl::data
