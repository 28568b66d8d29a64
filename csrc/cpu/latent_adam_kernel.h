// CPU batched latent Adam step, compiled once per instruction set (namespace CPU_CAPABILITY).
// Rows are spread over threads with at::parallel_for; each row is one pass over memory with
// at::vec::Vectorized<float>. float16 / bfloat16 params and grads go through per-thread float row
// buffers (one row, stays in cache; malloc'd, see vec_util.h); the optimizer state is float32.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "cpu/dispatch.h"
#include "cpu/vec_util.h"
#include "latent_adam_math.h"

namespace lsmia::cpu::CPU_CAPABILITY {

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
void latent_adam_typed(const LatentAdamCall& c) {
  constexpr bool is_float = std::is_same_v<scalar_t, float>;
  const int64_t D = c.D;
  const lsmia::LatentAdamHyper h = lsmia::latent_adam_hyper(c.beta1, c.beta2, c.eps, c.weight_decay);
  scalar_t* p_base = static_cast<scalar_t*>(c.params);
  const scalar_t* g_base = static_cast<const scalar_t*>(c.grads);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1));
  at::parallel_for(0, c.B, grain, [&](int64_t begin, int64_t end) {
    Buffer<float> pbuf(is_float ? 0 : D), gbuf(is_float ? 0 : D);
    for (int64_t i = begin; i < end; ++i) {
      if (c.active != nullptr && !c.active[i * c.act_stride]) continue;
      const int64_t step = c.steps[i * c.step_stride] + 1;
      const lsmia::LatentAdamRow r = lsmia::latent_adam_row(c.lr[i * c.lr_stride], c.beta1, c.beta2, step);
      scalar_t* p_row = p_base + i * D;
      const scalar_t* g_row = g_base + i * D;
      float* p;
      const float* g;
      if constexpr (is_float) {
        p = p_row;
        g = g_row;
      } else {
        for (int64_t k = 0; k < D; ++k) {
          pbuf.get()[k] = static_cast<float>(p_row[k]);
          gbuf.get()[k] = static_cast<float>(g_row[k]);
        }
        p = pbuf.get();
        g = gbuf.get();
      }
      const float coef = c.clip ? lsmia::latent_adam_clip_coef(row_l2_norm(g, D), c.max_norm) : 1.0f;
      adam_row(p, g, c.exp_avg + i * D, c.exp_avg_sq + i * D, D, coef, h, r);
      if constexpr (!is_float) {
        for (int64_t k = 0; k < D; ++k) p_row[k] = static_cast<scalar_t>(pbuf.get()[k]);
      }
      c.steps[i * c.step_stride] = step;
    }
  });
}

inline void latent_adam_kernel(const LatentAdamCall& c) {
  if (c.B == 0) return;
  switch (c.dtype) {
    case at::kFloat:
      return latent_adam_typed<float>(c);
    case at::kHalf:
      return latent_adam_typed<at::Half>(c);
    case at::kBFloat16:
      return latent_adam_typed<at::BFloat16>(c);
    default:
      return;  // the caller checked the dtype
  }
}

}  // namespace lsmia::cpu::CPU_CAPABILITY
