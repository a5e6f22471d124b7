#include "support/one_rank_collectives.h"

namespace sdxl::test {
namespace {

class OneRankHost final : public dist::HostCollectives {
 public:
  explicit OneRankHost(dist::CollectiveLog* log) : log_(log) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  double all_reduce_sum(double v, const char* what) override { return note(what, v); }
  double all_reduce_max(double v, const char* what) override { return note(what, v); }
  double all_reduce_min(double v, const char* what) override { return note(what, v); }
  void all_reduce_max(std::vector<std::uint8_t>&, const char* what) override { note(what, 0); }
  void all_reduce_max(std::vector<std::uint64_t>&, const char* what) override { note(what, 0); }
  void broadcast(std::string&, int, const char* what) override { note(what, 0); }
  torch::Tensor all_gather_rows(const torch::Tensor& t, const char* what) override {
    note(what, 0);
    return t.clone();
  }

 private:
  double note(const char* what, double v) {
    log_->record({"none", "", what, &context_, "", "host", 0});
    return v;
  }
  dist::CollectiveLog* log_;
};

class OneRankDevice final : public dist::DeviceCollectives {
 public:
  OneRankDevice(dist::HostCollectives& host, const torch::Device& device, dist::CollectiveLog* log)
      : DeviceCollectives(host), device_(device), log_(log) {}
  std::string backend() const override { return "none"; }
  torch::Device device() const override { return device_; }
  void all_reduce_sum(dist::DeviceBuffer& b, const char* what) override { note(b, what); }
  void broadcast(dist::DeviceBuffer& b, int, const char* what) override { note(b, what); }

 private:
  void note(const dist::DeviceBuffer& b, const char* what) {
    check(b, what);
    log_->record({"none", "", what, &host_.context(), "", "", b.tensor().numel()});
  }
  torch::Device device_;
  dist::CollectiveLog* log_;
};

}  // namespace

std::unique_ptr<dist::Collectives> make_one_rank_collectives(const torch::Device& device) {
  auto log = std::make_unique<dist::CollectiveLog>();
  auto host = std::make_unique<OneRankHost>(log.get());
  auto dev = std::make_unique<OneRankDevice>(*host, device, log.get());
  return std::make_unique<dist::Collectives>(std::move(log), std::move(host), std::move(dev));
}

}  // namespace sdxl::test
