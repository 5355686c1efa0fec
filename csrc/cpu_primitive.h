// What mlxseq's primitives share: they run on CPU streams only (mlxseq runs its MLX graph on
// other devices) and queue their work on the stream's command encoder.

#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"

// Declarations every primitive repeats, written once as MLX's own primitives.h does.
#define MLXSEQ_EVAL_CPU \
  void eval_cpu(const std::vector<mlx::core::array>& inputs, std::vector<mlx::core::array>& outputs) override;
#define MLXSEQ_VJP                                                                                         \
  std::vector<mlx::core::array> vjp(const std::vector<mlx::core::array>& primals,                       \
                                    const std::vector<mlx::core::array>& cotangents,                    \
                                    const std::vector<int>& argnums,                                     \
                                    const std::vector<mlx::core::array>& outputs) override;
#define MLXSEQ_NAME(text)                \
  const char* name() const override {    \
    return text;                         \
  }

namespace mlxseq {

class CpuPrimitive : public mlx::core::Primitive {
 public:
  using mlx::core::Primitive::Primitive;

  void eval_gpu(const std::vector<mlx::core::array>&, std::vector<mlx::core::array>&) override {
    throw std::runtime_error(std::string(name()) + " runs on CPU streams only; mlxseq uses its MLX graph on GPUs");
  }

 protected:
  // Memory for every output (before the work's pointers to it are taken).
  static void allocate(std::vector<mlx::core::array>& outputs) {
    for (auto& out : outputs) out.set_data(mlx::core::allocator::malloc(out.nbytes()));
  }

  // Queues `work` on this primitive's stream, after what writes the inputs.
  template <typename Work>
  void dispatch(const std::vector<mlx::core::array>& inputs, std::vector<mlx::core::array>& outputs, Work&& work) {
    auto& encoder = mlx::core::cpu::get_command_encoder(stream());
    for (const auto& a : inputs) encoder.set_input_array(a);
    for (auto& a : outputs) encoder.set_output_array(a);
    encoder.dispatch(std::forward<Work>(work));
  }
};

// A CpuPrimitive with one setting (a smoothing, a blank id, a k), which tells equivalent ones apart.
template <typename Setting>
class CpuPrimitiveWith : public CpuPrimitive {
 public:
  CpuPrimitiveWith(mlx::core::Stream stream, Setting setting) : CpuPrimitive(stream), setting_(setting) {}

  bool is_equivalent(const mlx::core::Primitive& other) const override {
    return static_cast<const CpuPrimitiveWith&>(other).setting_ == setting_;  // MLX compares types first
  }

 protected:
  Setting setting_;
};

// The VJP of a primitive differentiable in its first input only: `backward(cotangent)` (the first
// output's cotangent as contiguous float32) for argument 0, zeros for the others.
template <typename Backward>
std::vector<mlx::core::array> first_input_vjp(const std::vector<mlx::core::array>& primals,
                                              const std::vector<mlx::core::array>& cotangents,
                                              const std::vector<int>& argnums, mlx::core::Stream s,
                                              Backward backward) {
  std::vector<mlx::core::array> result;
  for (int arg : argnums) {
    if (arg == 0) {
      result.push_back(backward(mlx::core::contiguous(mlx::core::astype(cotangents[0], mlx::core::float32, s), false, s)));
    } else {
      result.push_back(mlx::core::zeros_like(primals[arg], s));
    }
  }
  return result;
}

} // namespace mlxseq
