/* test_tokenizer.c: the tokenizer.json reader and the encode/decode pipeline
 * under ASan/UBSan.
 *
 * A hand-written tokenizer.json that uses every supported component is
 * loaded and run over awkward texts and random ids; malformed and
 * unsupported files must fail with the right status and a message naming
 * the file; a mutation loop over that file checks that damage of any kind
 * fails cleanly or loads into a tokenizer that still encodes and decodes.
 * The same file and a tokenizer_config.json come in as JSON text too
 * (tlm_tok_load_json), with "merge_ranks" tying merges.
 * The real fixtures (../shared/fixtures, or $TINYLM_FIXTURES) are encoded too when present;
 * their exact ids are the pytest suite's business (against `tokenizers`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tlm.h"

static char tmpdir[] = "/tmp/tlm-tok-test-XXXXXX";

static void write_file(const char *dir, const char *name, const char *text, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(text, 1, n, fp) != n || fclose(fp) != 0) {
        printf("cannot write %s\n", path);
        exit(2);
    }
}

/* A small SentencePiece-style BPE with byte fallback, plus every supported
 * normalizer, pre-tokenizer, decoder and post-processor. "@BYTES@" is
 * replaced by the 256 "<0xNN>" vocabulary entries. */
static const char TOKENIZER_JSON[] =
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n"
    " \"added_tokens\": [\n"
    "  {\"id\": 0, \"content\": \"<unk>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},\n"
    "  {\"id\": 1, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},\n"
    "  {\"id\": 2, \"content\": \"</s>\", \"single_word\": false, \"lstrip\": true, \"rstrip\": true, \"normalized\": false, \"special\": true},\n"
    "  {\"id\": 300, \"content\": \"cat\", \"single_word\": true, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false}\n"
    " ],\n"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"NFKD\"}, {\"type\": \"NFC\"},\n"
    "   {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s{3,}\"}, \"content\": \"  \"},\n"
    "   {\"type\": \"Prepend\", \"prepend\": \"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},\n"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
    "   {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}|[\\\\w]+|\\\\W\"}, \"behavior\": \"Isolated\", \"invert\": false},\n"
    "   {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"MergedWithNext\", \"invert\": true},\n"
    "   {\"type\": \"Digits\", \"individual_digits\": true},\n"
    "   {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\", \"split\": true}]},\n"
    " \"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n"
    "   {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},\n"
    "     {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]},\n"
    "     \"</s>\": {\"id\": \"</s>\", \"ids\": [2], \"tokens\": [\"</s>\"]}}}]},\n"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"},\n"
    "   {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 1},\n"
    "   {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"always\", \"split\": true},\n"
    "   {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}]},\n"
    " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", \"continuing_subword_prefix\": null,\n"
    "   \"end_of_word_suffix\": null, \"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,\n"
    "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, @BYTES@, \"\\u2581\": 259, \"a\": 260, \"b\": 261, \"c\": 262,\n"
    "     \"t\": 263, \"ab\": 264, \"\\u2581a\": 265, \"\\u2581ab\": 266, \"1\": 267, \"2\": 268, \"12\": 269, \"\\u00e9\": 270, \"\\u2581\\u2581\": 271},\n"
    "   \"merges\": [[\"a\", \"b\"], [\"\\u2581\", \"a\"], [\"\\u2581a\", \"b\"], [\"1\", \"2\"], [\"\\u2581\", \"\\u2581\"]]}}\n";

/* TOKENIZER_JSON with the byte tokens spelled out (malloc'd). */
static char *full_json(size_t *n) {
    char bytes[256 * 16], *o = bytes;
    for (int b = 0; b < 256; b++) o += sprintf(o, "%s\"<0x%02X>\": %d", b ? ", " : "", b, 3 + b);
    const char *at = strstr(TOKENIZER_JSON, "@BYTES@");
    size_t head = (size_t)(at - TOKENIZER_JSON), tail = strlen(at + 7);
    char *s = malloc(head + strlen(bytes) + tail + 1);
    memcpy(s, TOKENIZER_JSON, head);
    memcpy(s + head, bytes, strlen(bytes));
    memcpy(s + head + strlen(bytes), at + 7, tail + 1);
    *n = strlen(s);
    return s;
}

static const char *const TEXTS[] = {
    "", "a", "ab ab abc", "  cat cats  dog-cat-12 123456 ", "<s>x</s>  y </s>z", "caf\xc3\xa9 cafe\xcc\x81",
    "\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80", "\x01\x02\x7f\t\r\n", "a\xe2\x80\x8d\xe1\xa0\x8e b",
    "                                                            many spaces", "\xef\xbf\xbd",
};

/* Encodes and decodes the texts and some random ids; checks only what holds
 * for any tokenizer (ids in range, batch == single, decode succeeds). */
static void exercise(const tlm_tok *t, unsigned seed) {
    size_t n_texts = sizeof TEXTS / sizeof TEXTS[0];
    size_t lens[sizeof TEXTS / sizeof TEXTS[0]];
    tlm_tok_ids single[sizeof TEXTS / sizeof TEXTS[0]], batch[sizeof TEXTS / sizeof TEXTS[0]];
    memset(single, 0, sizeof single);
    memset(batch, 0, sizeof batch);
    int64_t vocab = tlm_tok_vocab_size(t);
    for (size_t i = 0; i < n_texts; i++) {
        lens[i] = strlen(TEXTS[i]);
        CHECK(tlm_tok_encode(t, TEXTS[i], lens[i], (int)(i & 1), &single[i]) == TLM_OK);
        for (int64_t k = 0; k < single[i].n; k++) {
            size_t len;
            CHECK(tlm_tok_id_to_token(t, single[i].ids[k], &len) != NULL);
        }
        char *out;
        size_t out_len;
        CHECK(tlm_tok_decode(t, single[i].ids, single[i].n, (int)(i & 2), &out, &out_len) == TLM_OK);
        CHECK(out && strlen(out) == out_len);
        free(out);
    }
    tlm_status st = TLM_OK;
    for (int parity = 0; parity < 2; parity++) {
        /* The batch runs with add_special_tokens = parity; compare the matching singles. */
        CHECK((st = tlm_tok_encode_batch(t, TEXTS, lens, (int64_t)n_texts, parity, batch)) == TLM_OK);
        for (size_t i = 0; st == TLM_OK && i < n_texts; i++) {
            if ((int)(i & 1) != parity) continue;
            CHECK(batch[i].n == single[i].n && (single[i].n == 0 || memcmp(batch[i].ids, single[i].ids, (size_t)single[i].n * 4) == 0));
        }
    }
    int32_t ids[40];
    srand(seed);
    for (int r = 0; r < 50; r++) {
        int n = rand() % 40;
        for (int k = 0; k < n; k++) ids[k] = (int32_t)(rand() % (vocab + 20)) - 5;
        char *out;
        size_t out_len;
        CHECK(tlm_tok_decode(t, ids, n, r & 1, &out, &out_len) == TLM_OK);
        free(out);
    }
    for (size_t i = 0; i < n_texts; i++) {
        tlm_tok_ids_free(&single[i]);
        tlm_tok_ids_free(&batch[i]);
    }
}

static void test_handwritten(void) {
    check_case = "hand-written tokenizer.json";
    size_t n;
    char *json = full_json(&n);
    write_file(tmpdir, "tokenizer.json", json, n);
    tlm_tok *t = NULL;
    CHECK(tlm_tok_load(tmpdir, &t) == TLM_OK);
    if (t) {
        exercise(t, 1);
        CHECK(tlm_tok_vocab_size(t) == 273);                  /* 272 vocabulary ids + "cat" */
        CHECK(tlm_tok_token_to_id(t, "cat", 3) == 272);         /* the next free id, not the file's 300 */
        CHECK(tlm_tok_token_to_id(t, "\xe2\x96\x81" "ab", 5) == 266);
        /* "ab" -> "▁ab" (Prepend) -> "▁", "ab" (\W split); Metaspace "first"
         * prefixes "ab" too, its start being original offset 0; "a b" merges
         * before "▁ a". As `tokenizers` encodes it. */
        tlm_tok_ids v = {0};
        CHECK(tlm_tok_encode(t, "ab", 2, 1, &v) == TLM_OK);
        CHECK(v.n == 5 && v.ids[0] == 1 && v.ids[1] == 259 && v.ids[2] == 259 && v.ids[3] == 264 && v.ids[4] == 2);
        CHECK(tlm_tok_encode(t, "\xff\xfe", 2, 1, &v) == TLM_EINVAL);   /* not UTF-8 */
        CHECK(strstr(tlm_last_error(), "UTF-8") != NULL);
        tlm_tok_ids_free(&v);
        tlm_tok_free(t);
    }
    free(json);
}

/* Replaces the first occurrence of `from` in the file text with `to`, writes
 * it, and checks that loading fails with st and a message holding `what`. */
static void expect_failure(const char *name, const char *from, const char *to, tlm_status st, const char *what) {
    check_case = name;
    size_t n;
    char *json = full_json(&n), *at = strstr(json, from);
    if (!CHECK(at != NULL)) { free(json); return; }
    size_t fl = strlen(from), tl = strlen(to);
    char *bad = malloc(n - fl + tl + 1);
    memcpy(bad, json, (size_t)(at - json));
    memcpy(bad + (at - json), to, tl);
    memcpy(bad + (at - json) + tl, at + fl, n - (size_t)(at - json) - fl + 1);
    write_file(tmpdir, "tokenizer.json", bad, strlen(bad));
    tlm_tok *t = NULL;
    CHECK(tlm_tok_load(tmpdir, &t) == st);
    CHECK(t == NULL);
    CHECK(strstr(tlm_last_error(), "tokenizer.json") != NULL);
    CHECK(strstr(tlm_last_error(), what) != NULL);
    tlm_tok_free(t);
    free(bad);
    free(json);
}

static void test_malformed(void) {
    expect_failure("model type", "\"type\": \"BPE\"", "\"type\": \"WordPiece\"", TLM_EUNSUPPORTED, "WordPiece");
    expect_failure("normalizer", "{\"type\": \"NFKD\"}", "{\"type\": \"Lowercase\"}", TLM_EUNSUPPORTED, "Lowercase");
    expect_failure("pre_tokenizer", "{\"type\": \"Digits\", \"individual_digits\": true}", "{\"type\": \"Punctuation\"}",
                   TLM_EUNSUPPORTED, "Punctuation");
    expect_failure("decoder", "{\"type\": \"Fuse\"}", "{\"type\": \"CTC\"}", TLM_EUNSUPPORTED, "CTC");
    expect_failure("post_processor", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}",
                   "{\"type\": \"RobertaProcessing\"}", TLM_EUNSUPPORTED, "RobertaProcessing");
    expect_failure("truncated", "\"merges\"", "\"merges\": [\"a b\"", TLM_EFORMAT, "malformed JSON");
    expect_failure("vocab id", "\"a\": 260", "\"a\": -4", TLM_EFORMAT, "model.vocab");
    expect_failure("vocab type", "\"a\": 260", "\"a\": \"x\"", TLM_EFORMAT, "model.vocab");
    expect_failure("merge spelling", "[\"a\", \"b\"],", "\"a b c\",", TLM_EFORMAT, "merge 1");
    expect_failure("merge pair", "[\"\\u2581\", \"a\"]", "[\"\\u2581\"]", TLM_EFORMAT, "merge 2");
    expect_failure("merge token", "[\"1\", \"2\"]", "\"1 zz\"", TLM_EFORMAT, "'zz'");
    expect_failure("unk", "\"unk_token\": \"<unk>\"", "\"unk_token\": \"<nope>\"", TLM_EFORMAT, "<nope>");
    expect_failure("regex", "\\\\p{N}{1,3}", "(\\\\p{N}", TLM_EFORMAT, "bad regex");
    expect_failure("behavior", "\"Isolated\"", "\"Sideways\"", TLM_EFORMAT, "Sideways");
    expect_failure("class escape", "[\\\\w]+", "[\\\\W]+", TLM_EUNSUPPORTED, "\\W");
    expect_failure("replacement", "\"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\"",
                   "\"replacement\": \"ab\", \"prepend_scheme\": \"first\"", TLM_EFORMAT, "single character");
    expect_failure("template", "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}", "{\"Sequence\": {\"id\": \"B\", \"type_id\": 0}}",
                   TLM_EFORMAT, "sequence A");
    expect_failure("template ids", "\"ids\": [1]", "\"ids\": [\"one\"]", TLM_EFORMAT, "<s>");
    expect_failure("added content", "\"content\": \"cat\"", "\"content\": 7", TLM_EFORMAT, "content");
    expect_failure("added flag", "\"single_word\": true", "\"single_word\": \"yes\"", TLM_EFORMAT, "single_word");
    expect_failure("dropout", "\"dropout\": null", "\"dropout\": 0.5", TLM_EUNSUPPORTED, "dropout");
    expect_failure("strip", "\"start\": 1", "\"start\": -1", TLM_EFORMAT, "start");
}

/* tlm_tok_load_json: the file's text and a config in memory; errors name the source. */
static void test_from_memory(void) {
    check_case = "tokenizer.json text";
    size_t n;
    char *json = full_json(&n);
    const char config[] = "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_bos_token\": false}";
    tlm_tok *t = NULL;
    CHECK(tlm_tok_load_json(json, n, config, strlen(config), "mem.gguf", &t) == TLM_OK);
    if (t) {
        exercise(t, 2);
        /* As the folder's "ab" (test_handwritten), less the BOS the config turns off. */
        tlm_tok_ids v = {0};
        CHECK(tlm_tok_encode(t, "ab", 2, 1, &v) == TLM_OK);
        CHECK(v.n == 4 && v.ids[0] == 259 && v.ids[1] == 259 && v.ids[2] == 264 && v.ids[3] == 2);
        CHECK(strcmp(tlm_tok_special_token(t, TLM_TOK_BOS), "<s>") == 0);
        tlm_tok_ids_free(&v);
        tlm_tok_free(t);
    }
    t = NULL;
    CHECK(tlm_tok_load_json(json, n - 3, NULL, 0, "mem.gguf", &t) == TLM_EFORMAT && t == NULL);   /* "}}\n" cut */
    CHECK(strstr(tlm_last_error(), "mem.gguf: malformed JSON") != NULL);
    CHECK(tlm_tok_load_json(json, n, "[1]", 3, "mem.gguf", &t) == TLM_EFORMAT && t == NULL);
    CHECK(strstr(tlm_last_error(), "mem.gguf: must hold a JSON object") != NULL);

    /* Equal ranks apply leftmost first: "b c" is listed first, but ties with
     * "a b", which is further left in "abc"; long words (the heap) alike. */
    check_case = "merge_ranks";
    const char *small[] = {
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4},"
        " \"merges\": [\"b c\", \"a b\"]@}}",
    };
    const char *ranks[] = {"", ", \"merge_ranks\": [0, 0]", ", \"merge_ranks\": [0]", ", \"merge_ranks\": [0, -3]",
                           ", \"merge_ranks\": 7"};
    const char *abc = "abcabcabcabcabcabcabcabcabcabcabcabc";   /* 36 symbols: the heap */
    for (int k = 0; k < 5; k++) {
        char with[512];
        const char *at = strchr(small[0], '@');
        snprintf(with, sizeof with, "%.*s%s%s", (int)(at - small[0]), small[0], ranks[k], at + 1);
        t = NULL;
        tlm_status st = tlm_tok_load_json(with, strlen(with), NULL, 0, "ranks.gguf", &t);
        if (k < 2) {
            if (!CHECK(st == TLM_OK)) continue;
            for (size_t len = 3; len <= 36; len += 33) {
                tlm_tok_ids v = {0};
                CHECK(tlm_tok_encode(t, abc, len, 0, &v) == TLM_OK && v.n == (int64_t)(2 * len / 3));
                for (int64_t i = 0; i + 1 < v.n; i += 2)
                    CHECK(k == 0 ? v.ids[i] == 0 && v.ids[i + 1] == 4 : v.ids[i] == 3 && v.ids[i + 1] == 2);
                tlm_tok_ids_free(&v);
            }
            tlm_tok_free(t);
        } else {
            CHECK(st == TLM_EFORMAT && t == NULL && strstr(tlm_last_error(), "ranks.gguf: model.merge_ranks") != NULL);
        }
    }
    free(json);
}

static void test_missing(void) {
    check_case = "missing tokenizer.json";
    tlm_tok *t = NULL;
    CHECK(tlm_tok_load("/nonexistent/tinylm", &t) == TLM_EIO);
    CHECK(strstr(tlm_last_error(), "/nonexistent/tinylm/tokenizer.json") != NULL);
}

/* Random byte damage: every outcome is a clean failure or a usable tokenizer. */
static void test_mutations(void) {
    check_case = "mutated tokenizer.json";
    size_t n;
    char *json = full_json(&n), *bad = malloc(n + 1);
    srand(7);
    int loaded = 0, failed = 0;
    for (int r = 0; r < 400; r++) {
        memcpy(bad, json, n + 1);
        for (int k = 1 + rand() % 3; k > 0; k--) {
            size_t at = (size_t)rand() % n;
            const char pool[] = "{}[]\":,\\0-9 azAZ\x80\xc3\xe2";
            bad[at] = (rand() & 1) ? pool[rand() % (sizeof pool - 1)] : (char)(rand() & 0xff);
        }
        write_file(tmpdir, "tokenizer.json", bad, n);
        tlm_tok *t = NULL;
        tlm_status st = tlm_tok_load(tmpdir, &t);
        if (st == TLM_OK) {
            loaded++;
            exercise(t, (unsigned)r);
            tlm_tok_free(t);
        } else {
            failed++;
            CHECK(t == NULL && (st == TLM_EFORMAT || st == TLM_EUNSUPPORTED) && strlen(tlm_last_error()) > 0);
        }
    }
    printf("mutations: %d loaded, %d refused\n", loaded, failed);
    free(bad);
    free(json);
}

/* The real files, when the shared fixtures are there. */
static void test_fixtures(void) {
    const char *names[] = {"mistral-7b", "qwen3"};
    const char *root = getenv("TINYLM_FIXTURES"); /* as in tests/fixture_paths.py */
    if (!root || !*root) root = "../../../shared/fixtures";
    for (int i = 0; i < 2; i++) {
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", root, names[i]);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        struct stat sb;
        if (stat(path, &sb) != 0) { printf("fixture %s missing, skipped\n", dir); continue; }
        check_case = names[i];
        tlm_tok *t = NULL;
        CHECK(tlm_tok_load(dir, &t) == TLM_OK);
        if (!t) continue;
        exercise(t, 3);
        tlm_tok_free(t);
    }
}

int main(void) {
    if (!mkdtemp(tmpdir)) { printf("mkdtemp failed\n"); return 2; }
    test_handwritten();
    test_malformed();
    test_from_memory();
    test_missing();
    test_mutations();
    test_fixtures();
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    return check_summary();
}
