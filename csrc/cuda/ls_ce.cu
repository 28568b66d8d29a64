// CUDA label-smoothed cross-entropy. Accumulates in float32 (float64 for float64 logits).
// K <= 1024: one warp per row (several rows per block); larger K: one block per row.
// Forward streams each row once (online softmax) and saves only the per-row logsumexp.
// Bad labels: the kernel records the first offending row in a device flag; the host reads it
// after the launch and raises (no device-side assert, which would poison the CUDA context).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "ls_ce_checks.h"
#include "ls_ce_math.h"

namespace lsmia::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerWarpBlock = 8;   // warp-per-row kernels: blockDim = (32, 8)
constexpr int kBlockThreads = 512;     // block-per-row kernels
constexpr int64_t kWarpRowMaxK = 1024;

template <typename acc_t>
struct Stats {
  acc_t m, s, sum;
};

template <typename acc_t>
__device__ __forceinline__ void merge(Stats<acc_t>& a, const Stats<acc_t>& b) {
  lsmia::online_softmax_merge(a.m, a.s, b.m, b.s);
  a.sum += b.sum;
}

template <typename acc_t>
__device__ __forceinline__ Stats<acc_t> warp_reduce(Stats<acc_t> st) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    Stats<acc_t> other{__shfl_xor_sync(0xffffffff, st.m, offset), __shfl_xor_sync(0xffffffff, st.s, offset),
                       __shfl_xor_sync(0xffffffff, st.sum, offset)};
    merge(st, other);
  }
  return st;
}

// Partial stats of one row over the columns lane, lane + stride, ...
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ Stats<acc_t> partial_stats(const scalar_t* row, int64_t cs, int64_t K, int lane,
                                                      int stride) {
  Stats<acc_t> st{-std::numeric_limits<acc_t>::infinity(), acc_t(0), acc_t(0)};
  for (int64_t k = lane; k < K; k += stride) {
    const acc_t x = static_cast<acc_t>(row[k * cs]);
    st.sum += x;
    lsmia::online_softmax_add(st.m, st.s, x);
  }
  return st;
}

template <typename acc_t>
__device__ __forceinline__ void finish_row(const Stats<acc_t>& st, acc_t z_y, acc_t alpha, int64_t K,
                                           acc_t* loss, acc_t* lse) {
  const acc_t l = (st.m == -std::numeric_limits<acc_t>::infinity())
                      ? std::numeric_limits<acc_t>::quiet_NaN()
                      : lsmia::logsumexp_from(st.m, st.s);
  *lse = l;
  *loss = lsmia::ls_ce_row_loss(l, z_y, st.sum, alpha, K);
}

// Returns true when the row must be computed; handles ignored and bad rows.
template <typename acc_t>
__device__ __forceinline__ bool row_label(int64_t y, int64_t K, int64_t ignore_index, int64_t row, int* bad) {
  if (y == ignore_index) return false;
  if (!lsmia::ls_ce_label_ok(y, K, ignore_index)) {
    atomicMin(bad, static_cast<int>(row < INT_MAX ? row : INT_MAX - 1));
    return false;
  }
  return true;
}

template <typename scalar_t, typename acc_t>
__global__ void forward_warp_per_row(const scalar_t* __restrict__ logits, int64_t rs, int64_t cs,
                                     const int64_t* __restrict__ target, int64_t ts, int64_t N, int64_t K,
                                     acc_t alpha, int64_t ignore_index, acc_t* __restrict__ loss,
                                     acc_t* __restrict__ lse, int* bad) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= N) return;
  const int lane = threadIdx.x;
  const int64_t y = target[row * ts];
  if (!row_label<acc_t>(y, K, ignore_index, row, bad)) {
    if (lane == 0) loss[row] = lse[row] = acc_t(0);
    return;
  }
  const scalar_t* r = logits + row * rs;
  Stats<acc_t> st = warp_reduce(partial_stats<scalar_t, acc_t>(r, cs, K, lane, kWarp));
  if (lane == 0) finish_row(st, static_cast<acc_t>(r[y * cs]), alpha, K, loss + row, lse + row);
}

template <typename scalar_t, typename acc_t>
__global__ void forward_block_per_row(const scalar_t* __restrict__ logits, int64_t rs, int64_t cs,
                                      const int64_t* __restrict__ target, int64_t ts, int64_t N, int64_t K,
                                      acc_t alpha, int64_t ignore_index, acc_t* __restrict__ loss,
                                      acc_t* __restrict__ lse, int* bad) {
  __shared__ Stats<acc_t> partials[kBlockThreads / kWarp];
  const int64_t row = blockIdx.x;
  const int64_t y = target[row * ts];
  if (!row_label<acc_t>(y, K, ignore_index, row, bad)) {
    if (threadIdx.x == 0) loss[row] = lse[row] = acc_t(0);
    return;
  }
  const scalar_t* r = logits + row * rs;
  Stats<acc_t> st = warp_reduce(partial_stats<scalar_t, acc_t>(r, cs, K, threadIdx.x, blockDim.x));
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) partials[warp] = st;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x / kWarp;
    st = lane < n_warps ? partials[lane]
                        : Stats<acc_t>{-std::numeric_limits<acc_t>::infinity(), acc_t(0), acc_t(0)};
    st = warp_reduce(st);
    if (lane == 0) finish_row(st, static_cast<acc_t>(r[y * cs]), alpha, K, loss + row, lse + row);
  }
}

// Backward: one thread per element, rows laid out as in the forward (warp or block per row).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void backward_row(const scalar_t* __restrict__ r, int64_t cs, scalar_t* __restrict__ out,
                                             int64_t K, int64_t y, acc_t g, acc_t l, acc_t alpha, int lane,
                                             int stride, bool ignored) {
  const acc_t smooth = alpha / static_cast<acc_t>(K);
  const acc_t hit = acc_t(1) - alpha;
  for (int64_t k = lane; k < K; k += stride) {
    if (ignored) {
      out[k] = scalar_t(0);
      continue;
    }
    const acc_t x = static_cast<acc_t>(r[k * cs]);
    acc_t d = lsmia::ls_ce_exp(x - l) - smooth;
    if (k == y) d -= hit;
    out[k] = static_cast<scalar_t>(g * d);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const acc_t* __restrict__ grad_loss, int64_t gs, const scalar_t* __restrict__ logits,
                                int64_t rs, int64_t cs, const int64_t* __restrict__ target, int64_t ts,
                                const acc_t* __restrict__ lse, int64_t N, int64_t K, acc_t alpha,
                                int64_t ignore_index, scalar_t* __restrict__ grad, int* bad, bool warp_rows) {
  int64_t row;
  int lane, stride;
  if (warp_rows) {
    row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
    lane = threadIdx.x;
    stride = kWarp;
  } else {
    row = blockIdx.x;
    lane = threadIdx.x;
    stride = blockDim.x;
  }
  if (row >= N) return;
  const int64_t y = target[row * ts];
  const bool ignored = !row_label<acc_t>(y, K, ignore_index, row, bad);
  backward_row<scalar_t, acc_t>(logits + row * rs, cs, grad + row * K, K, y, grad_loss[row * gs], lse[row],
                                alpha, lane, stride, ignored);
}

void raise_if_bad_label(const at::Tensor& bad, const at::Tensor& target, int64_t K, int64_t ignore_index) {
  const int row = bad.item<int>();  // synchronises with the stream
  if (row == INT_MAX) return;
  const int64_t y = target[row].item<int64_t>();
  TORCH_CHECK_INDEX(false, "fused_ls_ce: target[", row, "] = ", y, " is out of range: labels must lie in [0, ",
                    K, ") or equal ignore_index (", ignore_index, ")");
}

struct Launch {
  dim3 grid, block;
  bool warp_rows;
};

Launch launch_shape(int64_t N, int64_t K) {
  if (K <= kWarpRowMaxK) {
    return {dim3(static_cast<unsigned>((N + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock)),
            dim3(kWarp, kRowsPerWarpBlock), true};
  }
  return {dim3(static_cast<unsigned>(N)), dim3(kBlockThreads), false};
}

void check_grid(int64_t N) {
  TORCH_CHECK(N <= static_cast<int64_t>(INT_MAX), "fused_ls_ce: at most ", INT_MAX, " rows on CUDA, got ", N);
}

std::tuple<at::Tensor, at::Tensor> ls_ce_forward_cuda(const at::Tensor& logits, const at::Tensor& target,
                                                      double alpha, int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, alpha);
  check_grid(logits.size(0));
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  const int64_t N = logits.size(0), K = logits.size(1);
  const auto acc = lsmia::ls_ce_acc_dtype(logits.scalar_type());
  at::Tensor loss = at::empty({N}, logits.options().dtype(acc));
  at::Tensor lse = at::empty({N}, logits.options().dtype(acc));
  if (N == 0) return {loss, lse};
  at::Tensor bad = at::full({1}, INT_MAX, logits.options().dtype(at::kInt));
  const Launch ls = launch_shape(N, K);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "ls_ce_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (ls.warp_rows) {
      forward_warp_per_row<scalar_t, acc_t><<<ls.grid, ls.block, 0, stream>>>(
          logits.const_data_ptr<scalar_t>(), logits.stride(0), logits.stride(1), target.const_data_ptr<int64_t>(),
          target.stride(0), N, K, static_cast<acc_t>(alpha), ignore_index, loss.data_ptr<acc_t>(),
          lse.data_ptr<acc_t>(), bad.data_ptr<int>());
    } else {
      forward_block_per_row<scalar_t, acc_t><<<ls.grid, ls.block, 0, stream>>>(
          logits.const_data_ptr<scalar_t>(), logits.stride(0), logits.stride(1), target.const_data_ptr<int64_t>(),
          target.stride(0), N, K, static_cast<acc_t>(alpha), ignore_index, loss.data_ptr<acc_t>(),
          lse.data_ptr<acc_t>(), bad.data_ptr<int>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  raise_if_bad_label(bad, target, K, ignore_index);
  return {loss, lse};
}

at::Tensor ls_ce_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                               const at::Tensor& lse, double alpha, int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, alpha);
  lsmia::check_ls_ce_backward_inputs(grad_loss, logits, lse);
  check_grid(logits.size(0));
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  const int64_t N = logits.size(0), K = logits.size(1);
  at::Tensor grad = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0 || K == 0) return grad;
  at::Tensor bad = at::full({1}, INT_MAX, logits.options().dtype(at::kInt));
  const Launch ls = launch_shape(N, K);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "ls_ce_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t, acc_t><<<ls.grid, ls.block, 0, stream>>>(
        grad_loss.const_data_ptr<acc_t>(), grad_loss.stride(0), logits.const_data_ptr<scalar_t>(), logits.stride(0),
        logits.stride(1), target.const_data_ptr<int64_t>(), target.stride(0), lse.const_data_ptr<acc_t>(), N, K,
        static_cast<acc_t>(alpha), ignore_index, grad.data_ptr<scalar_t>(), bad.data_ptr<int>(), ls.warp_rows);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  raise_if_bad_label(bad, target, K, ignore_index);
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CUDA, m) {
  m.impl("ls_ce_forward", &ls_ce_forward_cuda);
  m.impl("ls_ce_backward", &ls_ce_backward_cuda);
}

}  // namespace lsmia::cuda
