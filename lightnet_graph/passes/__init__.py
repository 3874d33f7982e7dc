"""Compiler passes over a :class:`~lightnet_graph.graph.Graph`.

Each pass has the stage name that ``lightnet-graph inspect --stage`` shows
after it: verify and unroll leave ``unrolled``, autodiff ``backward`` and
simplify ``optimized``.
"""
