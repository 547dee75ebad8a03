/* fuzz_tokenizer_load.c: tlm_tok_load on an arbitrary tokenizer.json and,
 * after the separator below, an arbitrary tokenizer_config.json; a file it
 * accepts is then used: its vocabulary, special tokens, and the encoding and
 * decoding of a few texts, through every pipeline step the file configured. */
#include "fuzz_tokenizer_check.h"

#define CONFIG_SEPARATOR "\n\x01tokenizer_config.json\x01\n"

static const char *const TEXTS[] = {
    "Hello world! It's 2024: naïve café, 東京, emoji \xF0\x9F\x98\x80\n\tend  ",
    " <s> </s> <unk> <|endoftext|> <|im_start|>user\n",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *sep = memmem(data, size, CONFIG_SEPARATOR, sizeof CONFIG_SEPARATOR - 1);
    size_t json_len = sep ? (size_t)(sep - (const char *)data) : size;
    fuzz_write("tokenizer.json", data, json_len);
    char config[128];
    snprintf(config, sizeof config, "%s/tokenizer_config.json", fuzz_dir());
    if (sep) {
        size_t at = json_len + sizeof CONFIG_SEPARATOR - 1;
        fuzz_write("tokenizer_config.json", data + at, size - at);
    } else {
        unlink(config);
    }
    tlm_tok *t;
    tlm_status st = tlm_tok_load(fuzz_dir(), &t);
    if (st != TLM_OK) {
        fuzz_expect_failure(st, "tlm_tok_load");
        return 0;
    }
    check_vocabulary(t);
    for (size_t i = 0; i < sizeof TEXTS / sizeof *TEXTS; i++)
        for (int special = 0; special < 2; special++) check_encode(t, TEXTS[i], strlen(TEXTS[i]), special);
    tlm_tok_free(t);
    return 0;
}
