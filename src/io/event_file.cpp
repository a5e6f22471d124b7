#include "sdxl_dreambooth/io/event_file.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/crc32c.h"
#include "sdxl_dreambooth/util/host_name.h"
#include "sdxl_dreambooth/util/strings.h"
#include "tensorboard_event.pb.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include <unistd.h>

namespace fs = std::filesystem;

namespace sdxl::io {
namespace {

namespace tb = sdxl::tensorboard;

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

tb::Event event_at(std::int64_t step) {
  tb::Event e;
  e.set_wall_time(wall_time());
  e.set_step(step);
  return e;
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::uint64_t get_le(const std::string& s, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(s[at + static_cast<std::size_t>(i)]);
  return v;
}

}  // namespace

EventFileWriter::EventFileWriter(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create the TensorBoard folder " + util::quoted(dir.string()) + ": " + ec.message());
  const auto seconds = static_cast<long long>(wall_time());
  path_ = dir / ("events.out.tfevents." + std::to_string(seconds) + "." + util::host_name() + "." +
                 std::to_string(::getpid()));
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) throw Error("cannot create " + util::quoted(path_.string()) + ": " + std::strerror(errno));
  tb::Event e = event_at(0);
  e.set_file_version("brain.Event:2");
  write_record(e.SerializeAsString());
  flush();
}

EventFileWriter::~EventFileWriter() {
  if (file_) std::fclose(file_);
}

void EventFileWriter::write_record(const std::string& bytes) {
  std::string header;
  put_u64(header, bytes.size());
  std::string record = header;
  put_u32(record, masked_crc32c(header.data(), header.size()));
  record += bytes;
  put_u32(record, masked_crc32c(bytes.data(), bytes.size()));
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    throw Error("cannot write " + util::quoted(path_.string()) + ": " + std::strerror(errno));
  }
}

void EventFileWriter::scalar(const std::string& tag, double value, std::int64_t step) {
  tb::Event e = event_at(step);
  tb::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(e.SerializeAsString());
}

void EventFileWriter::image(const std::string& tag, const std::string& png, int width, int height, std::int64_t step) {
  tb::Event e = event_at(step);
  tb::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  tb::Summary::Image* img = v->mutable_image();
  img->set_width(width);
  img->set_height(height);
  img->set_colorspace(3);
  img->set_encoded_image_string(png);
  write_record(e.SerializeAsString());
}

void EventFileWriter::text(const std::string& tag, const std::string& markdown, std::int64_t step) {
  tb::Event e = event_at(step);
  tb::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  tb::TensorProto* t = v->mutable_tensor();
  t->set_dtype(tb::DT_STRING);
  t->mutable_tensor_shape()->add_dim()->set_size(1);
  t->add_string_val(markdown);
  write_record(e.SerializeAsString());
}

void EventFileWriter::restart(std::int64_t step) {
  tb::Event e = event_at(step);
  e.mutable_session_log()->set_status(tb::SessionLog::START);
  write_record(e.SerializeAsString());
}

void EventFileWriter::flush() {
  if (std::fflush(file_) != 0) throw Error("cannot write " + util::quoted(path_.string()) + ": " + std::strerror(errno));
}

std::vector<std::string> read_event_records(const fs::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot read " + util::quoted(path.string()));
  std::string data;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) data.append(buf, n);
  std::fclose(f);
  std::vector<std::string> records;
  std::size_t at = 0;
  while (at < data.size()) {
    if (data.size() - at < 12) throw Error(path.string() + ": truncated record header at byte " + std::to_string(at));
    const std::uint64_t length = get_le(data, at, 8);
    if (static_cast<std::uint32_t>(get_le(data, at + 8, 4)) != masked_crc32c(data.data() + at, 8)) {
      throw Error(path.string() + ": bad length CRC at byte " + std::to_string(at));
    }
    if (data.size() - at - 12 < length + 4) throw Error(path.string() + ": truncated record at byte " + std::to_string(at));
    const std::string bytes = data.substr(at + 12, length);
    if (static_cast<std::uint32_t>(get_le(data, at + 12 + length, 4)) != masked_crc32c(bytes.data(), bytes.size())) {
      throw Error(path.string() + ": bad data CRC at byte " + std::to_string(at));
    }
    records.push_back(bytes);
    at += 12 + length + 4;
  }
  return records;
}

}  // namespace sdxl::io
