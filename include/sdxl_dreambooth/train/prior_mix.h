// Prior preservation when a run's examples come in several sizes (data.bucketing, a subset's
// own resolution). A step's rows share one size, so instance and class rows cannot pair up as
// diffusers' [instance…; class…] halves; class images instead become examples of their size's
// group, as kohya's regularization images do, and the loss weighs them by prior.loss_weight
// (train/diffusion_loss.h). Per subset an epoch holds as many class as instance examples —
// max(instance examples, class images) of each, the smaller set cycling — the balance
// diffusers' pairs have.
#pragma once

#include "sdxl_dreambooth/data/buckets.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sdxl::train {

// An encoded example: instance or class, its group (size) in that set and its row there.
struct ExampleRef {
  bool klass = false;
  std::size_t group = 0;
  std::int64_t row = 0;
};

// Where one subset's examples were encoded.
struct SubsetExamples {
  std::vector<ExampleRef> instance, klass;
};

class PriorMix {
 public:
  PriorMix() = default;
  // `instance_sizes` / `class_sizes`: the size of each group of the instance / class set.
  PriorMix(const std::vector<SubsetExamples>& subsets, const std::vector<data::BucketSize>& instance_sizes,
           const std::vector<data::BucketSize>& class_sizes);

  bool empty() const { return groups_.empty(); }
  std::int64_t size() const;
  // Examples per group, for the data order (each global batch from one group).
  std::vector<std::int64_t> group_sizes() const;
  const data::BucketSize& group_size(std::size_t k) const { return sizes_.at(k); }
  // How many of group k's examples are class examples.
  std::int64_t class_examples(std::size_t k) const;
  // Example `i`, numbered group after group.
  const ExampleRef& example(std::int64_t i) const;

 private:
  std::vector<data::BucketSize> sizes_;
  std::vector<std::vector<ExampleRef>> groups_;
};

}  // namespace sdxl::train
