// Which examples each rank trains on at each micro-batch: a fresh shuffle per epoch derived
// from (seed, epoch) alone, so the order is reproducible and a resumed run needs only the
// micro-batch counter. With aspect-ratio buckets the examples come in groups (one per
// bucket, numbered group after group) and every global batch — all ranks' micro-batches of
// one step — is drawn from one group: each group is shuffled and cut into global batches,
// then the epoch's batches are shuffled. A group's last global batch is filled up from the
// start of the same group's shuffle (as torch's DistributedSampler pads, and kohya repeats
// images of a small bucket), so every batch has the same shape and no rank is ever alone in a
// bucket.
#pragma once

#include <cstdint>
#include <vector>

namespace sdxl::train {

class DataOrder {
 public:
  DataOrder(std::vector<std::int64_t> group_sizes, std::int64_t batch_size, int world_size, std::uint64_t seed);
  DataOrder(std::int64_t dataset_size, std::int64_t batch_size, int world_size, std::uint64_t seed)
      : DataOrder(std::vector<std::int64_t>{dataset_size}, batch_size, world_size, seed) {}

  std::int64_t dataset_size() const { return n_; }
  const std::vector<std::int64_t>& group_sizes() const { return groups_; }
  // Global batches (batch_size × world_size examples) per epoch, in all and of group k.
  std::int64_t batches_per_epoch() const;
  std::int64_t group_batches(std::size_t k) const;
  std::int64_t epoch_of(std::int64_t global_batch) const { return global_batch / batches_per_epoch(); }
  // Dataset indices of `rank`'s share of global batch `g` (counting across epochs).
  std::vector<std::int64_t> batch(std::int64_t g, int rank) const;
  // The shuffle of `epoch` before it is cut into batches: each group's permutation of its own
  // examples, group after group (with one group, a permutation of [0, dataset_size)).
  std::vector<std::int64_t> permutation(std::int64_t epoch) const;

 private:
  const std::vector<std::int64_t>& epoch_batches(std::int64_t epoch) const;

  std::vector<std::int64_t> groups_;
  std::int64_t n_, batch_;
  int world_;
  std::uint64_t seed_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> cached_;  // the epoch's global batches, one after another
};

// splitmix64: independent, well-mixed seeds for the separate random streams of a run.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);

}  // namespace sdxl::train
