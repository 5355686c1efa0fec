// The label-smoothed cross-entropy primitives: see cross_entropy.h for the formulas.

#include "cross_entropy.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "mlx/ops.h"
#include "parallel.h"
#include "vector_math.h"

namespace mlxseq {

namespace mx = mlx::core;

namespace {

constexpr int kRowsPerThread = 16;  // fewer rows than this per core are not worth a thread

// Rows [first, last): the peak of each row, then exp and the logits' sum relative to it (so that
// huge logits lose no digits to the peak); lse holds (peak, log sum exp(x - peak)) per row.
MLXSEQ_CLONES void forward_rows(const float* logits, const int* targets, int V, float smoothing, float* nll,
                                float* lse, int first, int last) {
  for (int n = first; n < last; ++n) {
    const float* row = logits + size_t(n) * V;
    float peak = -std::numeric_limits<float>::infinity(), sum_exp = 0.0f, centred = 0.0f;
#pragma omp simd reduction(max : peak)
    for (int v = 0; v < V; ++v) peak = std::max(peak, row[v]);
#pragma omp simd reduction(+ : sum_exp, centred)
    for (int v = 0; v < V; ++v) {
      sum_exp += exp_nonpositive(row[v] - peak);
      centred += row[v] - peak;
    }
    const float log_sum = std::log(sum_exp);  // lse - peak
    const int target = targets[n];
    lse[2 * n] = peak;
    lse[2 * n + 1] = log_sum;
    nll[n] = target < 0 || target >= V ? std::numeric_limits<float>::quiet_NaN()
                                       : (1.0f - smoothing) * (log_sum - (row[target] - peak)) +
                                             smoothing * (log_sum - centred / float(V));
  }
}

MLXSEQ_CLONES void backward_rows(const float* logits, const int* targets, const float* lse, const float* cotangent,
                                 int V, float smoothing, float* grad, int first, int last) {
  const float uniform = smoothing / float(V);
  for (int n = first; n < last; ++n) {
    const float* row = logits + size_t(n) * V;
    float* out = grad + size_t(n) * V;
    const float g = cotangent[n], peak = lse[2 * n], log_sum = lse[2 * n + 1];
#pragma omp simd
    for (int v = 0; v < V; ++v) out[v] = g * (exp_nonpositive((row[v] - peak) - log_sum) - uniform);
    const int target = targets[n];
    if (target >= 0 && target < V) out[target] -= g * (1.0f - smoothing);
  }
}

MLXSEQ_CLONES void log_softmax_rows(const float* x, int V, float* out, int first, int last) {
  for (int n = first; n < last; ++n) {
    const float* row = x + size_t(n) * V;
    float* o = out + size_t(n) * V;
    float peak = -std::numeric_limits<float>::infinity(), sum_exp = 0.0f;
#pragma omp simd reduction(max : peak)
    for (int v = 0; v < V; ++v) peak = std::max(peak, row[v]);
#pragma omp simd reduction(+ : sum_exp)
    for (int v = 0; v < V; ++v) sum_exp += exp_nonpositive(row[v] - peak);
    const float log_sum = std::log(sum_exp);
#pragma omp simd
    for (int v = 0; v < V; ++v) o[v] = (row[v] - peak) - log_sum;
  }
}

MLXSEQ_CLONES void log_softmax_backward_rows(const float* out, const float* cotangent, int V, float* grad, int first,
                                             int last) {
  for (int n = first; n < last; ++n) {
    const float* o = out + size_t(n) * V;
    const float* g = cotangent + size_t(n) * V;
    float* d = grad + size_t(n) * V;
    float total = 0.0f;
#pragma omp simd reduction(+ : total)
    for (int v = 0; v < V; ++v) total += g[v];
#pragma omp simd
    for (int v = 0; v < V; ++v) d[v] = g[v] - exp_nonpositive(o[v]) * total;
  }
}

// Rows split among the cores when there are enough of them.
template <typename Body>
void over_row_blocks(int N, int V, Body body) {
  if (size_t(N) * V < size_t(kRowsPerThread) * 4096 || N < 2 * kRowsPerThread) return body(0, N);
  over_rows(N, body);
}

void check(const std::vector<mx::array>& inputs, const char* name) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].flags().row_contiguous || inputs[i].dtype() != (i == 1 ? mx::int32 : mx::float32)) {
      throw std::invalid_argument(std::string(name) + ": inputs must be row-contiguous (float32 / int32)");
    }
  }
}

} // namespace

void SmoothedNll::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check(inputs, name());
  allocate(outputs);
  dispatch(inputs, outputs, [N = int(inputs[0].shape(0)), V = int(inputs[0].shape(1)), e = setting_,
                    x = inputs[0].data<float>(), t = inputs[1].data<int>(), nll = outputs[0].data<float>(),
                    lse = outputs[1].data<float>()]() {
    over_row_blocks(N, V, [&](int first, int last) { forward_rows(x, t, V, e, nll, lse, first, last); });
  });
}

std::vector<mx::array> SmoothedNll::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>& outputs) {
  auto s = stream();
  return first_input_vjp(primals, cotangents, argnums, s, [&](const mx::array& cotangent) {
    return mx::array(primals[0].shape(), mx::float32, std::make_shared<SmoothedNllBackward>(s, setting_),
                     {primals[0], primals[1], outputs[1], cotangent});
  });
}

void SmoothedNllBackward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check(inputs, name());
  allocate(outputs);
  dispatch(inputs, outputs, [N = int(inputs[0].shape(0)), V = int(inputs[0].shape(1)), e = setting_,
                    x = inputs[0].data<float>(), t = inputs[1].data<int>(), lse = inputs[2].data<float>(),
                    cot = inputs[3].data<float>(), grad = outputs[0].data<float>()]() {
    over_row_blocks(N, V, [&](int first, int last) { backward_rows(x, t, lse, cot, V, e, grad, first, last); });
  });
}

void LogSoftmax::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check(inputs, name());
  allocate(outputs);
  dispatch(inputs, outputs, [N = int(inputs[0].shape(0)), V = int(inputs[0].shape(1)), x = inputs[0].data<float>(),
                    out = outputs[0].data<float>()]() {
    over_row_blocks(N, V, [&](int first, int last) { log_softmax_rows(x, V, out, first, last); });
  });
}

std::vector<mx::array> LogSoftmax::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>&,
    const std::vector<mx::array>& outputs) {
  auto s = stream();
  auto cotangent = mx::contiguous(mx::astype(cotangents[0], mx::float32, s), false, s);
  return {mx::array(primals[0].shape(), mx::float32, std::make_shared<LogSoftmaxBackward>(s), {outputs[0], cotangent})};
}

void LogSoftmaxBackward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  for (const auto& a : inputs) {
    if (!a.flags().row_contiguous || a.dtype() != mx::float32) {
      throw std::invalid_argument("MlxseqLogSoftmaxBackward: inputs must be row-contiguous float32");
    }
  }
  allocate(outputs);
  dispatch(inputs, outputs, [N = int(inputs[0].shape(0)), V = int(inputs[0].shape(1)), out = inputs[0].data<float>(),
                    cot = inputs[1].data<float>(), grad = outputs[0].data<float>()]() {
    over_row_blocks(N, V, [&](int first, int last) { log_softmax_backward_rows(out, cot, V, grad, first, last); });
  });
}

mx::array log_softmax(const mx::array& x) {
  if (x.ndim() != 2 || x.shape(1) < 1) throw std::invalid_argument("log_softmax: expected x (N, V) with V >= 1");
  auto s = mx::default_stream(mx::default_device());
  return mx::array(x.shape(), mx::float32, std::make_shared<LogSoftmax>(s),
                   {mx::contiguous(mx::astype(x, mx::float32, s), false, s)});
}

std::vector<mx::array> smoothed_nll(const mx::array& logits, const mx::array& targets, float smoothing) {
  if (logits.ndim() != 2 || targets.ndim() != 1 || targets.shape(0) != logits.shape(0) || logits.shape(1) < 1) {
    throw std::invalid_argument("smoothed_nll: expected logits (N, V) with V >= 1 and targets (N,)");
  }
  auto s = mx::default_stream(mx::default_device());
  auto as = [&](const mx::array& a, mx::Dtype t) { return mx::contiguous(mx::astype(a, t, s), false, s); };
  const int N = logits.shape(0);
  return mx::array::make_arrays({{N}, {N, 2}}, {mx::float32, mx::float32}, std::make_shared<SmoothedNll>(s, smoothing),
                                {as(logits, mx::float32), as(targets, mx::int32)});
}

} // namespace mlxseq
