// Samplers for EDM bases (scheduler class EDM*, Playground v2.5), as diffusers 0.27.2's
// EDMEulerScheduler and EDMDPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint, final
// sigma zero): Karras sigmas, the model's timestep c_noise = ¼·ln σ, inputs scaled by c_in and
// outputs turned into x₀ with c_skip / c_out.
#pragma once

#include "sdxl_dreambooth/sampling/sampler.h"

namespace sdxl::sampling {

// "euler" (and "euler_karras": EDM's sigmas are Karras already) | "dpmpp2m"; UsageError otherwise.
std::unique_ptr<Sampler> make_edm_sampler(const std::string& name, const model::SchedulerConfig& config);

}  // namespace sdxl::sampling
