"""Import an external oracle: skipped on a developer machine without it, required in CI.

CI installs every oracle (.ci/run), so there a missing one is a failure, never a skip.
"""

import importlib
import os

import pytest


def require(module: str):
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def llama_cpp_logits(path, tokens: list[int]):
    """llama.cpp's logits (float32 [T, vocab]) for ``tokens`` through llama-cpp-python: the CI
    build's CPU path, 2 threads, every position."""
    import numpy as np

    llama_cpp = require("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, logits_all=True, verbose=False, seed=0)
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def llama_cpp_hidden(path, tokens: list[int]):
    """llama.cpp's final-normed hidden states (float32 [T, n_embd], the head's input) for
    ``tokens``: the same CPU path as llama_cpp_logits, with embeddings on and no pooling."""
    import numpy as np

    llama_cpp = require("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, embedding=True, verbose=False, seed=0,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE)
    llm.eval(tokens)
    rows = [llama_cpp.llama_get_embeddings_ith(llm.ctx, i) for i in range(len(tokens))]
    return np.array([np.ctypeslib.as_array(row, shape=(llm.n_embd(),)) for row in rows], dtype=np.float32)


def qwen3_logits(folder, tokens: list[int]):
    """transformers' Qwen3ForCausalLM logits (float32 [T, vocab]), loaded in float32 on the CPU."""
    torch = require("torch")
    transformers = require("transformers")
    model = transformers.Qwen3ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()
