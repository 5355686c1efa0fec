// The CTC primitives: see ctc.h for the recursions.

#include "ctc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "mlx/ops.h"
#include "parallel.h"

namespace mlxseq {

namespace mx = mlx::core;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// log(exp(a) + exp(b) + exp(c)), -inf when all three are.
inline float log_sum_exp(float a, float b, float c) {
  const float peak = std::max(a, std::max(b, c));
  if (peak == kNegInf) return kNegInf;
  return peak + std::log(std::exp(a - peak) + std::exp(b - peak) + std::exp(c - peak));
}

// One sequence's l' (L positions, padded with blanks) and where a skip from s-2 is allowed.
// `usable` is false for a target no alignment can read safely (a length outside [0, S], a
// label outside [0, C) or equal to the blank): its loss is NaN and its gradient 0, never a
// read out of bounds (mlxseq.losses.ctc_loss names such inputs before they get here).
struct Extended {
  std::vector<int> label;
  std::vector<char> skip;
  int length;  // 2 S_b + 1: the positions of this target
  bool usable;

  Extended(const int* targets, int S, int C, int target_length, int blank)
      : label(2 * S + 1, blank), skip(2 * S + 1, 0), length(2 * target_length + 1),
        usable(target_length >= 0 && target_length <= S && blank >= 0 && blank < C) {
    for (int k = 0; k < S; ++k) label[2 * k + 1] = targets[k];
    for (int k = 0; usable && k < target_length; ++k) usable = targets[k] >= 0 && targets[k] < C && targets[k] != blank;
    for (int s = 0; s < 2 * S + 1; ++s) {
      skip[s] = label[s] != blank && (s < 2 || label[s] != label[s - 2]);
    }
  }
};

struct Sizes {
  int T, B, C, S, L;
};

void forward(Sizes n, int blank, const float* log_probs, const int* targets, const int* input_lengths,
             const int* target_lengths, float* losses, float* alphas, int first, int last) {
  const auto [T, B, C, S, L] = n;
  for (int b = first; b < last; ++b) {
    const Extended ext(targets + size_t(b) * S, S, C, target_lengths[b], blank);
    auto y = [&](int t, int s) { return log_probs[(size_t(t) * B + b) * C + ext.label[s]]; };
    auto alpha = [&](int t) { return alphas + (size_t(t) * B + b) * L; };
    if (!ext.usable || T == 0) {
      for (int t = 0; t < T; ++t) std::fill(alpha(t), alpha(t) + L, std::numeric_limits<float>::quiet_NaN());
      losses[b] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    for (int s = 0; s < L; ++s) alpha(0)[s] = s < ext.length && s < 2 ? y(0, s) : kNegInf;
    for (int t = 1; t < T; ++t) {
      const float* previous = alpha(t - 1);
      float* current = alpha(t);
      if (t >= input_lengths[b]) {  // past this input: the alphas stay
        std::copy(previous, previous + L, current);
        continue;
      }
      for (int s = 0; s < L; ++s) {
        if (s >= ext.length) {
          current[s] = kNegInf;
          continue;
        }
        const float step = s >= 1 ? previous[s - 1] : kNegInf;
        const float skip = s >= 2 && ext.skip[s] ? previous[s - 2] : kNegInf;
        const float sum = log_sum_exp(previous[s], step, skip);
        current[s] = sum == kNegInf ? kNegInf : sum + y(t, s);
      }
    }
    const float* last = alpha(T - 1);
    const int tl = target_lengths[b];
    losses[b] = -log_sum_exp(last[2 * tl], tl > 0 ? last[2 * tl - 1] : kNegInf, kNegInf);
  }
}

void backward(Sizes n, int blank, const float* log_probs, const int* targets, const int* input_lengths,
              const int* target_lengths, const float* losses, const float* alphas, const float* cotangent,
              float* grad, int first, int last) {
  const auto [T, B, C, S, L] = n;
  std::vector<float> beta(L, kNegInf), next(L, kNegInf);
  for (int b = first; b < last; ++b) {
    for (int t = 0; t < T; ++t) std::fill(grad + (size_t(t) * B + b) * C, grad + (size_t(t) * B + b + 1) * C, 0.0f);
    const Extended ext(targets + size_t(b) * S, S, C, target_lengths[b], blank);
    if (std::isinf(losses[b]) || !ext.usable) continue;  // impossible alignments have no gradient
    const int Tb = input_lengths[b], tl = target_lengths[b];
    const float scale = -cotangent[b];
    std::fill(beta.begin(), beta.end(), kNegInf);
    auto y = [&](int t, int s) { return log_probs[(size_t(t) * B + b) * C + ext.label[s]]; };
    for (int t = std::min(Tb, T) - 1; t >= 0; --t) {
      for (int s = 0; s < L; ++s) {
        if (s >= ext.length) {
          next[s] = kNegInf;
        } else if (t == Tb - 1) {  // the input's last frame: paths end in l's last label or the blank after it
          next[s] = s == 2 * tl || s == 2 * tl - 1 ? y(t, s) : kNegInf;
        } else {
          const float step = s + 1 < L ? beta[s + 1] : kNegInf;
          const float skip = s + 2 < L && ext.skip[s + 2] ? beta[s + 2] : kNegInf;
          const float sum = log_sum_exp(beta[s], step, skip);
          next[s] = sum == kNegInf ? kNegInf : sum + y(t, s);
        }
      }
      std::swap(beta, next);
      const float* alpha = alphas + (size_t(t) * B + b) * L;
      float* g = grad + (size_t(t) * B + b) * C;
      for (int s = 0; s < ext.length; ++s) {
        const float log_gamma = alpha[s] + beta[s] - y(t, s) + losses[b];  // log P(path through (t, s) | x)
        if (log_gamma != kNegInf && !std::isnan(log_gamma)) g[ext.label[s]] += scale * std::exp(log_gamma);
      }
    }
  }
}

void check(const std::vector<mx::array>& inputs, const char* name) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const bool integer = i == 1 || i == 2 || i == 3;
    if (!inputs[i].flags().row_contiguous || inputs[i].dtype() != (integer ? mx::int32 : mx::float32)) {
      throw std::invalid_argument(std::string(name) + ": inputs must be row-contiguous (float32 / int32)");
    }
  }
}

Sizes sizes_of(const mx::array& log_probs, const mx::array& targets) {
  const int S = targets.shape(1);
  return Sizes{int(log_probs.shape(0)), int(log_probs.shape(1)), int(log_probs.shape(2)), S, 2 * S + 1};
}

} // namespace

void CtcLoss::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check(inputs, name());
  allocate(outputs);
  dispatch(inputs, outputs, [n = sizes_of(inputs[0], inputs[1]), blank = setting_, lp = inputs[0].data<float>(),
                    tg = inputs[1].data<int>(), il = inputs[2].data<int>(), tl = inputs[3].data<int>(),
                    losses = outputs[0].data<float>(), alphas = outputs[1].data<float>()]() {
    over_rows(n.B, [&](int first, int last) { forward(n, blank, lp, tg, il, tl, losses, alphas, first, last); });
  });
}

std::vector<mx::array> CtcLoss::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>& outputs) {
  auto s = stream();
  return first_input_vjp(primals, cotangents, argnums, s, [&](const mx::array& cotangent) {
    return mx::array(primals[0].shape(), mx::float32, std::make_shared<CtcLossBackward>(s, setting_),
                     {primals[0], primals[1], primals[2], primals[3], outputs[0], outputs[1], cotangent});
  });
}

void CtcLossBackward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check({inputs[0], inputs[1], inputs[2], inputs[3]}, name());
  for (int i : {4, 5, 6}) {
    if (!inputs[i].flags().row_contiguous || inputs[i].dtype() != mx::float32) {
      throw std::invalid_argument("MlxseqCtcLossBackward: losses, alphas and cotangent must be float32");
    }
  }
  allocate(outputs);
  dispatch(inputs, outputs, [n = sizes_of(inputs[0], inputs[1]), blank = setting_, lp = inputs[0].data<float>(),
                    tg = inputs[1].data<int>(), il = inputs[2].data<int>(), tl = inputs[3].data<int>(),
                    losses = inputs[4].data<float>(), alphas = inputs[5].data<float>(),
                    cot = inputs[6].data<float>(), grad = outputs[0].data<float>()]() {
    over_rows(n.B, [&](int first, int last) {
      backward(n, blank, lp, tg, il, tl, losses, alphas, cot, grad, first, last);
    });
  });
}

std::vector<mx::array> ctc_loss(const mx::array& log_probs, const mx::array& targets,
                                const mx::array& input_lengths, const mx::array& target_lengths, int blank) {
  if (log_probs.ndim() != 3 || targets.ndim() != 2 || targets.shape(0) != log_probs.shape(1) ||
      input_lengths.ndim() != 1 || target_lengths.ndim() != 1 || input_lengths.shape(0) != log_probs.shape(1) ||
      target_lengths.shape(0) != log_probs.shape(1)) {
    throw std::invalid_argument("ctc_loss: expected log_probs (T, B, C), targets (B, S), lengths (B,)");
  }
  auto s = mx::default_stream(mx::default_device());
  auto as = [&](const mx::array& a, mx::Dtype t) { return mx::contiguous(mx::astype(a, t, s), false, s); };
  const int T = log_probs.shape(0), B = log_probs.shape(1), L = 2 * targets.shape(1) + 1;
  return mx::array::make_arrays({{B}, {T, B, L}}, {mx::float32, mx::float32}, std::make_shared<CtcLoss>(s, blank),
                                {as(log_probs, mx::float32), as(targets, mx::int32), as(input_lengths, mx::int32),
                                 as(target_lengths, mx::int32)});
}

} // namespace mlxseq
