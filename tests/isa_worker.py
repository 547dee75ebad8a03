"""Run by test_isa.py in a subprocess with TINYLM_ISA set (the variant is
chosen at import): every vectorized kernel reachable from Python, on the
inputs in IN.npz, written to OUT.npz. Usage: isa_worker.py MODEL_DIR IN.npz OUT.npz

Covered: embedding, RMSNorm, RoPE, attention (GQA, masked), SwiGLU and the
LM head in forward; the chunked softmax cross-entropy (fastexp) in loss;
every backward; gradient clipping's norm; two AdamW steps; LoRA forward and
backward on an NF4 base and on an int8 base; NF4 quantize, double quantize
and dequantize; ggml's block codecs (every type tinylm quantizes, both ways);
the tokenizer (a non-numeric path) encoding and decoding.
"""
import sys

import numpy as np

import tinylm
from tinylm import _core


def main(model_dir: str, inputs: str, out: str) -> None:
    x = np.load(inputs)
    ids, mask, labels = x["ids"], x["mask"], x["labels"]
    res = {"isa": np.array(tinylm.isa())}

    model = tinylm.Model.from_pretrained(model_dir)
    res["logits"] = model.forward(ids, attention_mask=mask)
    res["loss"] = np.float64(model.loss(ids, labels, attention_mask=mask))
    model.backward()
    for name, g in model.grads().items():
        res[f"grad/{name}"] = g.copy()
    res["grad_norm"] = np.float64(tinylm.clip_grad_norm(model, 1.0))

    # AdamW on its own: two steps from the same gradients on every path (Adam
    # normalises each element, so a rounding-level difference in a near-zero
    # gradient would otherwise come out as a difference of order lr).
    model = tinylm.Model.from_pretrained(model_dir)
    opt = tinylm.AdamW(model, lr=1e-2, weight_decay=0.1)
    model._core.adamw_prepare()  # gradients and moments exist before the first backward
    g = np.random.default_rng(3)
    for _ in range(2):
        for i in range(len(model.parameter_names())):
            grad = np.asarray(model._core.grad(i))
            grad[...] = g.standard_normal(grad.shape).astype(np.float32)
        opt.step()
    for name, p in model.state_dict().items():
        res[f"adamw/{name}"] = p.copy()

    for quant in ("nf4", "int8"):
        q = tinylm.Model.from_pretrained(model_dir, quant=quant)
        q.add_lora(r=4, alpha=8, target_modules="all-linear", seed=1)
        res[f"{quant}/logits"] = q.forward(ids, attention_mask=mask)
        res[f"{quant}/loss"] = np.float64(q.loss(ids, labels, attention_mask=mask))
        q.backward()
        for name, g in q.grads().items():
            res[f"{quant}/grad/{name}"] = g.copy()
        name = "model.layers.0.mlp.down_proj.weight"
        res[f"{quant}/dequantized"] = q.weight(name)

    w = x["matrix"]
    packed, absmax = _core.nf4_quantize(w)
    res["nf4_codes"] = np.frombuffer(packed, np.uint8).copy()
    res["nf4_absmax"] = np.frombuffer(absmax, np.float32).copy()
    res["nf4_absmax_offset"] = offset = np.float64(_core.nf4_absmax_offset(res["nf4_absmax"]))
    codes, scales = _core.nf4_double_quantize(res["nf4_absmax"], float(offset))
    res["nf4_dq_codes"] = np.frombuffer(codes, np.uint8).copy()
    res["nf4_dq_scales"] = np.frombuffer(scales, np.float32).copy()

    blocks = w.reshape(-1, 256)  # 96 x 200 = 75 super-blocks of the K types
    for tid, name, _, _, _, can_quantize in _core.ggml_types():
        if can_quantize:
            res[f"ggml/{name}/codes"] = codes = _core.ggml_quantize(tid, blocks)
            res[f"ggml/{name}/dequantized"] = _core.ggml_dequantize(tid, codes, blocks.size)

    tok = tinylm.Tokenizer.from_pretrained(tinylm.DEMO_MODEL)
    text = str(x["text"])
    res["token_ids"] = np.array(tok.encode(text), dtype=np.int64)
    res["decoded"] = np.array(tok.decode(res["token_ids"].tolist()))
    np.savez(out, **res)


if __name__ == "__main__":
    main(*sys.argv[1:])
