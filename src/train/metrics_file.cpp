#include "sdxl_dreambooth/train/metrics_file.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::train {

MetricsFile::MetricsFile(std::filesystem::path path, const std::vector<MetricsRow>& rows, bool writer)
    : path_(std::move(path)), writer_(writer) {
  if (!writer_) return;
  out_.open(path_);
  out_ << "step,loss,lr,grad_norm,step_seconds\n";
  for (const auto& row : rows) append(row);
  if (!out_) throw Error("cannot write " + path_.string());
}

void MetricsFile::append(const MetricsRow& r) {
  if (!writer_) return;
  out_ << r.step << ',' << util::format_with("%.8g", r.loss) << ',' << util::format_with("%.8g", r.lr) << ','
       << util::format_with("%.8g", r.grad_norm) << ',' << util::format_with("%.6f", r.step_seconds) << '\n';
}

void MetricsFile::flush() {
  if (!writer_) return;
  out_.flush();
  if (!out_) throw Error("cannot write " + path_.string());
}

}  // namespace sdxl::train
