# mlxseq first, so that its BLAS is loaded before any test module imports mlx.core.
import mlxseq  # noqa: F401
