"""Code generators, installed as ``lightnet_graph.backends``.

Each backend is a class with ``name`` and ``lower(graph, outputs, stages)``
returning an :class:`~lightnet_graph.executable.Executable`. Backends are
found through the entry-point group ``lightnet_graph.backends``, so another
package can add one by declaring an entry point there.
"""

import os

from lightnet_graph.graph import mark_internal

mark_internal(os.path.dirname(os.path.abspath(__file__)))
