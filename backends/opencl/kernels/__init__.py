"""OpenCL C code generators, one module per family of kernels."""
