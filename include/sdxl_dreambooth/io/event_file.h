// A TensorBoard event file: TFRecord framing (length, masked CRC-32C of the length, the
// serialized Event, its masked CRC-32C) of the messages in proto/tensorboard_event.proto, as
// TensorBoard's EventFileWriter writes them. The file handle is owned here; every write is
// checked and names the file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace sdxl::io {

class EventFileWriter {
 public:
  // Creates `dir` and a new events.out.tfevents.<seconds>.<host>.<pid> file in it, starting with
  // the file_version event.
  explicit EventFileWriter(const std::filesystem::path& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  const std::filesystem::path& path() const { return path_; }

  void scalar(const std::string& tag, double value, std::int64_t step);
  // An image as PNG bytes (io::encode_png).
  void image(const std::string& tag, const std::string& png, int width, int height, std::int64_t step);
  // Markdown text (TensorBoard's text plugin).
  void text(const std::string& tag, const std::string& markdown, std::int64_t step);
  // SessionLog START at `step`: TensorBoard then drops what earlier files logged after `step`
  // (a resumed run's steps replace those of the run it resumes, no sawtooth).
  void restart(std::int64_t step);
  void flush();

 private:
  void write_record(const std::string& bytes);

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

// One record of an event file read back (tests, tools): the serialized Event, CRCs checked.
std::vector<std::string> read_event_records(const std::filesystem::path& path);

}  // namespace sdxl::io
