"""A codec from outside bitpack, registered through the ``bitpack.codecs`` entry-point group.

tests/test_outside_codec.py puts this folder on PYTHONPATH; importlib.metadata finds the
entry point in ``bitpack_toy-0.1.dist-info`` exactly as it would for an installed package.
"""
