// CUDA label-smoothed cross-entropy (math: csrc/ls_ce_math.h). Accumulates in float32 (float64 for
// float64 logits). A row (n, j) of logits viewed as (N, K, M) is handled by one thread ((N, K, M)
// maps with M >= 32 contiguous and K <= 1024: adjacent threads read adjacent logits, where a warp
// would walk its row with stride M), one warp (K <= 1024, 8 rows per block) or one block (larger K). Forward: a max pass, then one pass for sum exp(z - m)
// and sum w (z - m) (the second read mostly hits L1/L2); only the per-row logsumexp is saved.
// No host synchronisation anywhere: an out-of-range label is a device-side assert (as in torch's
// nll_loss; the row's message is printed), the weight sum and the in-place gradient scale are read
// on the device. So both ops can be captured in a CUDA graph.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <climits>
#include <cstdio>

#include "ls_ce_checks.h"
#include "ls_ce_math.h"

namespace lsmia::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerThreadBlock = 256;  // thread-per-row launches: blockDim = 256
constexpr int kRowsPerWarpBlock = 8;      // warp-per-row launches: blockDim = (32, 8)
constexpr int kBlockThreads = 512;        // block-per-row launches
constexpr int64_t kWarpRowMaxK = 1024;

enum Mode { kForward, kBackward, kForwardGrad };
enum RowMode : int { kThreadRows, kWarpRows, kBlockRows };

// Logits (N, K) or (N, K, M) -> how their rows are spread over the threads (see the top).
RowMode row_mode(const at::Tensor& logits) {
  if (logits.size(1) > kWarpRowMaxK) return kBlockRows;
  const bool maps = logits.dim() == 3;
  return maps && logits.size(2) >= kWarp && logits.stride(2) == 1 ? kThreadRows : kWarpRows;
}

int64_t rows_per_block(RowMode mode) {
  return mode == kThreadRows ? kRowsPerThreadBlock : mode == kWarpRows ? kRowsPerWarpBlock : 1;
}

// The grid of a launch is 1-D: refuse (before anything is allocated) a row count it cannot cover.
void check_grid(const at::Tensor& logits) {
  const int64_t R = logits.size(0) * (logits.dim() == 3 ? logits.size(2) : 1);
  const int64_t per = rows_per_block(row_mode(logits)), blocks = (R + per - 1) / per;
  TORCH_CHECK_VALUE(blocks <= static_cast<int64_t>(INT_MAX), "fused_ls_ce: ", R, " rows of ", logits.size(1),
                    " classes need ", blocks, " CUDA blocks, more than a grid holds (", INT_MAX,
                    "); split the batch");
}

template <typename scalar_t, typename acc_t>
struct Args {
  const scalar_t* x;  // may alias out (forward_grad)
  int64_t N, K, M, xs0, xs1, xs2;
  const int64_t* y;
  int64_t ys0, ys1;
  const acc_t* w;      // (K,) or null
  const acc_t* w_sum;  // device scalar, null without weights
  acc_t alpha;
  int64_t ignore_index;
  acc_t* loss;
  double* lse;         // forward: written; backward: read
  const acc_t* g;      // backward: (N, M) with strides gs0, gs1; forward_grad: one value
  int64_t gs0, gs1;
  scalar_t* out;       // contiguous (N, K, M), or the logits themselves
  RowMode mode;
};

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return lsmia::ls_ce_max(a, b); }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Reduction over the threads of a row: none, its warp, or its block (every thread gets the result).
template <typename T, typename Op>
__device__ T row_reduce(T v, Op op, T* smem, RowMode mode) {
  if (mode == kThreadRows) return v;
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (mode == kWarpRows) return v;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  __syncthreads();  // smem may still be read by the previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = smem[0];
  for (int w = 1; w < static_cast<int>(blockDim.x) / kWarp; ++w) v = op(v, smem[w]);
  return v;
}

template <typename scalar_t, typename acc_t, int kMode>
__global__ void ls_ce_kernel(const Args<scalar_t, acc_t> a) {
  __shared__ acc_t smem[kBlockThreads / kWarp];
  int64_t r;
  int lane, stride;
  if (a.mode == kBlockRows) {
    r = blockIdx.x;
    lane = threadIdx.x;
    stride = blockDim.x;
  } else {
    const bool warp = a.mode == kWarpRows;
    r = static_cast<int64_t>(blockIdx.x) * (warp ? blockDim.y : blockDim.x) + (warp ? threadIdx.y : threadIdx.x);
    lane = warp ? static_cast<int>(threadIdx.x) : 0;
    stride = warp ? kWarp : 1;
    if (r >= a.N * a.M) return;  // a warp row: the whole warp, so no shuffle is left half-done
  }
  const int64_t n = r / a.M, j = r - n * a.M, K = a.K;
  const scalar_t* x = a.x + n * a.xs0 + j * a.xs2;
  const int64_t y = a.y[n * a.ys0 + j * a.ys1];
  const bool bad = !lsmia::ls_ce_label_ok(y, K, a.ignore_index);
  if (bad && lane == 0) {
    printf("fused_ls_ce: target[%lld] = %lld is out of range: labels must lie in [0, %lld) or equal "
           "ignore_index (%lld)\n", static_cast<long long>(r), static_cast<long long>(y),
           static_cast<long long>(K), static_cast<long long>(a.ignore_index));
  }
  CUDA_KERNEL_ASSERT(!bad);
  const bool skip = bad || y == a.ignore_index;  // a bad row is never read, even without asserts
  const acc_t W = a.w_sum != nullptr ? *a.w_sum : static_cast<acc_t>(K);
  const acc_t w_y = skip ? acc_t(0) : (a.w != nullptr ? a.w[y] : acc_t(1));
  // read before any thread of the row may overwrite it (forward_grad)
  const acc_t z_y = skip ? acc_t(0) : static_cast<acc_t>(x[y * a.xs1]);
  double l = 0.0;
  acc_t g = acc_t(0);
  if (kMode == kBackward) {
    l = a.lse[r];
    g = a.g[n * a.gs0 + j * a.gs1];
  } else {
    if (skip) {
      if (lane == 0) {
        a.loss[r] = acc_t(0);
        a.lse[r] = 0.0;
      }
    } else {
      acc_t m = -std::numeric_limits<acc_t>::infinity();
      for (int64_t k = lane; k < K; k += stride) m = lsmia::ls_ce_max(m, static_cast<acc_t>(x[k * a.xs1]));
      m = row_reduce(m, MaxOp(), smem, a.mode);
      acc_t s = acc_t(0), d = acc_t(0);
      if (lsmia::ls_ce_finite(m)) {
        for (int64_t k = lane; k < K; k += stride) {
          const acc_t t = static_cast<acc_t>(x[k * a.xs1]) - m;
          s += lsmia::ls_ce_exp(t);
          d += a.w != nullptr ? a.w[k] * t : t;
        }
      }
      s = row_reduce(s, SumOp(), smem, a.mode);
      d = row_reduce(d, SumOp(), smem, a.mode);
      const acc_t loss = lsmia::ls_ce_finish_row(m, lsmia::ls_ce_log(s), d, z_y, w_y, W, a.alpha, K, l);
      if (lane == 0) {
        a.loss[r] = loss;
        a.lse[r] = l;
      }
    }
    if (kMode == kForward) return;
    g = *a.g;
  }
  const bool in_place = kMode == kForwardGrad;
  // In place, lane y % 32 overwrites x[y], which every lane of the row read into z_y above. A block row's
  // reductions (__syncthreads) order those reads before the write; a warp row's only synchronise through
  // shuffles, which exchange registers and order no memory: the warp barrier below does. (The other
  // logits are read and written by the one lane that owns them.) The whole warp is on this row here.
  if (in_place && a.mode == kWarpRows) __syncwarp();
  scalar_t* o = in_place ? a.out + n * a.xs0 + j * a.xs2 : a.out + n * K * a.M + j;
  const int64_t ocs = in_place ? a.xs1 : a.M;
  const auto f = lsmia::ls_ce_grad_row(w_y, W, a.alpha, K);
  acc_t hi, lo;
  lsmia::ls_ce_split_lse(l, hi, lo);
  for (int64_t k = lane; k < K; k += stride) {
    acc_t v = acc_t(0);
    if (!skip) {
      const acc_t p = lsmia::ls_ce_exp(static_cast<acc_t>(x[k * a.xs1]) - hi - lo);
      v = g * (f.c * p - f.smooth * (a.w != nullptr ? a.w[k] : acc_t(1)));
      if (k == y) v -= g * f.hit;
    }
    o[k * ocs] = static_cast<scalar_t>(v);
  }
}

template <int kMode>
void launch(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& w, const at::Tensor& w_sum,
            double alpha, int64_t ignore_index, const at::Tensor& loss, const at::Tensor& lse, const at::Tensor& g,
            const at::Tensor& out) {
  const bool maps = logits.dim() == 3;
  const int64_t N = logits.size(0), K = logits.size(1), M = maps ? logits.size(2) : 1, R = N * M;
  if (R == 0 || K == 0) return;  // every op has run check_grid before allocating
  const RowMode mode = row_mode(logits);
  const int64_t per = rows_per_block(mode);
  const dim3 grid(static_cast<unsigned>((R + per - 1) / per));
  const dim3 block = mode == kThreadRows ? dim3(kRowsPerThreadBlock)
                     : mode == kWarpRows ? dim3(kWarp, kRowsPerWarpBlock)
                                         : dim3(kBlockThreads);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "ls_ce_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Args<scalar_t, acc_t> a{};
    a.x = logits.const_data_ptr<scalar_t>();
    a.N = N;
    a.K = K;
    a.M = M;
    a.xs0 = logits.stride(0);
    a.xs1 = logits.stride(1);
    a.xs2 = maps ? logits.stride(2) : 0;
    a.y = target.const_data_ptr<int64_t>();
    a.ys0 = target.stride(0);
    a.ys1 = maps ? target.stride(1) : 0;
    a.w = w.defined() ? w.const_data_ptr<acc_t>() : nullptr;
    a.w_sum = w.defined() ? w_sum.const_data_ptr<acc_t>() : nullptr;
    a.alpha = static_cast<acc_t>(alpha);
    a.ignore_index = ignore_index;
    a.loss = loss.defined() ? loss.data_ptr<acc_t>() : nullptr;
    a.lse = lse.data_ptr<double>();
    a.g = g.defined() ? g.const_data_ptr<acc_t>() : nullptr;
    a.gs0 = g.defined() && g.dim() > 0 ? g.stride(0) : 0;
    a.gs1 = g.defined() && g.dim() > 1 ? g.stride(1) : 0;
    a.out = out.defined() ? out.data_ptr<scalar_t>() : nullptr;
    a.mode = mode;
    ls_ce_kernel<scalar_t, acc_t, kMode><<<grid, block, 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor> ls_ce_forward_cuda(const at::Tensor& logits, const at::Tensor& target,
                                                      const std::optional<at::Tensor>& weight, double alpha,
                                                      int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
  check_grid(logits);
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  const auto acc = lsmia::ls_ce_acc_dtype(logits.scalar_type());
  at::Tensor loss = at::empty(target.sizes(), logits.options().dtype(acc));
  at::Tensor lse = at::empty(target.sizes(), logits.options().dtype(at::kDouble));
  const at::Tensor w = lsmia::ls_ce_weight(weight, logits);
  launch<kForward>(logits, target, w, w.defined() ? w.sum() : at::Tensor(), alpha, ignore_index, loss, lse,
                   at::Tensor(), at::Tensor());
  return {loss, lse};
}

at::Tensor ls_ce_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                               const std::optional<at::Tensor>& weight, const at::Tensor& lse, double alpha,
                               int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
  lsmia::check_ls_ce_row_tensor(grad_loss, target, logits, "grad_loss", lsmia::ls_ce_acc_dtype(logits.scalar_type()));
  lsmia::check_ls_ce_row_tensor(lse, target, logits, "lse", at::kDouble);
  check_grid(logits);
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  at::Tensor grad = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  const at::Tensor w = lsmia::ls_ce_weight(weight, logits);
  launch<kBackward>(logits, target, w, w.defined() ? w.sum() : at::Tensor(), alpha, ignore_index, at::Tensor(),
                    lse.contiguous(), grad_loss, grad);
  return grad;
}

at::Tensor ls_ce_forward_grad_cuda(at::Tensor logits, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, const at::Tensor& grad_scale,
                                   double alpha, int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
  const auto acc = lsmia::ls_ce_acc_dtype(logits.scalar_type());
  TORCH_CHECK_VALUE(grad_scale.numel() == 1 && grad_scale.device() == logits.device() &&
                        grad_scale.scalar_type() == acc,
                    "ls_ce_forward_grad_: grad_scale must be one ", acc, " value on ", logits.device());
  at::assert_no_internal_overlap(logits);
  check_grid(logits);
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  at::Tensor loss = at::empty(target.sizes(), logits.options().dtype(acc));
  at::Tensor lse = at::empty(target.sizes(), logits.options().dtype(at::kDouble));
  const at::Tensor w = lsmia::ls_ce_weight(weight, logits);
  launch<kForwardGrad>(logits, target, w, w.defined() ? w.sum() : at::Tensor(), alpha, ignore_index, loss, lse,
                       grad_scale.reshape({}), logits);
  return loss;
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CUDA, m) {
  m.impl("ls_ce_forward", &ls_ce_forward_cuda);
  m.impl("ls_ce_backward", &ls_ce_backward_cuda);
  m.impl("ls_ce_forward_grad_", &ls_ce_forward_grad_cuda);
}

}  // namespace lsmia::cuda
