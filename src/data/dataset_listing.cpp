#include "sdxl_dreambooth/data/dataset_listing.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

namespace fs = std::filesystem;

namespace sdxl::data {
namespace {

const std::regex& kohya_folder_name() {
  static const std::regex re("^([0-9]+)_(.+)$");
  return re;
}

bool is_metadata_file(const fs::path& p) {
  const std::string name = p.filename().string();
  return name == "metadata.jsonl" || name == "metadata.csv";
}

// One row of a metadata file: its fields by column, and where it is.
struct MetadataRow {
  std::map<std::string, nlohmann::json> fields;
  std::string where;  // "FILE line N"
};

// RFC 4180: comma-separated fields, double quotes around fields with commas, quotes ("") or
// line breaks. Returns the records with the line each starts on.
std::vector<std::pair<int, std::vector<std::string>>> parse_csv(const std::string& text, const std::string& file) {
  std::vector<std::pair<int, std::vector<std::string>>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, any = false;
  int line = 1, start = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == '"' && field.empty()) {
      quoted = any = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        record.push_back(field);
        records.emplace_back(start, record);
      }
      record.clear();
      field.clear();
      any = false;
      start = ++line;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) throw UsageError(file + ": a quoted field opened on line " + std::to_string(start) + " is never closed");
  if (any || !field.empty()) {
    record.push_back(field);
    records.emplace_back(start, record);
  }
  return records;
}

std::string read_text(const fs::path& path, const std::string& key) {
  util::require_regular_file(path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(key + ": cannot read " + util::quoted(path.string()));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The rows of metadata.jsonl (one JSON object per line) or metadata.csv (a header row, then
// one row per image). A row that is not an object, or a CSV row of another width, is an error
// (or, with `skip`, a warning).
std::vector<MetadataRow> read_metadata(const fs::path& path, const std::string& key, bool skip,
                                       std::vector<std::string>& warnings) {
  std::string text = read_text(path, key);
  const std::string file = path.string();
  // Excel's "CSV UTF-8" starts with a byte-order mark; pandas and datasets read past it.
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  std::vector<MetadataRow> rows;
  auto bad = [&](const std::string& where, const std::string& what) {
    if (!skip) throw UsageError(key + ": " + where + ": " + what, "fix the row, or set data.skip_bad_images = true");
    warnings.push_back(where + ": " + what + "; row skipped");
  };
  if (path.extension() == ".jsonl") {
    std::size_t begin = 0;
    for (int line = 1; begin <= text.size(); ++line) {
      std::size_t end = text.find('\n', begin);
      if (end == std::string::npos) end = text.size();
      const std::string row = util::trim(text.substr(begin, end - begin));
      begin = end + 1;
      if (row.empty()) continue;
      const std::string where = file + " line " + std::to_string(line);
      if (!util::is_valid_utf8(row)) {
        bad(where, "not UTF-8 text");
        continue;
      }
      nlohmann::json j = nlohmann::json::parse(row, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) {
        bad(where, "expected a JSON object such as {\"file_name\": \"1.png\", \"text\": \"...\"}, got " +
                       util::quoted(row.size() > 60 ? row.substr(0, 57) + "..." : row));
        continue;
      }
      MetadataRow r{{}, where};
      for (auto it = j.begin(); it != j.end(); ++it) r.fields[it.key()] = it.value();
      rows.push_back(std::move(r));
    }
    return rows;
  }
  if (!util::is_valid_utf8(text)) throw UsageError(key + ": " + file + " is not UTF-8 text");
  const auto records = parse_csv(text, file);
  if (records.empty()) return rows;
  const std::vector<std::string>& header = records.front().second;
  for (std::size_t k = 1; k < records.size(); ++k) {
    const auto& [line, values] = records[k];
    const std::string where = file + " line " + std::to_string(line);
    if (values.size() != header.size()) {
      bad(where, std::to_string(values.size()) + " fields, the header has " + std::to_string(header.size()));
      continue;
    }
    MetadataRow r{{}, where};
    for (std::size_t c = 0; c < header.size(); ++c) r.fields[util::trim(header[c])] = values[c];
    rows.push_back(std::move(r));
  }
  return rows;
}

DatasetListing list_imagefolder(const std::string& dir, const std::string& key, const DatasetOptions& o) {
  DatasetListing out;
  out.format = "imagefolder";
  std::vector<fs::path> metadata;
  std::vector<std::string> images;  // every image file, to say which no row names
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_metadata_file(it->path())) metadata.push_back(it->path());
    if (!it->is_directory(ec) && has_image_extension(it->path().string())) {
      images.push_back(it->path().lexically_normal().string());
    }
  }
  std::sort(metadata.begin(), metadata.end());
  if (metadata.empty()) {
    throw UsageError(key + ": " + util::quoted(dir) + " has no metadata.jsonl or metadata.csv (imagefolder layout)",
                     "add one (a row per image: file_name and " + util::quoted(o.caption_column) +
                         "), or set data.format = \"folder\" (or \"auto\")");
  }
  std::map<std::string, std::string> listed;  // normalized path -> where
  std::size_t skipped = 0;
  for (const auto& m : metadata) {
    for (const MetadataRow& row : read_metadata(m, key, o.skip_bad_rows, out.warnings)) {
      std::string problem;
      const auto name = row.fields.find("file_name");
      const auto caption = row.fields.find(o.caption_column);
      fs::path image;
      if (name == row.fields.end() || !name->second.is_string() || name->second.get<std::string>().empty()) {
        problem = "no file_name (the image's path relative to " + util::quoted(m.parent_path().string()) + ")";
      } else if (caption == row.fields.end()) {
        problem = "no " + util::quoted(o.caption_column) + " column (data.caption_column)";
      } else if (!caption->second.is_string() && !caption->second.is_null()) {
        problem = "its " + util::quoted(o.caption_column) + " is not text";
      } else {
        image = (m.parent_path() / name->second.get<std::string>()).lexically_normal();
        if (!fs::is_regular_file(image, ec)) {
          problem = "file_name " + util::quoted(name->second.get<std::string>()) + " does not exist";
        } else if (!has_image_extension(image.string())) {
          problem = "file_name " + util::quoted(name->second.get<std::string>()) + " is not a JPEG, PNG or WebP image";
        } else if (auto seen = listed.find(image.string()); seen != listed.end()) {
          throw UsageError(key + ": " + row.where + ": " + util::quoted(image.string()) + " is listed again (first at " +
                           seen->second + ")");
        }
      }
      if (!problem.empty()) {
        if (!o.skip_bad_rows) {
          throw UsageError(key + ": " + row.where + ": " + problem, "fix the row, or set data.skip_bad_images = true");
        }
        out.warnings.push_back(row.where + ": " + problem + "; row skipped");
        ++skipped;
        continue;
      }
      listed.emplace(image.string(), row.where);
      // As HF datasets joins it: used, but said, since it is outside the folder given.
      const fs::path inside = image.lexically_relative(fs::path(dir).lexically_normal());
      if (inside.empty() || *inside.begin() == "..") {
        out.warnings.push_back(row.where + ": file_name " + util::quoted(image.string()) + " lies outside " +
                               util::quoted(dir));
      }
      ImageFile f{image.string(), std::nullopt};
      if (caption->second.is_string() && !util::trim(caption->second.get<std::string>()).empty()) {
        f.caption = util::trim(caption->second.get<std::string>());
      }
      out.files.push_back(std::move(f));
    }
  }
  if (skipped) out.warnings.push_back(std::to_string(skipped) + " metadata row(s) skipped (data.skip_bad_images)");
  // Images the metadata does not name are not trained on: said, with the first of them.
  std::vector<std::string> unlisted;
  for (const auto& image : images) {
    if (!listed.count(image)) unlisted.push_back(image);
  }
  if (!unlisted.empty()) {
    std::sort(unlisted.begin(), unlisted.end());
    out.warnings.push_back(key + ": " + std::to_string(unlisted.size()) + " image(s) in " + util::quoted(dir) +
                           " have no metadata row and are not used (first: " + util::quoted(unlisted.front()) + ")");
  }
  std::sort(out.files.begin(), out.files.end(), [](const ImageFile& a, const ImageFile& b) { return a.path < b.path; });
  return out;
}

DatasetListing list_kohya(const std::string& dir, const std::string& key, const DatasetOptions& o) {
  DatasetListing out;
  out.format = "kohya";
  std::vector<fs::path> folders;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) folders.push_back(it->path());
  }
  std::sort(folders.begin(), folders.end());
  for (const auto& folder : folders) {
    const std::string name = folder.filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, kohya_folder_name())) {
      if (!name.empty() && name[0] != '.') {
        out.warnings.push_back(key + ": subfolder " + util::quoted(name) + " is not <repeats>_<name>; not used");
      }
      continue;
    }
    const long repeats = m[1].str().size() > 6 ? 0 : std::stol(m[1].str());
    if (repeats < 1 || repeats > 100000) {
      throw UsageError(key + ": subfolder " + util::quoted(name) + ": repeats " + m[1].str() + " is not in [1, 100000]");
    }
    std::vector<ImageFile> images = list_image_files(folder.string(), key);
    if (images.empty()) out.warnings.push_back(key + ": subfolder " + util::quoted(name) + " holds no image");
    for (ImageFile f : images) {
      f.repeats = static_cast<int>(repeats);
      if (o.caption_ext) {
        f.caption = read_caption_file(f.path, *o.caption_ext);
      } else {
        f.caption = read_caption_file(f.path, ".txt");
        if (!f.caption) f.caption = read_caption_file(f.path, ".caption");
      }
      out.files.push_back(std::move(f));
    }
  }
  // kohya reads only the <repeats>_<name> subfolders: images beside them are not trained on.
  if (const std::size_t loose = list_image_files(dir, key).size()) {
    out.warnings.push_back(key + ": " + std::to_string(loose) + " image(s) directly in " + util::quoted(dir) +
                           " are not used (kohya layout: images go in <repeats>_<name> subfolders)");
  }
  return out;
}

}  // namespace

std::string detect_dataset_format(const std::string& dir) {
  std::error_code ec;
  for (const char* m : {"metadata.jsonl", "metadata.csv"}) {
    if (fs::exists(fs::path(dir) / m, ec)) return "imagefolder";
  }
  // Images directly in the folder keep it a plain folder, whatever its subfolders are called.
  bool kohya = false;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_directory(ec)) {
      kohya = kohya || std::regex_match(name, kohya_folder_name());
    } else if (!name.empty() && name[0] != '.' && has_image_extension(name)) {
      return "folder";
    }
  }
  return kohya ? "kohya" : "folder";
}

DatasetListing list_dataset(const std::string& dir, const std::string& key, const DatasetOptions& o) {
  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (ec || !fs::exists(status)) throw UsageError(key + ": folder " + util::quoted(dir) + " does not exist");
  if (!fs::is_directory(status)) throw UsageError(key + ": " + util::quoted(dir) + " is not a folder");
  const std::string format = o.format == "auto" ? detect_dataset_format(dir) : o.format;
  DatasetListing out;
  if (format == "imagefolder") {
    out = list_imagefolder(dir, key, o);
  } else if (format == "kohya") {
    out = list_kohya(dir, key, o);
  } else if (format == "folder") {
    out.format = "folder";
    out.files = list_image_files(dir, key, o.caption_ext);
    // Chosen by itself for a folder holding images: kohya-named subfolders beside them are not read.
    if (o.format == "auto") {
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!it->is_directory(ec) || !std::regex_match(name, kohya_folder_name())) continue;
        out.warnings.push_back(key + ": subfolder " + util::quoted(name) + " is not read: the folder holds images "
                               "itself, so it is a plain folder (set data.format = \"kohya\" to train the "
                               "<repeats>_<name> subfolders)");
      }
    }
  } else {
    throw UsageError("data.format: expected auto, folder, imagefolder or kohya, got " + util::quoted(format));
  }
  if (out.files.empty()) {
    throw UsageError(key + ": no JPEG, PNG or WebP image in " + util::quoted(dir) + " (" + out.format + " layout)",
                     out.format == "imagefolder" ? "its metadata rows name no usable image"
                     : out.format == "kohya"     ? "kohya layout: images go in subfolders named <repeats>_<name>"
                                                 : "");
  }
  return out;
}

}  // namespace sdxl::data
