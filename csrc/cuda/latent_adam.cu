// CUDA batched latent Adam step: one launch for the whole batch, one thread block per row
// (grid-stride over rows when B exceeds the grid). Latent rows are short (512 to 18 x 512 values),
// so a block covers a row in a few coalesced passes and the per-row clip norm is one block
// reduction. Thread 0 owns the row's step counter and its bias corrections (shared memory).
// No host synchronisation: a bad lr row is a device-side assert, so the step can be graph-captured.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdio>

#include "latent_adam_checks.h"
#include "latent_adam_math.h"

namespace lsmia::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int64_t kMaxBlocks = 1 << 20;

// Sum of `x` over the block; every thread gets the result.
__device__ float block_sum(float x, float* scratch) {
  for (int off = kWarp / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  const int warps = blockDim.x / kWarp;
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  __syncthreads();  // scratch is reused by the next row
  return total;
}

struct Args {
  int64_t B, D;
  int64_t step_stride, lr_stride, act_stride;
  double beta1, beta2;
  lsmia::LatentAdamHyper h;
  bool clip;
  float max_norm;
};

template <typename scalar_t>
__global__ void latent_adam_kernel(scalar_t* __restrict__ params, const scalar_t* __restrict__ grads,
                                   float* __restrict__ exp_avg, float* __restrict__ exp_avg_sq,
                                   int64_t* __restrict__ steps, const float* __restrict__ lr,
                                   const bool* __restrict__ active, const Args a) {
  __shared__ float scratch[32];
  __shared__ lsmia::LatentAdamRow row_consts;
  __shared__ int64_t row_step;
  for (int64_t i = blockIdx.x; i < a.B; i += gridDim.x) {
    if (active != nullptr && !active[i * a.act_stride]) continue;  // uniform over the block
    if (threadIdx.x == 0) {
      const float lr_i = lr[i * a.lr_stride];
      const bool lr_ok = isfinite(lr_i) && lr_i >= 0.0f;
      if (!lr_ok) {
        printf("fused_latent_adam_: lr must be finite and >= 0 for every row, got lr[%lld] = %f\n",
               static_cast<long long>(i), lr_i);
      }
      CUDA_KERNEL_ASSERT(lr_ok);
      row_step = steps[i * a.step_stride] + 1;
      row_consts = lsmia::latent_adam_row(lr_i, a.beta1, a.beta2, row_step);
    }
    scalar_t* p = params + i * a.D;
    const scalar_t* g = grads + i * a.D;
    float* m = exp_avg + i * a.D;
    float* v = exp_avg_sq + i * a.D;
    float coef = 1.0f;
    if (a.clip) {
      float sq = 0.0f;
      for (int64_t k = threadIdx.x; k < a.D; k += blockDim.x) {
        const float x = static_cast<float>(g[k]);
        sq += x * x;
      }
      coef = lsmia::latent_adam_clip_coef(sqrtf(block_sum(sq, scratch)), a.max_norm);
    }
    __syncthreads();  // row_consts visible
    const lsmia::LatentAdamRow r = row_consts;
    for (int64_t k = threadIdx.x; k < a.D; k += blockDim.x) {
      float pk = static_cast<float>(p[k]);
      float gk = static_cast<float>(g[k]);
      if (a.clip) gk = gk * coef;
      float mk = m[k], vk = v[k];
      lsmia::latent_adam_element(pk, gk, mk, vk, a.h, r);
      p[k] = static_cast<scalar_t>(pk);
      m[k] = mk;
      v[k] = vk;
    }
    if (threadIdx.x == 0) steps[i * a.step_stride] = row_step;
    __syncthreads();  // row_consts / row_step are rewritten for the next row
  }
}

template <typename scalar_t>
void launch(at::Tensor& params, const at::Tensor& grads, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
            at::Tensor& steps, const at::Tensor& lr, const std::optional<at::Tensor>& active, const Args& a) {
  const int threads = a.D <= 512 ? 128 : 256;
  const int64_t blocks = std::min(a.B, kMaxBlocks);
  auto stream = c10::cuda::getCurrentCUDAStream();
  latent_adam_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      params.data_ptr<scalar_t>(), grads.const_data_ptr<scalar_t>(), exp_avg.data_ptr<float>(),
      exp_avg_sq.data_ptr<float>(), steps.data_ptr<int64_t>(), lr.const_data_ptr<float>(),
      active.has_value() ? active->const_data_ptr<bool>() : nullptr, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void latent_adam_cuda(at::Tensor params, const at::Tensor& grads, at::Tensor exp_avg, at::Tensor exp_avg_sq,
                      at::Tensor steps, const at::Tensor& lr, double beta1, double beta2, double eps,
                      double weight_decay, const std::optional<at::Tensor>& active,
                      std::optional<double> max_grad_norm) {
  lsmia::check_latent_adam_inputs(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps,
                                  weight_decay, active, max_grad_norm);
  const c10::cuda::OptionalCUDAGuard guard(params.device());
  const int64_t B = params.size(0);
  if (B == 0) return;
  const at::Tensor g = grads.contiguous();
  Args a{B,
         params.numel() / B,
         steps.stride(0),
         lr.stride(0),
         active.has_value() ? active->stride(0) : 0,
         beta1,
         beta2,
         lsmia::latent_adam_hyper(beta1, beta2, eps, weight_decay),
         max_grad_norm.has_value(),
         max_grad_norm.has_value() ? static_cast<float>(*max_grad_norm) : 0.0f};
  switch (params.scalar_type()) {
    case at::kFloat:
      return launch<float>(params, g, exp_avg, exp_avg_sq, steps, lr, active, a);
    case at::kHalf:
      return launch<at::Half>(params, g, exp_avg, exp_avg_sq, steps, lr, active, a);
    case at::kBFloat16:
      return launch<at::BFloat16>(params, g, exp_avg, exp_avg_sq, steps, lr, active, a);
    default:
      TORCH_CHECK_TYPE(false, "fused_latent_adam_: unsupported params dtype ", params.scalar_type());
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CUDA, m) { m.impl("latent_adam_", &latent_adam_cuda); }

}  // namespace lsmia::cuda
