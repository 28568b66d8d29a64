// Row math of the label-smoothed cross-entropy shared by the CPU and CUDA kernels.
//   loss = lse - (1 - alpha) * z[y] - (alpha / K) * sum(z)
//   dloss/dz_k = softmax(z)_k - (1 - alpha) * [k == y] - alpha / K
#pragma once
#include <math.h>

#include <cmath>
#include <limits>

#if defined(__CUDACC__)
#define LSMIA_HD __host__ __device__ __forceinline__
#else
#define LSMIA_HD inline
#endif

namespace lsmia {

// expf/logf exist on host and device alike; the overloads pick the precision of acc_t.
LSMIA_HD float ls_ce_exp(float x) { return expf(x); }
LSMIA_HD double ls_ce_exp(double x) { return exp(x); }
LSMIA_HD float ls_ce_log(float x) { return logf(x); }
LSMIA_HD double ls_ce_log(double x) { return log(x); }

// Merges the running (max, sum of exp(x - max)) pair of one part of a row into another's.
// Parts that saw only -inf carry max = -inf, sum = 0; a NaN anywhere makes the sum NaN.
template <typename acc_t>
LSMIA_HD void online_softmax_merge(acc_t& m, acc_t& s, acc_t m2, acc_t s2) {
  const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
  if (m2 != m2 || s2 != s2) {
    s = s2 + m2;  // NaN
    return;
  }
  const acc_t mn = m > m2 ? m : m2;
  if (mn == ninf) return;
  const acc_t a = (m == ninf) ? acc_t(0) : s * ls_ce_exp(m - mn);
  const acc_t b = (m2 == ninf) ? acc_t(0) : s2 * ls_ce_exp(m2 - mn);
  s = a + b;
  m = mn;
}

template <typename acc_t>
LSMIA_HD void online_softmax_add(acc_t& m, acc_t& s, acc_t x) {
  online_softmax_merge(m, s, x, acc_t(1));
}

// logsumexp from (max, sum exp(x - max)); a +inf logit makes it NaN as in torch's log_softmax.
template <typename acc_t>
LSMIA_HD acc_t logsumexp_from(acc_t m, acc_t s) {
  if (m == std::numeric_limits<acc_t>::infinity()) return std::numeric_limits<acc_t>::quiet_NaN();
  return m + ls_ce_log(s);
}

// A zero coefficient skips its term so that, as in torch, alpha = 0 ignores -inf logits of
// other classes instead of turning 0 * -inf into NaN.
template <typename acc_t>
LSMIA_HD acc_t ls_ce_row_loss(acc_t lse, acc_t z_target, acc_t sum_z, acc_t alpha, int64_t K) {
  acc_t loss = lse;
  if (alpha != acc_t(1)) loss -= (acc_t(1) - alpha) * z_target;
  if (alpha != acc_t(0)) loss -= alpha / acc_t(K) * sum_z;
  return loss;
}

LSMIA_HD bool ls_ce_label_ok(int64_t y, int64_t K, int64_t ignore_index) {
  return y == ignore_index || (y >= 0 && y < K);
}

}  // namespace lsmia
