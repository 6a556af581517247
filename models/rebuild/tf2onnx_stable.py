"""`python -m tf2onnx.convert`, with a byte-identical result from run to run.

Run by models/rebuild/build_ssdlite.py inside its throwaway venv, with the same arguments
as tf2onnx's own command line. Not used by the node.

Why: tf2onnx 1.16.1 iterates Python sets of its graph `Node` objects and of
strings in places where the order decides which generated names (`Shape__1648`,
`const_fold_opt__1752`, …) nodes get and in which order they are written. Set
order follows hash values: for strings they change with every interpreter start
unless PYTHONHASHSEED is fixed (the build script sets PYTHONHASHSEED=0); for
objects without `__hash__` they are derived from memory addresses. Two plain
conversions of the same graph therefore compute the same thing but differ in
bytes. Here each `Node` gets a hash from a creation counter instead, which is
the same in every run, so the output file is the same in every run. Nothing else
about the conversion changes.
"""

from __future__ import annotations

import itertools
import sys

from tf2onnx import graph as tf2onnx_graph

_created = itertools.count()
_node_init = tf2onnx_graph.Node.__init__


def _init(self, *args, **kwargs):
    self._stable_hash = next(_created)
    _node_init(self, *args, **kwargs)


def _hash(self):
    return self._stable_hash


tf2onnx_graph.Node.__init__ = _init
tf2onnx_graph.Node.__hash__ = _hash

if __name__ == "__main__":
    from tf2onnx import convert

    sys.argv[0] = "tf2onnx.convert"
    convert.main()
