"""Which producer wrote a GGUF file, decided from evidence (spec/gguf.md §3.2): a pure function.

A type id whose meaning differs between dialects is read only after the dialect is known. The
evidence, each piece narrowing the set of dialects that can have produced the file:

* fork evidence: a type id that only the bitnet.cpp forks have (I2_S, TL1), or a fork
  architecture (``bitnet-b1.58``, ``bitnet-25``); an architecture the later fork removed;
* the bytes each tensor of a contested id occupies (its *extent*), checked against the size
  of every meaning the id has: a meaning that only forks have counts only with fork evidence;
  a meaning of unknown size is what is left when no sized meaning fits.

Exactly one reading must remain per tensor, or the file is refused and the user asked to name
the dialect. Everything about ids and dialects comes from :mod:`.gguf_types` (gguf-py's table
and the codecs' declarations), so a new codec or dialect needs no change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..codecs.base import pad
from ..errors import DialectError
from .gguf_types import (
    ARCHITECTURE_DIALECTS,
    BITNET_CPP_2024,
    BITNET_CPP_2026,
    DIALECTS,
    FORK_ARCHITECTURES,
    IK_LLAMA,
    MAINLINE,
    PRISM,
    PRISM_LEGACY,
    GGMLType,
    types,
)

# The dialects detection chooses between, in the order of preference when several remain
# (the choice then changes no size or codec): mainline, then the 2024-25 fork (the official
# 2B-4T file's producer), the 2026 fork, the current Prism fork, ik_llama.cpp, and last Prism's
# legacy releases (formats-2026.md §8).
DETECTABLE = (MAINLINE, BITNET_CPP_2024, BITNET_CPP_2026, PRISM, IK_LLAMA, PRISM_LEGACY)
# Keys only some producers write (formats-2026.md §9.2): a Hadamard-rotated export comes from
# prism-v7 or later, never from a legacy release.
KEY_PREFIXES = {"prism.hadamard.": (PRISM,)}
HINT = "pass dialect= (--dialect) with one of " + ", ".join(DIALECTS)


@dataclass(frozen=True)
class TensorSpan:
    """What detection needs of one tensor: its type, NumPy shape and the bytes it occupies."""

    name: str
    type_id: int
    shape: tuple[int, ...]
    extent: int  # to the next tensor's data, or to the end of the file for the last one
    last: bool  # the last tensor in the file may be unpadded


@dataclass(frozen=True)
class Meaning:
    """One reading of a type id, shared by the dialects in ``dialects``."""

    type: GGMLType
    dialects: frozenset[str]

    @property
    def fork_only(self) -> bool:
        return all(DIALECTS[d].fork for d in self.dialects)


def meanings(type_id: int) -> list[Meaning]:
    """The distinct readings of ``type_id`` among the detectable dialects (one when uncontested)."""
    by_name: dict[str, tuple[GGMLType, set[str]]] = {}
    for d in DETECTABLE:
        t = types(d).get(type_id)
        if t is not None:
            by_name.setdefault(t.name, (t, set()))[1].add(d)
    found = [Meaning(t, frozenset(ds)) for t, ds in by_name.values()]
    return sorted(found, key=lambda m: m.type.codec is None)  # ternary readings first, in messages too


def fork_type_ids() -> set[int]:
    """Ids that only bitnet.cpp forks have: any of them marks a fork file."""
    ids = {i for d in DETECTABLE if DIALECTS[d].fork for i in types(d)}
    return {i for i in ids if all(m.fork_only for m in meanings(i))}


def fits(span: TensorSpan, nbytes: int | None, alignment: int) -> bool:
    """Does ``span`` hold exactly a tensor of ``nbytes``, padded to ``alignment``?"""
    if nbytes is None:
        return False
    return span.extent == pad(nbytes, alignment) or (span.last and span.extent == nbytes)


def detect(arch: str | None, spans: Sequence[TensorSpan], alignment: int, label: str,
           keys: Sequence[str] = ()) -> str:
    """The dialect that wrote a file with architecture ``arch``, these tensors and KV ``keys``."""
    fork_ids = fork_type_ids()
    fork_why = [f"type {i} ({meanings(i)[0].type.name})" for i in sorted({s.type_id for s in spans} & fork_ids)]
    if arch in FORK_ARCHITECTURES:
        fork_why.append(f"architecture '{arch}'")
    evidence: list[tuple[frozenset[str], str]] = []
    fork_family = frozenset(d for d in DETECTABLE if DIALECTS[d].fork)
    if fork_why:
        evidence.append((fork_family, " and ".join(fork_why)))
    if arch in ARCHITECTURE_DIALECTS:
        evidence.append((frozenset(ARCHITECTURE_DIALECTS[arch]), f"architecture '{arch}'"))
    for prefix, dialects in KEY_PREFIXES.items():
        key = next((k for k in keys if k.startswith(prefix)), None)
        if key is not None:
            evidence.append((frozenset(dialects), f"key '{key}'"))
    for type_id in sorted({s.type_id for s in spans}):  # an id only some producers have
        known = frozenset(d for d in DETECTABLE if type_id in types(d))
        if known and len(known) < len(DETECTABLE):
            name = "/".join(sorted({types(d)[type_id].name for d in known}))
            evidence.append((known, f"type {type_id} ({name}) exists only in {', '.join(sorted(known))}"))
    no_fork = (f"but nothing else marks a bitnet.cpp file (no type {'/'.join(map(str, sorted(fork_ids)))}, "
               f"architecture {arch!r}); {HINT}")
    for span in spans:
        readings = meanings(span.type_id)
        if len(readings) > 1:
            evidence.append(_span_evidence(span, readings, bool(fork_why), alignment, label, no_fork))
    candidates, reasons = set(DETECTABLE), []
    for compatible, why in evidence:
        if not candidates & compatible:
            raise DialectError(f"{label}: conflicting dialect evidence: {why}, but {'; '.join(reasons)}; {HINT}")
        candidates &= compatible
        reasons.append(why)
    return next(d for d in DETECTABLE if d in candidates)


def _span_evidence(span: TensorSpan, readings: list[Meaning], fork: bool, alignment: int, label: str,
                   no_fork: str) -> tuple[frozenset[str], str]:
    """Which dialects a tensor of a contested id points to, from the bytes it occupies."""
    what = f"tensor '{span.name}' (type {span.type_id}, extent {span.extent} bytes)"
    sized = [m for m in readings if m.type.nbytes is not None]
    fitting = [m for m in sized if fits(span, m.type.nbytes(span.shape), alignment)]  # type: ignore[misc]
    usable = [m for m in fitting if fork or not m.fork_only]
    if len(usable) > 1:
        names = " and ".join(m.type.name for m in usable)
        raise DialectError(f"{label}: {what} fits both {names}; {HINT}")
    if usable:
        return usable[0].dialects, f"{what} sized as {usable[0].type.name}"
    if fitting:
        return _refuse(f"{label}: {what} is sized as bitnet.cpp {fitting[0].type.name}, {no_fork}")
    unsized = [m for m in readings if m.type.nbytes is None and (fork or not m.fork_only)]
    if len(unsized) == 1:
        return unsized[0].dialects, f"{what} is {'/'.join(sorted(unsized[0].dialects))} {unsized[0].type.name}"
    sizes = " nor ".join(f"{m.type.name} ({m.type.nbytes(span.shape)} bytes)" for m in sized)  # type: ignore[misc]
    return _refuse(f"{label}: {what} fits neither {sizes}; {HINT}")


def _refuse(msg: str) -> tuple[frozenset[str], str]:
    raise DialectError(msg)
