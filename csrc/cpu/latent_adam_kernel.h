// CPU batched latent Adam step, compiled once per instruction set (namespace CPU_CAPABILITY).
// Rows are spread over threads with at::parallel_for; each row is one pass over memory with
// at::vec::Vectorized<float>. float16 / bfloat16 params and grads go through per-thread float row
// buffers (one row, stays in cache); the optimizer state is float32 throughout.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "latent_adam_math.h"

namespace lsmia::cpu::CPU_CAPABILITY {

using at::vec::Vectorized;

// L2 norm of a contiguous float row, accumulated in float lanes (as torch's float32 norm is).
inline float row_l2_norm(const float* g, int64_t D) {
  using Vec = Vectorized<float>;
  constexpr int64_t W = Vec::size();
  Vec acc(0.0f);
  int64_t k = 0;
  for (; k + W <= D; k += W) {
    const Vec x = Vec::loadu(g + k);
    acc = at::vec::fmadd(x, x, acc);
  }
  if (k < D) {
    const Vec x = Vec::loadu(g + k, D - k);  // zero filled
    acc = at::vec::fmadd(x, x, acc);
  }
  return std::sqrt(at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, acc));
}

// The update of latent_adam_math.h on W lanes. `n` < W only for the tail of a row.
inline void adam_lanes(float* p, const float* g, float* m, float* v, int64_t n, float clip,
                       const lsmia::LatentAdamHyper& h, const lsmia::LatentAdamRow& r) {
  using Vec = Vectorized<float>;
  constexpr int64_t W = Vec::size();
  const bool full = n == W;
  Vec vp = full ? Vec::loadu(p) : Vec::loadu(p, n);
  Vec vg = full ? Vec::loadu(g) : Vec::loadu(g, n);
  Vec vm = full ? Vec::loadu(m) : Vec::loadu(m, n);
  Vec vv = full ? Vec::loadu(v) : Vec::loadu(v, n);
  if (clip != 1.0f) vg = vg * Vec(clip);
  if (h.weight_decay != 0.0f) vg = at::vec::fmadd(vp, Vec(h.weight_decay), vg);
  // torch's vectorised lerp: base + coeff * (end - start) with base/coeff chosen by the weight.
  const Vec diff = vg - vm;
  if (std::abs(h.lerp_weight) < 0.5f) {
    vm = at::vec::fmadd(Vec(h.lerp_weight), diff, vm);
  } else {
    vm = at::vec::fmadd(Vec(h.lerp_weight - 1.0f), diff, vg);
  }
  vv = vv * Vec(h.beta2) + Vec(h.one_minus_beta2) * vg * vg;
  const Vec denom = at::vec::fmadd(vv.sqrt(), Vec(r.inv_bias2_sqrt), Vec(h.eps));
  vp = vp + Vec(r.neg_step_size) * vm / denom;
  if (full) {
    vp.store(p);
    vm.store(m);
    vv.store(v);
  } else {
    vp.store(p, n);
    vm.store(m, n);
    vv.store(v, n);
  }
}

inline void adam_row(float* p, const float* g, float* m, float* v, int64_t D, float clip,
                     const lsmia::LatentAdamHyper& h, const lsmia::LatentAdamRow& r) {
  constexpr int64_t W = Vectorized<float>::size();
  int64_t k = 0;
  for (; k + W <= D; k += W) adam_lanes(p + k, g + k, m + k, v + k, W, clip, h, r);
  if (k < D) adam_lanes(p + k, g + k, m + k, v + k, D - k, clip, h, r);
}

template <typename scalar_t>
void latent_adam_typed(at::Tensor& params, const at::Tensor& grads, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                       at::Tensor& steps, const at::Tensor& lr, double beta1, double beta2, double eps,
                       double weight_decay, const std::optional<at::Tensor>& active,
                       std::optional<double> max_grad_norm) {
  constexpr bool is_float = std::is_same_v<scalar_t, float>;
  const int64_t B = params.size(0);
  const int64_t D = B == 0 ? 0 : params.numel() / B;
  const lsmia::LatentAdamHyper h = lsmia::latent_adam_hyper(beta1, beta2, eps, weight_decay);
  scalar_t* p_base = params.data_ptr<scalar_t>();
  const scalar_t* g_base = grads.const_data_ptr<scalar_t>();
  float* m_base = exp_avg.data_ptr<float>();
  float* v_base = exp_avg_sq.data_ptr<float>();
  int64_t* step_p = steps.data_ptr<int64_t>();
  const int64_t step_stride = steps.stride(0);
  const float* lr_p = lr.const_data_ptr<float>();
  const int64_t lr_stride = lr.stride(0);
  const bool* act_p = active.has_value() ? active->const_data_ptr<bool>() : nullptr;
  const int64_t act_stride = active.has_value() ? active->stride(0) : 0;
  const bool clip = max_grad_norm.has_value();
  const float max_norm = clip ? static_cast<float>(*max_grad_norm) : 0.0f;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1));
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> pbuf(is_float ? 0 : D), gbuf(is_float ? 0 : D);
    for (int64_t i = begin; i < end; ++i) {
      if (act_p != nullptr && !act_p[i * act_stride]) continue;
      const int64_t step = step_p[i * step_stride] + 1;
      const lsmia::LatentAdamRow r = lsmia::latent_adam_row(lr_p[i * lr_stride], beta1, beta2, step);
      scalar_t* p_row = p_base + i * D;
      const scalar_t* g_row = g_base + i * D;
      float* p;
      const float* g;
      if constexpr (is_float) {
        p = p_row;
        g = g_row;
      } else {
        for (int64_t k = 0; k < D; ++k) {
          pbuf[k] = static_cast<float>(p_row[k]);
          gbuf[k] = static_cast<float>(g_row[k]);
        }
        p = pbuf.data();
        g = gbuf.data();
      }
      const float coef = clip ? lsmia::latent_adam_clip_coef(row_l2_norm(g, D), max_norm) : 1.0f;
      adam_row(p, g, m_base + i * D, v_base + i * D, D, coef, h, r);
      if constexpr (!is_float) {
        for (int64_t k = 0; k < D; ++k) p_row[k] = static_cast<scalar_t>(pbuf[k]);
      }
      step_p[i * step_stride] = step;
    }
  });
}

inline void latent_adam_kernel(at::Tensor& params, const at::Tensor& grads, at::Tensor& exp_avg,
                               at::Tensor& exp_avg_sq, at::Tensor& steps, const at::Tensor& lr, double beta1,
                               double beta2, double eps, double weight_decay,
                               const std::optional<at::Tensor>& active, std::optional<double> max_grad_norm) {
  switch (params.scalar_type()) {
    case at::kFloat:
      return latent_adam_typed<float>(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps,
                                      weight_decay, active, max_grad_norm);
    case at::kHalf:
      return latent_adam_typed<at::Half>(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps,
                                         weight_decay, active, max_grad_norm);
    case at::kBFloat16:
      return latent_adam_typed<at::BFloat16>(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps,
                                             weight_decay, active, max_grad_norm);
    default:
      TORCH_CHECK_TYPE(false, "fused_latent_adam_: unsupported params dtype ", params.scalar_type());
  }
}

}  // namespace lsmia::cpu::CPU_CAPABILITY
