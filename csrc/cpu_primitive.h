// What mlxseq's primitives share: they run on CPU streams only (mlxseq runs its MLX graph on
// other devices) and queue their work on the stream's command encoder.

#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"

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

} // namespace mlxseq
