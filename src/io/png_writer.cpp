#include "sdxl_dreambooth/io/png_writer.h"

#include "sdxl_dreambooth/error.h"

#include <fcntl.h>
#include <png.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace sdxl::io {

namespace {

// libpng reports errors by longjmp; the message is kept here and thrown as an exception
// once control is back in C++ frames.
struct ErrorSink {
  char message[256] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* sink = static_cast<ErrorSink*>(png_get_error_ptr(png));
  std::snprintf(sink->message, sizeof sink->message, "%s", msg);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

// The libpng part, free of C++ objects with destructors so longjmp cannot skip them.
bool write_with_libpng(FILE* f, const std::uint8_t* rgb, int width, int height, const png_text* texts, int ntext,
                       ErrorSink* sink) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_error, on_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (ntext > 0) png_set_text(png, info, texts, ntext);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) {
    png_write_row(png, const_cast<png_bytep>(rgb + static_cast<std::size_t>(y) * static_cast<std::size_t>(width) * 3));
  }
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

void write_png(const std::string& path, const std::uint8_t* rgb, int width, int height, const PngText& text) {
  if (width <= 0 || height <= 0) throw Error("write_png '" + path + "': empty image");
  // A name of its own, created exclusively: never a user's "<name>.tmp", and never through a
  // symbolic link someone left there.
  // (open with O_EXCL, not mkstemp: the image keeps the usual 0666-minus-umask mode that a
  // cluster's group reads, where mkstemp's files are 0600.)
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
    tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(attempt);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) throw_errno("open for writing", tmp);
  std::unique_ptr<FILE, FileCloser> f(::fdopen(fd, "wb"));
  if (!f) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw_errno("open for writing", tmp);
  }
  std::vector<png_text> texts(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    std::memset(&texts[i], 0, sizeof(png_text));
    // iTXt: UTF-8 values (prompts are UTF-8), keys are Latin-1 by the PNG spec.
    texts[i].compression = PNG_ITXT_COMPRESSION_NONE;
    texts[i].key = const_cast<char*>(text[i].first.c_str());
    texts[i].text = const_cast<char*>(text[i].second.c_str());
    texts[i].itxt_length = text[i].second.size();
  }
  ErrorSink sink;
  const bool ok = write_with_libpng(f.get(), rgb, width, height, texts.data(), static_cast<int>(texts.size()), &sink);
  if (!ok) {
    f.reset();
    std::remove(tmp.c_str());
    throw Error("write_png '" + path + "' failed: " + (sink.message[0] ? sink.message : "out of memory"));
  }
  // A failed write (a full disk) leaves no temporary file behind.
  const auto fail = [&](const char* what) {
    const int err = errno;
    std::remove(tmp.c_str());
    errno = err;
    throw_errno(what, tmp);
  };
  if (std::fflush(f.get()) != 0) fail("write");
  if (std::fclose(f.release()) != 0) fail("close");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(("rename to " + path + " from").c_str());
}

std::string encode_png(const std::uint8_t* rgb, int width, int height) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, rgb, 0, nullptr)) {
    throw Error(std::string("encode_png: ") + image.message);
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, rgb, 0, nullptr)) {
    throw Error(std::string("encode_png: ") + image.message);
  }
  out.resize(size);
  return out;
}

PngImage read_png(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    throw Error("cannot read PNG '" + path + "': " + image.message);
  }
  image.format = PNG_FORMAT_RGB;
  PngImage out;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    throw Error("cannot decode PNG '" + path + "': " + msg);
  }
  // Text chunks through the classic API (the simplified one does not expose them).
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    if (png && info && !setjmp(png_jmpbuf(png))) {
      png_init_io(png, f);
      png_read_info(png, info);
      png_textp texts = nullptr;
      int n = 0;
      png_get_text(png, info, &texts, &n);
      for (int i = 0; i < n; ++i) out.text.emplace_back(texts[i].key, texts[i].text ? texts[i].text : "");
    }
    png_destroy_read_struct(png ? &png : nullptr, info ? &info : nullptr, nullptr);
    std::fclose(f);
  }
  return out;
}

}  // namespace sdxl::io
