// Row math of the label-smoothed cross-entropy shared by the CPU and CUDA kernels.
// One row: logits z (K classes), label y, class weights w (all 1 without `weight`), W = sum_k w_k.
//   nll    = lse - z_y                      smooth = sum_k w_k (lse - z_k)
//   loss   = (1 - alpha) w_y nll + (alpha / K) smooth      (alpha == 0: w_y nll only, as torch)
//   dloss/dz_k = c p_k - (1 - alpha) w_y [k == y] - (alpha / K) w_k,   c = (1 - alpha) w_y + (alpha / K) W
// Without weights this is lse - (1 - alpha) z_y - (alpha / K) sum z (PAPER.md section 2), and for
// 0 <= alpha <= 1 it is torch's cross_entropy(label_smoothing=alpha, weight=w) term by term.
// Shift-invariant evaluation: with m = max z, s = sum exp(z - m), D = sum w_k (z_k - m):
//   nll = log s - (z_y - m),   smooth = W log s - D
// so a large offset shared by the logits cancels exactly (the raw form above loses digits).
// NaN / inf: a row with a NaN or +inf logit, or with only -inf logits, has no finite max; its loss,
// lse and gradient are NaN (torch's log_softmax is NaN there). Other -inf logits follow IEEE.
//
// Every function here has internal linkage (anonymous namespace): the per-ISA CPU objects are compiled
// with different -m flags and must not share one (possibly AVX) copy of a helper.
#pragma once
#include <math.h>

#include <cstdint>
#include <limits>

#ifndef LSMIA_HD
#if defined(__CUDACC__)
#define LSMIA_HD __host__ __device__ __forceinline__
#else
#define LSMIA_HD inline
#endif
#endif

namespace lsmia {

// Per-row factors of the gradient: grad_k = g (c p_k - smooth w_k) - g hit [k == y].
template <typename acc_t>
struct LsCeGradRow {
  acc_t c, hit, smooth;
};

namespace {  // functions only: types may be shared

LSMIA_HD float ls_ce_log(float x) { return logf(x); }
LSMIA_HD double ls_ce_log(double x) { return log(x); }
LSMIA_HD float ls_ce_exp(float x) { return expf(x); }
LSMIA_HD double ls_ce_exp(double x) { return exp(x); }

// False for NaN and +-inf (x - x is NaN for both), true otherwise.
template <typename acc_t>
LSMIA_HD bool ls_ce_finite(acc_t x) {
  return x - x == acc_t(0);
}

// NaN-propagating max (once a NaN is seen it stays).
template <typename acc_t>
LSMIA_HD acc_t ls_ce_max(acc_t m, acc_t x) {
  return (x > m || x != x) ? x : m;
}

// Loss of one row from m = max, log_s = log sum exp(z - m), d = sum w_k (z_k - m); also its
// logsumexp, kept in double: in float32 lse = 1e4 + 1.8 would be off by 5e-4, and so would every
// exp(z - lse) of the backward.
template <typename acc_t>
LSMIA_HD acc_t ls_ce_finish_row(acc_t m, acc_t log_s, acc_t d, acc_t z_y, acc_t w_y, acc_t W, acc_t alpha,
                                int64_t K, double& lse) {
  if (!ls_ce_finite(m)) {
    lse = std::numeric_limits<double>::quiet_NaN();
    return std::numeric_limits<acc_t>::quiet_NaN();
  }
  lse = static_cast<double>(m) + static_cast<double>(log_s);
  const acc_t nll = log_s - (z_y - m);
  if (alpha == acc_t(0)) return w_y * nll;
  return (acc_t(1) - alpha) * w_y * nll + alpha / static_cast<acc_t>(K) * (W * log_s - d);
}

// lse as hi + lo in acc_t: (z - hi) - lo is z - lse to acc_t rounding, however large |lse| is.
template <typename acc_t>
LSMIA_HD void ls_ce_split_lse(double lse, acc_t& hi, acc_t& lo) {
  hi = static_cast<acc_t>(lse);
  lo = static_cast<acc_t>(lse - static_cast<double>(hi));
}

template <typename acc_t>
LSMIA_HD LsCeGradRow<acc_t> ls_ce_grad_row(acc_t w_y, acc_t W, acc_t alpha, int64_t K) {
  const acc_t smooth = alpha / static_cast<acc_t>(K);
  const acc_t hit = (acc_t(1) - alpha) * w_y;
  return {hit + smooth * W, hit, smooth};
}

LSMIA_HD bool ls_ce_label_ok(int64_t y, int64_t K, int64_t ignore_index) {
  return y == ignore_index || (y >= 0 && y < K);
}

}  // namespace
}  // namespace lsmia
