// The CTC loss (Graves et al. 2006) in log space as one MLX primitive, with torch.nn.CTCLoss's
// numbers; mlxseq.losses.ctc_loss runs it on CPU streams and its MLX graph elsewhere.
//
// Inputs: log_probs (T, B, C) float32 (log_softmax over C), targets (B, S) int32 label ids
// padded past each target's length, input_lengths (B,) and target_lengths (B,) int32.
// Outputs: losses (B,) = -log P(l_b | x_b) (inf where no alignment exists) and the alphas
// (T, B, L), L = 2S + 1, which the backward pass reads. With l' the target with blanks
// around and between its labels and y_t(s) = log_probs[t, b, l'_s]:
//
//   alpha_0(s) = y_0(s) for s < 2, else -inf
//   alpha_t(s) = logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if l'_s != blank,
//                l'_{s-2}) + y_t(s)                        for t < input_length (else alpha_{t-1})
//   loss = -logsumexp(alpha_{T-1}(2 S_b), alpha_{T-1}(2 S_b - 1))
//
// The VJP is CtcLossBackward: the beta recursion from each input's last frame and
// d loss / d log_probs[t, b, c] = -sum_{s: l'_s = c} exp(alpha_t(s) + beta_t(s) - y_t(s) + loss),
// zero for impossible alignments; mlxseq/losses.py writes the same recursions as MLX graphs.

#pragma once

#include <vector>

#include "mlx/array.h"
#include "cpu_primitive.h"
#include "mlx/primitives.h"

namespace mlxseq {

class CtcLoss : public CpuPrimitiveWith<int> {
 public:
  using CpuPrimitiveWith::CpuPrimitiveWith;

  MLXSEQ_EVAL_CPU
  MLXSEQ_VJP
  MLXSEQ_NAME("MlxseqCtcLoss")
};

// d losses / d log_probs (T, B, C) times the cotangent (B,), from the inputs, losses and alphas.
class CtcLossBackward : public CpuPrimitiveWith<int> {
 public:
  using CpuPrimitiveWith::CpuPrimitiveWith;

  MLXSEQ_EVAL_CPU
  MLXSEQ_NAME("MlxseqCtcLossBackward")
};

// (losses (B,), alphas (T, B, 2S+1)) on the default stream.
std::vector<mlx::core::array> ctc_loss(const mlx::core::array& log_probs, const mlx::core::array& targets,
                                       const mlx::core::array& input_lengths,
                                       const mlx::core::array& target_lengths, int blank);

} // namespace mlxseq
