"""The canonical model every source is read into and every target is written from.

Tensors are listed up front (name, kind, logical shape, stored dtype) and loaded one at a
time on demand, so a conversion holds about one tensor in memory whatever the model size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..codecs import codec_class, list_codecs
from ..codecs._scales import coarsest
from ..dtypes import f32_from_bf16
from ..errors import BitpackError, ShapeError, UnknownCodecError
from ..parallel import ordered
from .arch import Architecture, Kind
from .hparams import HParams


@dataclass
class Ternary:
    """A ternary weight in canonical form (spec/README.md): HF row order, multiply scale."""

    codes: np.ndarray  # int8 (M, K) of -1, 0, +1
    scale: Any  # np.float32, or a float32 (M, K/256) array for TQ tensors whose blocks differ
    source_weight_scale: np.ndarray | None = None  # a bitlinear checkpoint's own 1/s value, kept
    borderline: int = 0  # absmean elements at a rounding boundary (masters only)

    @property
    def per_block(self) -> bool:
        return np.ndim(self.scale) != 0

    @property
    def values(self) -> np.ndarray:
        """The weight W = codes x scale in float32 (per-block TQ scales spread over their 256 columns)."""
        codes = self.codes.astype(np.float32)
        if not self.per_block:
            return codes * np.float32(self.scale)
        scale = np.asarray(self.scale, dtype=np.float32)
        per = codes.shape[1] // scale.shape[1]
        if scale.shape[0] != codes.shape[0] or per * scale.shape[1] != codes.shape[1]:
            raise BitpackError(f"block scales {scale.shape} do not tile a {codes.shape} weight")
        return codes * np.repeat(scale, per, axis=1)


@dataclass
class Float:
    """A full-precision tensor as stored: ``raw`` holds float32 or float16 values, or the
    uint16 bits of bfloat16, so nothing is widened unless a caller asks for ``values``."""

    raw: np.ndarray
    stored: str  # "F32", "F16", "BF16", or a GGUF type name for dequantized tensors (raw is float32)

    @property
    def values(self) -> np.ndarray:
        """Exact float32 values (every stored format widens to float32 without rounding)."""
        if self.stored == "BF16":
            return f32_from_bf16(self.raw)
        return self.raw.astype(np.float32, copy=False)


@dataclass
class Entry:
    name: str  # canonical (GGUF) name
    kind: Kind
    shape: tuple[int, ...]  # logical shape, NumPy order; (M, K) for projections
    stored: str  # source storage: float dtype, or the source codec for projections
    load: Callable[[], Ternary | Float]
    source_name: str | None = None  # the name in the source file
    source_params: dict[str, Any] | None = None  # codec parameters of the source (TL tiles)
    scale: Callable[[], Any] | None = None  # a projection's scale without decoding its codes
    release: Callable[[], None] | None = None  # drop the source pages once the tensor is written
    source_scale: Callable[[], np.ndarray] | None = None  # a packed source's own weight_scale tensor
    all_zero: Callable[[], bool | None] | None = None  # every code 0, from the stored bytes (Codec.all_zero)
    ternary: bool = False  # an embedding or head that loads as Ternary (weight-only graphs: qwen3.md §8.2)
    # the rows lo:hi of an embedding or head (or of a master projection, ternarized with the whole
    # tensor's scale), decoded without the rest (None: load() and slice)
    load_rows: Callable[[int, int], Ternary | Float] | None = None
    # drop the source pages of rows lo:hi (a tensor written a block of rows at a time); None:
    # the source reads whole tensors, and the target converts them whole
    release_rows: Callable[[int, int], None] | None = None
    # the stored bytes of a tensor whose codes and scale are all in them (a GGUF ternary type
    # without a .scale companion), in codec ``stored`` with ``source_params``
    raw: Callable[[], np.ndarray] | None = None

    @property
    def coded(self) -> bool:
        """Stored as ternary codes and a scale: a projection, or a ternary embedding or head."""
        return self.kind is Kind.TERNARY or self.ternary

    def scale_only(self, loaded: Ternary | None = None) -> Any:
        """The canonical scale, computed once: the source checks and the target's plan both
        need it, and for master weights it is a full pass over the tensor. A caller that has
        already decoded the tensor passes it, so a source without a scale reader decodes once."""
        if "_scale" not in self.__dict__:
            if self.scale is not None:
                self.__dict__["_scale"] = self.scale()
            else:
                self.__dict__["_scale"] = (loaded if loaded is not None else self.load()).scale
        return self.__dict__["_scale"]


def read_scales(entries: list[Entry]) -> dict[str, Any]:
    """Every projection's scale, on all cores, dropping the pages read (targets decide up
    front, from the scales, what they can store exactly). A layout that stores one scale per
    row or group gives them at the coarsest granularity that holds them exactly, so a tensor
    whose groups share one value reads as one scale."""
    def one(e: Entry) -> Any:
        # a source whose scale comes only with the codes (GGUF) decodes the tensor once here
        loaded = e.load() if e.scale is None and "_scale" not in e.__dict__ else None
        scale = e.scale_only(loaded)
        if np.ndim(scale):
            scale = coarsest(scale, (loaded if loaded is not None else e.load()).codes)
        if e.release:
            e.release()
        return scale

    return {e.name: scale for e, scale in ordered(entries, one)}


@dataclass
class Model:
    source: str  # what the user named
    container: str  # "safetensors" or "gguf"
    layout: str  # e.g. "hf_packed (autobitlinear)", "master weights (BF16)", "gguf i2_s"
    arch: Architecture
    hparams: HParams
    entries: list[Entry]
    files: list[Path]  # every input file read (receipts hash them)
    config: dict[str, Any] | None = None  # the source's config.json, when it had one
    tokenizer_dir: Path | None = None  # HF tokenizer files, when the source has them
    tokenizer_kv: dict[str, Any] = field(default_factory=dict)  # GGUF tokenizer.* keys
    linear_class: str | None = None  # of a packed HF source
    source_scale_dtype: str | None = None  # dtype of a packed HF source's weight_scale tensors
    dialect: str | None = None  # of a GGUF source
    codec_params: dict[str, Any] = field(default_factory=dict)  # bitpack.codec_params of a GGUF source
    warnings: list[str] = field(default_factory=list)
    # "ternary": every projection loads as Ternary; "float": they load as Float (a full-precision
    # checkpoint, or a BitStack reconstruction). The one place that tells the two apart.
    precision: str = "ternary"
    origin: dict[str, Any] | None = None  # where the files came from (a Hub repo and commit); receipts
    float_reason: str | None = None  # why float projections are not ternary (the first off-grid group)
    rotated: str | None = None  # the metadata key saying the weights are stored rotated (qwen3.md §9)
    rotation: Any = None  # its contract (rotation.Rotation) when bitpack runs it, else None
    rotation_problem: str | None = None  # why a rotated model's contract is not one bitpack runs
    stack: Any = None  # the block selection when the source is a BitStack stack

    @property
    def name(self) -> str:
        """The model's name (GGUF general.name): the Hub repo's, else the file or folder's."""
        if self.origin and "repo" in self.origin:
            return self.origin["repo"].split("/")[-1]
        return Path(self.source.rstrip("/")).name

    def entry(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    @property
    def ternary(self) -> list[Entry]:
        return [e for e in self.entries if e.kind is Kind.TERNARY]

    @property
    def coded(self) -> list[Entry]:
        """Every tensor held as ternary codes: the projections, and a ternary embedding and head."""
        return [e for e in self.entries if e.coded]


def require_ternary(model: Model, target: str) -> None:
    """Refuse, up front, to write a full-precision model into a ternary format."""
    if model.stack is not None:  # a stack loads as float too, but "full-precision" misleads
        raise BitpackError(f"{model.source} is a BitStack stack, whose lossy blocks hold no ternary codes, and "
                           f"{target} holds ternary weights; convert the checkpoint the stack was made from, "
                           "or use --to bitstack to copy the stack into the other container (-o x.gguf)")
    if model.precision != "ternary":
        why = f" ({model.float_reason})" if model.float_reason else ""
        raise BitpackError(f"{model.source} is a full-precision checkpoint{why} and {target} holds ternary weights; "
                           "bitpack does not silently ternarize an ordinary model. Use --to bitstack to compress it")


def fit_codec(entries: list[Entry], codec) -> dict[str, Any]:
    """The codec bound for each projection's shape; every shape it cannot hold is listed in
    one refusal, before anything is written, with the codecs that hold every shape."""
    bound, refused = {}, []
    for e in entries:
        try:
            bound[e.name] = codec.for_shape(e.shape)
        except ShapeError as err:
            refused.append(f"{e.name} {list(e.shape)}: {str(err).split(': ', 1)[-1]}")
    if refused:
        fitting = [name for name in list_codecs() if name != codec.name and _holds(name, entries)]
        raise BitpackError(f"{codec.name} cannot hold {len(refused)} of {len(entries)} projections: "
                           + "; ".join(refused[:6]) + (f"; and {len(refused) - 6} more" if len(refused) > 6 else "")
                           + f". Choose another codec: {', '.join(fitting) or 'none holds every shape'}")
    return bound


def _holds(name: str, entries: list[Entry]) -> bool:
    """Can codec ``name`` with default parameters hold every projection (exact codecs only)?"""
    cls = codec_class(name)
    if cls.lossy:
        return False
    try:
        codec = cls()
        return all(codec.for_shape(e.shape) is not None for e in entries)
    except (ShapeError, UnknownCodecError):
        return False


def _block_scaled_codecs() -> list[str]:
    return [n for n in list_codecs() if codec_class(n).scale_granularity != "tensor"]


def single_scales(entries: list[Entry], target: str) -> dict[str, Any]:
    """Every projection's scale for a target that keeps one per tensor; TQ sources whose block
    scales differ are refused, all of them named."""
    scales = read_scales(entries)
    per_block = [n for n, s in scales.items() if np.ndim(s)]
    if per_block:
        raise BitpackError(f"{len(per_block)} projections have per-block scales that differ "
                           f"({', '.join(per_block[:4])}); {target} keeps one scale per tensor "
                           f"(convert to one that keeps them: {', '.join(_block_scaled_codecs())})")
    return scales
