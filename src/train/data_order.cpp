#include "sdxl_dreambooth/train/data_order.h"

#include "sdxl_dreambooth/error.h"

#include <numeric>
#include <random>

namespace sdxl::train {

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

DataOrder::DataOrder(std::int64_t dataset_size, std::int64_t batch_size, int world_size, std::uint64_t seed)
    : n_(dataset_size), batch_(batch_size), world_(world_size), seed_(seed) {
  if (n_ < 1 || batch_ < 1 || world_ < 1) {
    throw Error("internal: DataOrder needs a non-empty dataset, batch and world (got " + std::to_string(n_) + ", " +
                std::to_string(batch_) + ", " + std::to_string(world_) + ")");
  }
}

std::int64_t DataOrder::batches_per_epoch() const {
  const std::int64_t global = batch_ * world_;
  return (n_ + global - 1) / global;
}

std::vector<std::int64_t> DataOrder::permutation(std::int64_t epoch) const {
  if (epoch == cached_epoch_) return cached_;
  std::vector<std::int64_t> p(static_cast<std::size_t>(n_));
  std::iota(p.begin(), p.end(), 0);
  // Fisher-Yates with mt19937_64, whose output the C++ standard fixes: the same order with
  // every compiler and library (std::shuffle's is not specified).
  std::mt19937_64 rng(derive_seed(seed_, 1000 + static_cast<std::uint64_t>(epoch)));
  for (std::int64_t i = n_ - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  cached_epoch_ = epoch;
  cached_ = p;
  return p;
}

std::vector<std::int64_t> DataOrder::batch(std::int64_t g, int rank) const {
  const std::int64_t per_epoch = batches_per_epoch();
  const auto p = permutation(g / per_epoch);
  const std::int64_t start = (g % per_epoch) * batch_ * world_ + rank * batch_;
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < batch_; ++i) out.push_back(p[static_cast<std::size_t>((start + i) % n_)]);
  return out;
}

}  // namespace sdxl::train
