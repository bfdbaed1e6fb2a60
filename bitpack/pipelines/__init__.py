"""Pipelines: what a command does, from opening a source to the report it prints.

``open`` (sniff via containers.sniff, resolve a Hub id, open the canonical model), ``convert``, ``verify``,
``inspect``, ``receipt``, ``tensorfile`` (single-tensor encode/decode). They sit above
``executor/``, ``models/`` and ``containers/`` and below the API (``bitpack/__init__``).
"""
