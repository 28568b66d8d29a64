// Per-row scalars of the batched latent Adam step, shared by the CPU and CUDA kernels.
// They follow torch.optim.Adam's single-tensor path: the bias corrections and the step size are
// computed in double (torch does them on Python floats) and only then rounded to float, the
// precision in which torch applies them to float32 tensors. The element update itself is:
//   g  = grad * clip_coef                           (row clip as clip_grad_norm_, optional)
//   g  = g + weight_decay * p                       (L2 weight decay, torch's grad.add(p, alpha))
//   m  = lerp(m, g, 1 - beta1)                      (torch's exp_avg.lerp_)
//   v  = v * beta2 + ((1 - beta2) * g) * g          (torch's mul_ + addcmul_)
//   p  = p + (-step_size * m) / (sqrt(v) * (1 / bias2_sqrt) + eps)   (torch's addcdiv_)
// The one change from torch's order: sqrt(v) is multiplied by the row's 1 / sqrt(bias2) instead of
// divided by sqrt(bias2) (at most 1 ulp apart), which saves a vector division per element, the
// bottleneck of this otherwise memory-bound step on CPUs.
#pragma once
#include <math.h>

#include <cmath>
#include <cstdint>

#ifndef LSMIA_HD
#if defined(__CUDACC__)
#define LSMIA_HD __host__ __device__ __forceinline__
#else
#define LSMIA_HD inline
#endif
#endif

namespace lsmia {

// Constants of one call, rounded to float once.
struct LatentAdamHyper {
  float lerp_weight;    // 1 - beta1
  float beta2;
  float one_minus_beta2;
  float eps;
  float weight_decay;
};

// Constants of one row at its new step count.
struct LatentAdamRow {
  float neg_step_size;  // -lr / (1 - beta1^step)
  float inv_bias2_sqrt; // 1 / sqrt(1 - beta2^step)
};

namespace {  // internal linkage: one copy per object file (see ls_ce_math.h)

inline LatentAdamHyper latent_adam_hyper(double beta1, double beta2, double eps, double weight_decay) {
  return {static_cast<float>(1.0 - beta1), static_cast<float>(beta2), static_cast<float>(1.0 - beta2),
          static_cast<float>(eps), static_cast<float>(weight_decay)};
}

LSMIA_HD LatentAdamRow latent_adam_row(double lr, double beta1, double beta2, int64_t step) {
  const double s = static_cast<double>(step);
  const double bias1 = 1.0 - ::pow(beta1, s);
  const double bias2 = 1.0 - ::pow(beta2, s);
  return {static_cast<float>(-(lr / bias1)), static_cast<float>(1.0 / ::sqrt(bias2))};
}

// clip_grad_norm_'s factor for one row: min(1, max_norm / (norm + 1e-6)), in float as torch does.
// A NaN norm (a NaN in the row's gradient) gives a NaN factor, as torch.clamp(max=1) does, so the whole
// row turns NaN like torch's clip_grad_norm_ + Adam; `c < 1 ? c : 1` would have made it 1 and let the
// row's other elements take an unclipped step. An Inf norm gives 0 (and Inf * 0 = NaN), as in torch.
LSMIA_HD float latent_adam_clip_coef(float norm, float max_norm) {
  const float c = max_norm / (norm + 1e-6f);
  return c > 1.0f ? 1.0f : c;
}

// torch's lerp: the formula depends on the weight so that both ends are exact.
LSMIA_HD float latent_adam_lerp(float start, float end, float weight) {
  return ::fabsf(weight) < 0.5f ? start + weight * (end - start) : end - (end - start) * (1.0f - weight);
}

// One element, scalar form (CUDA kernel; the CPU kernel writes the same steps with vectors).
LSMIA_HD void latent_adam_element(float& p, float g, float& m, float& v, const LatentAdamHyper& h,
                                  const LatentAdamRow& r) {
  if (h.weight_decay != 0.0f) g = g + h.weight_decay * p;
  m = latent_adam_lerp(m, g, h.lerp_weight);
  v = v * h.beta2 + (h.one_minus_beta2 * g) * g;
  p = p + (r.neg_step_size * m) / (::sqrtf(v) * r.inv_bias2_sqrt + h.eps);
}

}  // namespace
}  // namespace lsmia
