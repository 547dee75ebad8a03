"""A tiny Llama config and a byte-level tokenizer: the smallest model and
tokenizer the Trainer and the writers can run, shared by the trainer and
crash-safety tests."""

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 260, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "initializer_range": 0.05}


class ByteTok:
    """The tokenizer protocol of tinylm.data over UTF-8 bytes (ids 0-255)."""
    bos_token_id, eos_token_id, pad_token_id = 256, 257, None

    def encode(self, text, add_special_tokens=True):
        return ([256] if add_special_tokens else []) + list(text.encode())

    def encode_batch(self, texts, add_special_tokens=True):
        return [self.encode(t, add_special_tokens) for t in texts]

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode(errors="replace")

    def apply_chat_template(self, *args, **kwargs):
        raise ValueError("no chat template")
