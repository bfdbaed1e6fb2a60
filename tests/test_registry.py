"""The codec registry: names, aliases, configs, unknown names and parameters."""

import pytest

from bitpack.codecs import UnknownCodecError, codec_class, get_codec, list_codecs

NAMES = ["int8", "i2_packed", "hf_packed", "i2_s", "tq2_0", "tq1_0", "q2_0", "q1_0", "pq2_0", "ptq1_0",
         "tl1", "tl2", "iq1_bn", "iq2_bn", "iq2_bn_r4", "unpacked", "bitstack"]
CONTAINER = {"int8": "safetensors", "i2_packed": "safetensors", "hf_packed": "safetensors",
             "i2_s": "gguf", "tq2_0": "gguf", "tq1_0": "gguf", "tl1": "gguf", "tl2": "gguf",
             "q2_0": "gguf", "q1_0": "gguf", "pq2_0": "gguf", "ptq1_0": "gguf",
             "iq1_bn": "gguf", "iq2_bn": "gguf", "iq2_bn_r4": "gguf", "unpacked": "safetensors",
             "bitstack": "safetensors"}


def test_list_codecs():
    assert list_codecs() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_get_codec_by_name_and_config(name):
    codec = get_codec(name)
    assert codec.name == name
    assert codec.container == CONTAINER[name]
    assert isinstance(codec, codec_class(name))
    assert get_codec(codec.get_config()) == codec
    assert get_codec({"id": name}) == codec


def test_only_bitstack_is_lossy():
    assert [n for n in NAMES if codec_class(n).lossy] == ["bitstack"]


def test_alias():
    assert get_codec("i2_naive") == get_codec("int8")
    assert get_codec("i2_naive").name == "int8"


def test_equality_follows_config():
    assert get_codec("tl2", BM=32) == get_codec({"id": "tl2", "BM": 32})
    assert get_codec("tl2", BM=32) != get_codec("tl2", BM=64)
    assert get_codec("tl2") != get_codec("tl1")
    assert get_codec("tq2_0", scale_mode="separate") != get_codec("tq2_0", scale_mode="baked")
    assert get_codec("i2_s", layout="x86") == get_codec("i2_s") == get_codec({"id": "i2_s"})
    assert get_codec("i2_s").get_config() == {"id": "i2_s"}  # the default layout is not recorded
    assert get_codec("i2_s", layout="arm") != get_codec("i2_s", layout="x86_1x4") != get_codec("i2_s")
    assert len({get_codec("tl2", BM=32), get_codec({"id": "tl2", "BM": 32})}) == 1


@pytest.mark.parametrize("name", ["i2", "q4_0", "", "tl3"])
def test_unknown_codec(name):
    with pytest.raises(UnknownCodecError) as err:
        get_codec(name)
    assert "i2_s" in str(err.value)  # lists the known codecs


@pytest.mark.parametrize(
    "name,params",
    [("int8", {"BM": 32}), ("i2_s", {"scale_mode": "baked"}), ("tq2_0", {"BM": 32}), ("tl2", {"scale_mode": "baked"})],
)
def test_unknown_parameter(name, params):
    with pytest.raises(UnknownCodecError) as err:
        get_codec(name, **params)
    assert next(iter(params)) in str(err.value)
