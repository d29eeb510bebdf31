"""teddywatch: watch folders for new images and classify each one with a fast.ai model."""

import os as _os

# NumPy's own matrix products are `teddywatch learn`'s small ones (teach/adapter.py); OpenBLAS's
# thread pool only fights onnxruntime and the decoders for the cores there (10-50 s instead of
# 2 s while another process keeps a core busy). onnxruntime has its own threads. Set before
# anything imports NumPy; a value the user set wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
