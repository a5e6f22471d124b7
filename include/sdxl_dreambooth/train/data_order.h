// Which examples each rank trains on at each micro-batch: a fresh shuffle per epoch derived
// from (seed, epoch) alone, so the order is reproducible and a resumed run needs only the
// micro-batch counter. An epoch's last global batch is filled up from the start of the same
// shuffle (as torch's DistributedSampler pads), so every batch has the same shape.
#pragma once

#include <cstdint>
#include <vector>

namespace sdxl::train {

class DataOrder {
 public:
  DataOrder(std::int64_t dataset_size, std::int64_t batch_size, int world_size, std::uint64_t seed);

  std::int64_t dataset_size() const { return n_; }
  // Global batches (batch_size × world_size examples) per epoch.
  std::int64_t batches_per_epoch() const;
  std::int64_t epoch_of(std::int64_t global_batch) const { return global_batch / batches_per_epoch(); }
  // Dataset indices of `rank`'s share of global batch `g` (counting across epochs).
  std::vector<std::int64_t> batch(std::int64_t g, int rank) const;
  // The shuffle of `epoch`: a permutation of [0, dataset_size).
  std::vector<std::int64_t> permutation(std::int64_t epoch) const;

 private:
  std::int64_t n_, batch_;
  int world_;
  std::uint64_t seed_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> cached_;
};

// splitmix64: independent, well-mixed seeds for the separate random streams of a run.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);

}  // namespace sdxl::train
