"""What mlxseq needs from the machine: the BLAS under MLX (``blas``, loaded before
``mlx.core``), a description of the set-up for ``mlxseq info`` (``environment``) and atomic
file writes (``files``). Nothing here imports ``mlx.core`` at import time."""
