#include "sdxl_dreambooth/train/prior_mix.h"

#include "sdxl_dreambooth/error.h"

#include <algorithm>
#include <string>

namespace sdxl::train {

PriorMix::PriorMix(const std::vector<SubsetExamples>& subsets, const std::vector<data::BucketSize>& instance_sizes,
                   const std::vector<data::BucketSize>& class_sizes) {
  const auto add = [&](const ExampleRef& ref) {
    const data::BucketSize& size = (ref.klass ? class_sizes : instance_sizes).at(ref.group);
    auto it = std::find(sizes_.begin(), sizes_.end(), size);
    if (it == sizes_.end()) {
      sizes_.push_back(size);
      groups_.emplace_back();
      it = sizes_.end() - 1;
    }
    groups_[static_cast<std::size_t>(it - sizes_.begin())].push_back(ref);
  };
  for (const SubsetExamples& s : subsets) {
    if (s.instance.empty() || s.klass.empty()) throw Error("internal: a subset without instance or class examples");
    const std::size_t n = std::max(s.instance.size(), s.klass.size());
    for (std::size_t j = 0; j < n; ++j) add(s.instance[j % s.instance.size()]);
    for (std::size_t j = 0; j < n; ++j) add(s.klass[j % s.klass.size()]);
  }
}

std::int64_t PriorMix::size() const {
  std::int64_t n = 0;
  for (const auto& g : groups_) n += static_cast<std::int64_t>(g.size());
  return n;
}

std::vector<std::int64_t> PriorMix::group_sizes() const {
  std::vector<std::int64_t> out;
  for (const auto& g : groups_) out.push_back(static_cast<std::int64_t>(g.size()));
  return out;
}

std::int64_t PriorMix::class_examples(std::size_t k) const {
  const auto& g = groups_.at(k);
  return std::count_if(g.begin(), g.end(), [](const ExampleRef& e) { return e.klass; });
}

const ExampleRef& PriorMix::example(std::int64_t i) const {
  for (const auto& g : groups_) {
    if (i < static_cast<std::int64_t>(g.size())) return g[static_cast<std::size_t>(i)];
    i -= static_cast<std::int64_t>(g.size());
  }
  throw Error("internal: example " + std::to_string(i) + " past the mixed prior examples");
}

}  // namespace sdxl::train
