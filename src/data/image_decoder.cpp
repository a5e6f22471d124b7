#include "sdxl_dreambooth/data/image_decoder.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/regular_file.h"

#include <jpeglib.h>
// jpeglib.h first: jerror.h needs its types.
#include <jerror.h>
#include <libexif/exif-data.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

namespace sdxl::data {
namespace {

// ---- EXIF -------------------------------------------------------------------------------

// Orientation tag (0x0112) of an EXIF block; 1 when absent or unreadable (PIL does the same:
// a broken EXIF block does not make the image unusable).
int exif_orientation(const std::vector<std::uint8_t>& exif) {
  if (exif.empty()) return 1;
  std::unique_ptr<ExifData, void (*)(ExifData*)> ed(exif_data_new_from_data(exif.data(),
                                                                            static_cast<unsigned>(exif.size())),
                                                    exif_data_unref);
  if (!ed) return 1;
  ExifEntry* entry = exif_data_get_entry(ed.get(), EXIF_TAG_ORIENTATION);
  if (!entry || entry->format != EXIF_FORMAT_SHORT || entry->components < 1) return 1;
  const int v = exif_get_short(entry->data, exif_data_get_byte_order(ed.get()));
  return (v >= 1 && v <= 8) ? v : 1;
}

// libexif wants the "Exif\0\0" header that JPEG APP1 has and PNG/WebP EXIF chunks lack.
std::vector<std::uint8_t> with_exif_header(const std::uint8_t* data, std::size_t n) {
  static const std::uint8_t header[6] = {'E', 'x', 'i', 'f', 0, 0};
  std::vector<std::uint8_t> out;
  if (n >= 6 && std::memcmp(data, header, 6) == 0) return {data, data + n};
  out.assign(header, header + 6);
  out.insert(out.end(), data, data + n);
  return out;
}

void check_size(std::uint64_t w, std::uint64_t h, const std::string& name) {
  if (w == 0 || h == 0) throw Error(name + ": image has no pixels (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  if (w * h > kMaxImagePixels) {
    throw Error(name + ": image is " + std::to_string(w) + "x" + std::to_string(h) + " pixels, more than the " +
                std::to_string(kMaxImagePixels) + " accepted", "downscale it before training");
  }
}

// ---- JPEG (libjpeg-turbo) ---------------------------------------------------------------

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool premature_eof;
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_on_message(j_common_ptr cinfo, int level) {
  // Warnings are silent, except a premature end of data: libjpeg would pad the image with
  // grey, PIL refuses a truncated file, and so do we.
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) err->premature_eof = true;
}

struct JpegRaw {
  int width = 0, height = 0, components = 0;
  J_COLOR_SPACE file_space = JCS_UNKNOWN;
  std::vector<std::uint8_t> pixels;
  std::vector<std::uint8_t> exif;
};

// C-style on purpose: longjmp out of libjpeg lands here, so no object with a destructor
// lives in this frame; everything that owns memory belongs to the caller.
bool jpeg_decode_raw(const std::uint8_t* data, std::size_t size, JpegRaw* out, JpegErrorManager* err,
                     jpeg_decompress_struct* cinfo) {
  cinfo->err = jpeg_std_error(&err->pub);
  err->pub.error_exit = jpeg_on_error;
  err->pub.emit_message = jpeg_on_message;
  err->premature_eof = false;
  err->message[0] = 0;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(cinfo, TRUE);
  for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      out->exif.assign(m->data, m->data + m->data_length);
      break;
    }
  }
  out->file_space = cinfo->jpeg_color_space;
  const bool cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
  cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  if (static_cast<std::uint64_t>(cinfo->image_width) * cinfo->image_height > kMaxImagePixels) {
    out->width = static_cast<int>(cinfo->image_width);
    out->height = static_cast<int>(cinfo->image_height);
    jpeg_destroy_decompress(cinfo);
    return true;  // the caller reports the size
  }
  jpeg_start_decompress(cinfo);
  out->width = static_cast<int>(cinfo->output_width);
  out->height = static_cast<int>(cinfo->output_height);
  out->components = cinfo->output_components;
  const std::size_t stride = static_cast<std::size_t>(out->width) * out->components;
  out->pixels.resize(stride * out->height);
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = out->pixels.data() + stride * cinfo->output_scanline;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  jpeg_destroy_decompress(cinfo);
  return true;
}

// PIL's MULDIV255: a * b / 255 rounded, in integers.
inline int muldiv255(int a, int b) {
  const int tmp = a * b + 128;
  return ((tmp >> 8) + tmp) >> 8;
}

DecodedImage decode_jpeg(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  JpegRaw raw;
  JpegErrorManager err;
  jpeg_decompress_struct cinfo;
  if (!jpeg_decode_raw(bytes.data(), bytes.size(), &raw, &err, &cinfo)) {
    throw Error(name + ": corrupt or unsupported JPEG: " + err.message);
  }
  check_size(raw.width, raw.height, name);
  if (err.premature_eof) {
    throw Error(name + ": truncated JPEG (the data ends before the image does)", "re-copy or re-export the file");
  }
  DecodedImage d;
  d.format = "JPEG";
  d.image.width = raw.width;
  d.image.height = raw.height;
  if (raw.components == 4) {
    // PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with cmyk2rgb.
    d.source_mode = "CMYK";
    const std::size_t n = static_cast<std::size_t>(raw.width) * raw.height;
    d.image.pixels.resize(n * 3);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t* p = &raw.pixels[4 * i];
      const int nk = p[3];  // 255 - K, with K inverted
      for (int c = 0; c < 3; ++c) {
        d.image.pixels[3 * i + c] = static_cast<std::uint8_t>(std::clamp(nk - muldiv255(255 - p[c], nk), 0, 255));
      }
    }
  } else {
    d.source_mode = raw.file_space == JCS_GRAYSCALE ? "L" : "RGB";
    d.image.pixels = std::move(raw.pixels);
  }
  d.exif_orientation = exif_orientation(raw.exif);
  return d;
}

// ---- PNG (libpng) -----------------------------------------------------------------------

struct PngReader {
  const std::uint8_t* data;
  std::size_t size, pos;
  char message[256];
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->pos + n > r->size) png_error(png, "truncated PNG (the data ends before the image does)");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof r->message, "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

struct PngRaw {
  int width = 0, height = 0;
  int color_type = 0, bit_depth = 0;
  std::vector<std::uint8_t> pixels;  // RGB8 after transforms
  std::vector<png_bytep> rows;
  std::vector<std::uint8_t> exif;
};

// C-style for the same reason as jpeg_decode_raw.
bool png_decode_raw(PngReader* reader, PngRaw* out) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, png_on_error, png_on_warning);
  if (!png) {
    std::snprintf(reader->message, sizeof reader->message, "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_set_read_fn(png, reader, png_read_mem);
  png_read_info(png, info);
  out->width = static_cast<int>(png_get_image_width(png, info));
  out->height = static_cast<int>(png_get_image_height(png, info));
  out->color_type = png_get_color_type(png, info);
  out->bit_depth = png_get_bit_depth(png, info);
  png_bytep exif = nullptr;
  png_uint_32 exif_len = 0;
  if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif && exif_len > 0) out->exif.assign(exif, exif + exif_len);
  if (static_cast<std::uint64_t>(out->width) * out->height > kMaxImagePixels || out->width == 0 || out->height == 0) {
    png_destroy_read_struct(&png, &info, nullptr);
    return true;  // the caller reports the size
  }
  // To 8-bit RGB: palette through its colours (transparency ignored, as PIL's convert does),
  // low-bit grey expanded, 16-bit scaled with rounding, grey replicated, alpha dropped.
  if (out->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (out->color_type == PNG_COLOR_TYPE_GRAY && out->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (out->bit_depth == 16) png_set_scale_16(png);
  if (out->color_type == PNG_COLOR_TYPE_GRAY || out->color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  if (out->color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<std::size_t>(out->width) * 3) {
    std::snprintf(reader->message, sizeof reader->message, "unexpected row layout after conversion to RGB");
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  out->pixels.resize(static_cast<std::size_t>(out->width) * out->height * 3);
  out->rows.resize(out->height);
  for (int y = 0; y < out->height; ++y) out->rows[y] = out->pixels.data() + static_cast<std::size_t>(y) * out->width * 3;
  png_read_image(png, out->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

std::string png_mode(int color_type, int bit_depth) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return bit_depth == 16 ? "I;16" : bit_depth == 1 ? "1" : "L";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return bit_depth == 16 ? "LA;16" : "LA";
    case PNG_COLOR_TYPE_PALETTE: return "P";
    case PNG_COLOR_TYPE_RGB: return bit_depth == 16 ? "RGB;16" : "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA: return bit_depth == 16 ? "RGBA;16" : "RGBA";
  }
  return "?";
}

DecodedImage decode_png(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  PngReader reader{bytes.data(), bytes.size(), 0, {0}};
  PngRaw raw;
  if (!png_decode_raw(&reader, &raw)) throw Error(name + ": corrupt or unsupported PNG: " + reader.message);
  check_size(raw.width, raw.height, name);
  DecodedImage d;
  d.format = "PNG";
  d.source_mode = png_mode(raw.color_type, raw.bit_depth);
  d.image.width = raw.width;
  d.image.height = raw.height;
  d.image.pixels = std::move(raw.pixels);
  if (!raw.exif.empty()) d.exif_orientation = exif_orientation(with_exif_header(raw.exif.data(), raw.exif.size()));
  return d;
}

// ---- WebP (libwebp) ---------------------------------------------------------------------

DecodedImage decode_webp(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) {
    throw Error(name + ": corrupt or unsupported WebP image");
  }
  if (features.has_animation) throw Error(name + ": animated WebP images are not supported");
  check_size(features.width, features.height, name);
  int w = 0, h = 0;
  std::unique_ptr<std::uint8_t, void (*)(void*)> rgb(WebPDecodeRGB(bytes.data(), bytes.size(), &w, &h), WebPFree);
  if (!rgb) throw Error(name + ": corrupt or truncated WebP image");
  DecodedImage d;
  d.format = "WebP";
  d.source_mode = features.has_alpha ? "RGBA" : "RGB";
  d.image.width = w;
  d.image.height = h;
  d.image.pixels.assign(rgb.get(), rgb.get() + static_cast<std::size_t>(w) * h * 3);
  WebPData data{bytes.data(), bytes.size()};
  if (WebPDemuxer* demux = WebPDemux(&data)) {
    WebPChunkIterator it;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
      d.exif_orientation = exif_orientation(with_exif_header(it.chunk.bytes, it.chunk.size));
      WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(demux);
  }
  return d;
}

std::string describe_start(const std::vector<std::uint8_t>& bytes) {
  std::string s;
  for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 8); ++i) {
    const unsigned char c = bytes[i];
    if (c >= 32 && c < 127) {
      s += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      s += hex;
    }
  }
  return s;
}

// The format a file's first bytes announce ("JPEG", "PNG", "WebP"), or "".
std::string format_of(const std::uint8_t* bytes, std::size_t size) {
  auto starts = [&](const char* magic, std::size_t n, std::size_t at = 0) {
    return size >= at + n && std::memcmp(bytes + at, magic, n) == 0;
  };
  if (starts("\xFF\xD8\xFF", 3)) return "JPEG";
  if (starts("\x89PNG\r\n\x1a\n", 8)) return "PNG";
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return "WebP";
  return "";
}

}  // namespace

std::string image_format_of_file(const std::string& path) {
  if (!util::is_regular_file(path)) return "";
  std::ifstream in(path, std::ios::binary);
  std::uint8_t head[12] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  return format_of(head, static_cast<std::size_t>(in.gcount()));
}

DecodedImage decode_image(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  if (bytes.empty()) throw Error(name + ": file is empty (0 bytes)");
  const std::string format = format_of(bytes.data(), bytes.size());
  DecodedImage d;
  if (format == "JPEG") {
    d = decode_jpeg(bytes, name);
  } else if (format == "PNG") {
    d = decode_png(bytes, name);
  } else if (format == "WebP") {
    d = decode_webp(bytes, name);
  } else {
    throw Error(name + ": not a JPEG, PNG or WebP image (it starts with \"" + describe_start(bytes) + "\")");
  }
  d.image = apply_exif_orientation(d.image, d.exif_orientation);
  return d;
}

DecodedImage decode_image_file(const std::string& path) {
  util::require_regular_file(path);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw_errno("open", path);
  const std::streamoff size = in.tellg();
  if (size < 0) throw_errno("read", path);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) throw_errno("read", path);
  return decode_image(bytes, path);
}

RgbImage apply_exif_orientation(const RgbImage& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int W = in.width, H = in.height;
  const bool swap = orientation >= 5;
  RgbImage out;
  out.width = swap ? H : W;
  out.height = swap ? W : H;
  out.pixels.resize(in.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2: sx = W - 1 - x; break;                 // FLIP_LEFT_RIGHT
        case 3: sx = W - 1 - x; sy = H - 1 - y; break;  // ROTATE_180
        case 4: sy = H - 1 - y; break;                 // FLIP_TOP_BOTTOM
        case 5: sx = y; sy = x; break;                 // TRANSPOSE
        case 6: sx = y; sy = H - 1 - x; break;         // ROTATE_270 (90° clockwise)
        case 7: sx = W - 1 - y; sy = H - 1 - x; break;  // TRANSVERSE
        case 8: sx = W - 1 - y; sy = x; break;         // ROTATE_90 (90° counter-clockwise)
      }
      std::memcpy(&out.pixels[(static_cast<std::size_t>(y) * out.width + x) * 3],
                  &in.pixels[(static_cast<std::size_t>(sy) * W + sx) * 3], 3);
    }
  }
  return out;
}

}  // namespace sdxl::data
