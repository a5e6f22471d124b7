#include "sdxl_dreambooth/perf/op_profile.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/perf/benchmark_report.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

namespace sdxl::perf {
namespace {

namespace kineto = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Totals {
  std::int64_t calls = 0;
  double seconds = 0;
};

// The CPU events of each thread that no other event of that thread encloses: operators nest
// (aten::linear calls aten::addmm), so only the outermost are summed.
std::map<std::string, Totals> top_level_cpu_ops(const std::vector<kineto::KinetoEvent>& events) {
  std::map<std::uint64_t, std::vector<const kineto::KinetoEvent*>> by_thread;
  for (const auto& e : events) {
    if (e.deviceType() == c10::DeviceType::CPU) by_thread[e.startThreadId()].push_back(&e);
  }
  std::map<std::string, Totals> totals;
  for (auto& [thread, list] : by_thread) {
    (void)thread;
    std::sort(list.begin(), list.end(), [](const auto* a, const auto* b) {
      return compat::profiler_event_start_seconds(*a) < compat::profiler_event_start_seconds(*b);
    });
    double open_until = -1;
    for (const auto* e : list) {
      const double start = compat::profiler_event_start_seconds(*e);
      if (start < open_until) continue;
      const double d = compat::profiler_event_seconds(*e);
      open_until = start + d;
      Totals& t = totals[e->name()];
      ++t.calls;
      t.seconds += d;
    }
  }
  return totals;
}

}  // namespace

OpProfiler::OpProfiler(bool cuda) : cuda_(cuda) {
  std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
  if (cuda) activities.insert(impl::ActivityType::CUDA);
  // Input shapes on a GPU, to name what launched each kernel (finish()).
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/cuda);
  try {
    kineto::prepareProfiler(config, activities);
    kineto::enableProfiler(config, activities);
  } catch (const c10::Error& e) {
    throw Error("bench --profile: LibTorch's profiler did not start: " + std::string(e.what_without_backtrace()));
  }
  active_ = true;
  start_s_ = now_s();
}

OpProfiler::~OpProfiler() {
  if (!active_) return;
  try {
    kineto::disableProfiler();
  } catch (...) {  // already unwinding from the error that skipped finish()
  }
}

OpProfile OpProfiler::finish(std::size_t top_n) {
  if (!active_) throw Error("bench --profile: the profiler was already stopped");
  active_ = false;
  OpProfile p;
  p.wall_s = now_s() - start_s_;
  std::unique_ptr<kineto::ProfilerResult> result;
  try {
    result = kineto::disableProfiler();
  } catch (const c10::Error& e) {
    throw Error("bench --profile: LibTorch's profiler did not stop: " + std::string(e.what_without_backtrace()));
  }
  const auto& events = result->events();
  std::map<std::string, std::int64_t> dispatched;
  for (const auto& e : events) {
    if (e.deviceType() != c10::DeviceType::CPU) continue;
    ++p.host_events;
    ++dispatched[e.name()];
  }
  p.most_dispatched.assign(dispatched.begin(), dispatched.end());
  std::sort(p.most_dispatched.begin(), p.most_dispatched.end(),
            [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  if (p.most_dispatched.size() > top_n) p.most_dispatched.resize(top_n);
  // GPU kernels and copies are the device's own time and do not nest; sum them by name. Each
  // links to the operator that launched it through its correlation id.
  std::map<std::uint64_t, const kineto::KinetoEvent*> ops_by_id;
  for (const auto& e : events) {
    if (e.deviceType() == c10::DeviceType::CPU && e.correlationId() != 0) ops_by_id[e.correlationId()] = &e;
  }
  std::map<std::string, Totals> totals;
  std::map<std::string, std::map<std::string, std::int64_t>> launchers;
  for (const auto& e : events) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    Totals& t = totals[e.name()];
    ++t.calls;
    t.seconds += compat::profiler_event_seconds(e);
    const auto op = ops_by_id.find(e.linkedCorrelationId());
    if (op == ops_by_id.end()) continue;
    std::string launcher = op->second->name();
    if (op->second->hasShapes()) {
      for (const auto& shape : op->second->shapes()) {
        launcher += " [";
        for (std::size_t i = 0; i < shape.size(); ++i) launcher += (i ? "," : "") + std::to_string(shape[i]);
        launcher += "]";
      }
    }
    ++launchers[e.name()][launcher];
  }
  p.kind = "GPU kernels";
  if (totals.empty()) {
    // No device events: a CPU run, or a LibTorch without Kineto's CUDA side.
    if (cuda_) p.kind = "CPU operators (this LibTorch recorded no GPU kernels)";
    else p.kind = "CPU operators";
    totals = top_level_cpu_ops(events);
  }
  std::vector<OpTime> all;
  for (const auto& [name, t] : totals) {
    OpTime o{name, t.calls, t.seconds, {}};
    if (const auto l = launchers.find(name); l != launchers.end()) {
      o.launched_by.assign(l->second.begin(), l->second.end());
      std::sort(o.launched_by.begin(), o.launched_by.end(),
                [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
      if (o.launched_by.size() > 3) o.launched_by.resize(3);
    }
    all.push_back(std::move(o));
    p.total_s += t.seconds;
    p.events += t.calls;
  }
  p.ops = static_cast<std::int64_t>(all.size());
  std::sort(all.begin(), all.end(), [](const OpTime& a, const OpTime& b) {
    return a.seconds != b.seconds ? a.seconds > b.seconds : a.name < b.name;
  });
  if (all.size() > top_n) all.resize(top_n);
  p.top = std::move(all);
  return p;
}

nlohmann::json to_json(const OpProfile& p) {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& o : p.top) {
    nlohmann::json launched = nlohmann::json::array();
    for (const auto& [op, calls] : o.launched_by) launched.push_back({{"op", op}, {"calls", calls}});
    top.push_back({{"name", o.name}, {"calls", o.calls}, {"seconds", o.seconds}, {"launched_by", launched}});
  }
  nlohmann::json dispatched = nlohmann::json::array();
  for (const auto& [name, n] : p.most_dispatched) dispatched.push_back({{"name", name}, {"events", n}});
  return {{"kind", p.kind},       {"wall_s", p.wall_s}, {"total_s", p.total_s},
          {"distinct_ops", p.ops}, {"calls", p.events}, {"host_events", p.host_events},
          {"steps", p.steps},      {"top", top},         {"most_dispatched", dispatched}};
}

std::string describe(const OpProfile& p) {
  const double total = std::max(p.total_s, 1e-12);
  std::string out = "profile    " + p.kind + ": " + format_value("%.4f", p.total_s) + " s in " +
                    std::to_string(p.events) + " calls of " + std::to_string(p.ops) + " names over " +
                    format_value("%.4f", p.wall_s) + " s wall (" + format_value("%.1f", 100 * p.total_s / std::max(p.wall_s, 1e-12)) +
                    " %)\n";
  out += "dispatched " + std::to_string(p.host_events) + " operator events at every level" +
         (p.steps > 0 ? " (" + format_value("%.0f", static_cast<double>(p.host_events) / static_cast<double>(p.steps)) +
                            " per step)"
                      : std::string()) +
         "\n";
  for (const auto& o : p.top) {
    std::string name = o.name;
    if (name.size() > 100) name = name.substr(0, 97) + "...";
    out += "  " + format_value("%5.1f", 100 * o.seconds / total) + " %  " + format_value("%9.4f", o.seconds) + " s  " +
           format_value("%7.0f", static_cast<double>(o.calls)) + " x " +
           format_value("%9.1f", 1e6 * o.seconds / static_cast<double>(std::max<std::int64_t>(o.calls, 1))) + " us  " +
           name + "\n";
    for (const auto& [op, calls] : o.launched_by) {
      out += "                                          " + std::to_string(calls) + " by " + op + "\n";
    }
  }
  if (!p.most_dispatched.empty()) out += "most dispatched (events per step)\n";
  const double steps = static_cast<double>(std::max<std::int64_t>(p.steps, 1));
  for (const auto& [name, n] : p.most_dispatched) {
    out += "  " + format_value("%9.0f", static_cast<double>(n) / steps) + "  " +
           (name.size() > 100 ? name.substr(0, 97) + "..." : name) + "\n";
  }
  return out;
}

}  // namespace sdxl::perf
