#include "sdxl_dreambooth/train/data_order.h"

#include "sdxl_dreambooth/error.h"

#include <numeric>
#include <random>

namespace sdxl::train {
namespace {

// Fisher-Yates with mt19937_64, whose output the C++ standard fixes: the same order with every
// compiler and library (std::shuffle's is not specified).
template <typename T>
void shuffle(std::vector<T>& v, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::int64_t i = static_cast<std::int64_t>(v.size()) - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
    std::swap(v[static_cast<std::size_t>(i)], v[static_cast<std::size_t>(j)]);
  }
}

std::int64_t total(const std::vector<std::int64_t>& sizes) {
  return std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0});
}

}  // namespace

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

DataOrder::DataOrder(std::vector<std::int64_t> group_sizes, std::int64_t batch_size, int world_size,
                     std::uint64_t seed)
    : groups_(std::move(group_sizes)), n_(total(groups_)), batch_(batch_size), world_(world_size), seed_(seed) {
  bool empty_group = groups_.empty();
  for (auto g : groups_) empty_group = empty_group || g < 1;
  if (empty_group || batch_ < 1 || world_ < 1) {
    throw Error("internal: DataOrder needs non-empty groups, batch and world (got " + std::to_string(n_) +
                " examples in " + std::to_string(groups_.size()) + " groups, " + std::to_string(batch_) + ", " +
                std::to_string(world_) + ")");
  }
}

std::int64_t DataOrder::group_batches(std::size_t k) const {
  const std::int64_t global = batch_ * world_;
  return (groups_.at(k) + global - 1) / global;
}

std::int64_t DataOrder::batches_per_epoch() const {
  std::int64_t n = 0;
  for (std::size_t k = 0; k < groups_.size(); ++k) n += group_batches(k);
  return n;
}

std::vector<std::int64_t> DataOrder::permutation(std::int64_t epoch) const {
  const std::uint64_t epoch_seed = derive_seed(seed_, 1000 + static_cast<std::uint64_t>(epoch));
  std::vector<std::int64_t> out;
  std::int64_t offset = 0;
  for (std::size_t k = 0; k < groups_.size(); ++k) {
    std::vector<std::int64_t> p(static_cast<std::size_t>(groups_[k]));
    std::iota(p.begin(), p.end(), offset);
    // One group keeps the stream runs had before buckets, so their order is unchanged.
    shuffle(p, groups_.size() == 1 ? epoch_seed : derive_seed(epoch_seed, k));
    out.insert(out.end(), p.begin(), p.end());
    offset += groups_[k];
  }
  return out;
}

const std::vector<std::int64_t>& DataOrder::epoch_batches(std::int64_t epoch) const {
  if (epoch == cached_epoch_) return cached_;
  const std::vector<std::int64_t> p = permutation(epoch);
  const std::int64_t global = batch_ * world_;
  std::vector<std::vector<std::int64_t>> batches;
  std::int64_t offset = 0;
  for (std::size_t k = 0; k < groups_.size(); ++k) {
    for (std::int64_t j = 0; j < group_batches(k); ++j) {
      std::vector<std::int64_t> b;
      for (std::int64_t i = 0; i < global; ++i) b.push_back(p[static_cast<std::size_t>(offset + (j * global + i) % groups_[k])]);
      batches.push_back(std::move(b));
    }
    offset += groups_[k];
  }
  if (groups_.size() > 1) shuffle(batches, derive_seed(seed_, 2000 + static_cast<std::uint64_t>(epoch)));
  cached_.clear();
  for (const auto& b : batches) cached_.insert(cached_.end(), b.begin(), b.end());
  cached_epoch_ = epoch;
  return cached_;
}

std::vector<std::int64_t> DataOrder::batch(std::int64_t g, int rank) const {
  const std::int64_t per_epoch = batches_per_epoch();
  const auto& batches = epoch_batches(g / per_epoch);
  const std::int64_t start = (g % per_epoch) * batch_ * world_ + rank * batch_;
  return {batches.begin() + start, batches.begin() + start + batch_};
}

}  // namespace sdxl::train
