/* fuzz_tokenizer_encode.c: encoding arbitrary text with real tokenizers:
 * the demo model's (byte-level BPE, in the package) and, when the fixtures
 * are present (TINYLM_FIXTURES or ../shared/fixtures), Mistral's
 * (SentencePiece BPE with byte fallback) and Qwen3's (byte-level with a
 * regex split and many added tokens). The first input byte picks the
 * tokenizer and whether special tokens are added; the rest is the text,
 * valid UTF-8 or not. */
#include "fuzz_tokenizer_check.h"

#define MAX_TOKS 3
static tlm_tok *toks[MAX_TOKS];
static int n_toks;

static void load_or_die(const char *dir) {
    tlm_tok *t;
    if (tlm_tok_load(dir, &t) != TLM_OK) {
        fprintf(stderr, "cannot load the tokenizer in %s: %s\n", dir, tlm_last_error());
        exit(2);
    }
    toks[n_toks++] = t;
}

/* Paths are relative to tests/c/fuzz, where the Makefile runs harnesses. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    load_or_die("../../../tinylm/models/demo");
    const char *env = getenv("TINYLM_FIXTURES");
    char dir[512];
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", env && env[0] ? env : "../../../../shared/fixtures",
                 i ? "qwen3" : "mistral-7b");
        char file[600];
        snprintf(file, sizeof file, "%s/tokenizer.json", dir);
        if (access(file, R_OK) == 0) load_or_die(dir);
        else fprintf(stderr, "fuzz_tokenizer_encode: %s is missing; fuzzing without it\n", file);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const tlm_tok *t = toks[data[0] % n_toks];
    check_encode(t, (const char *)data + 1, size - 1, (data[0] >> 4) & 1);
    return 0;
}
