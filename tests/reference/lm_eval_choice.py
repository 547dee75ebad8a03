"""lm-evaluation-harness' multiple-choice scoring, restated on a transformers
model and tokenizer (the harness itself pulls in datasets, evaluate,
sacrebleu, scikit-learn...; this is the part tinylm must agree with).

From lm_eval/models/huggingface.py (HFLM): tok_encode encodes with
add_special_tokens=False (add_bos_token defaults to False); _encode_pair
moves the context's trailing whitespace to the continuation and takes the
continuation tokens as what encode(context + continuation) adds after
encode(context); an empty context becomes [prefix_token_id] (BOS, else EOS);
_loglikelihood_tokens feeds (context + continuation)[:-1] and sums the
log-softmax of the continuation tokens. From lm_eval/api/task.py
(process_results, output_type multiple_choice): requests are
(context, target_delimiter + choice) with target_delimiter " "; acc is
argmax(lls) == gold, acc_norm argmax(lls / len(choice)) == gold, with the
choice's length in characters.
"""
import numpy as np
import torch


def encode_pair(tok, context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctx = tok.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]


def loglikelihood(model, tok, context, continuation):
    if context == "":
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ctx, cont = [prefix], tok.encode(continuation, add_special_tokens=False)
    else:
        ctx, cont = encode_pair(tok, context, continuation)
    inp = torch.tensor([(ctx + cont)[:-1]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(inp).logits[0].double(), dim=-1)
    picked = logprobs[len(ctx) - 1:, :].gather(1, torch.tensor(cont)[:, None])
    return float(picked.sum())


def multiple_choice(model, tok, context, choices, gold, target_delimiter=" "):
    lls = [loglikelihood(model, tok, context, f"{target_delimiter}{c}") for c in choices]
    completion_len = np.array([float(len(c)) for c in choices])
    pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / completion_len))
    return {"lls": lls, "pred": pred, "pred_norm": pred_norm, "acc": float(pred == gold),
            "acc_norm": float(pred_norm == gold)}
