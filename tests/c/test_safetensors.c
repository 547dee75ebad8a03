/* test_safetensors.c: the safetensors reader and writer under ASan/UBSan.
 *
 * A file written by tlm_st_write is read back; every malformed shape of file
 * the reader must refuse is built byte by byte and must fail with
 * TLM_EFORMAT and a message naming the file (and tensor); a mutation fuzz
 * loop checks that damaged headers fail cleanly; the writer is checked to
 * leave the target untouched when it fails. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tlm.h"

static char tmpdir[] = "/tmp/tlm-st-test-XXXXXX";

static void path_in_tmp(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
        printf("cannot write test file %s\n", path);
        exit(2);
    }
}

/* The whole file in a malloc'd block (*n bytes). */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, fp);
    fclose(fp);
    return buf;
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* u64 length + header (space-padded to 8 unless pad is 0) + data_len bytes of data. */
static void make_file(const char *path, const char *header, size_t data_len, int pad) {
    size_t hlen = strlen(header), padded = pad ? (hlen + 7) / 8 * 8 : hlen;
    unsigned char *buf = malloc(8 + padded + data_len);
    put_u64(buf, padded);
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    for (size_t i = 0; i < data_len; i++) buf[8 + padded + i] = (unsigned char)(i * 7 + 1);
    write_bytes(path, buf, 8 + padded + data_len);
    free(buf);
}

static int contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

/* Entries in a folder other than . and .. */
static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ round trip */

static float f32s[12] = {0.f, 1.f, -2.5f, 3.25f, 1e-40f, -0.f, 65504.f, 1e30f, -7.f, 8.f, 9.5f, 1.f / 3};
static uint16_t f16s[4] = {0x3c00, 0xc000, 0x7c00, 0x0001};
static uint16_t bf16s[4] = {0x3f80, 0x7fc0, 0xff80, 0x0001};
static double f64s[1] = {3.141592653589793};
static int64_t i64s[3] = {-1, INT64_MAX, 42};
static uint8_t bools[5] = {1, 0, 1, 1, 0};
static uint8_t u8s[2] = {200, 7};

#define N_RT 9
static const tlm_st_tensor ROUND_TRIP[N_RT] = {
    {"model.embed_tokens.weight", TLM_F32, 2, {3, 4}, f32s, sizeof f32s},
    {"model.norm.weight", TLM_F16, 1, {4}, f16s, sizeof f16s},
    {"lm_head.weight", TLM_BF16, 2, {2, 2}, bf16s, sizeof bf16s},
    {"scalar", TLM_F64, 0, {0}, f64s, sizeof f64s},
    {"ids", TLM_I64, 1, {3}, i64s, sizeof i64s},
    {"mask", TLM_BOOL, 1, {5}, bools, sizeof bools},
    {"empty", TLM_F32, 2, {0, 7}, NULL, 0},
    {"odd \"name\" with \\ and \n\t", TLM_U8, 1, {2}, u8s, sizeof u8s},
    {"gewicht.\xc3\xbc.\xe2\x82\xac", TLM_U8, 2, {1, 2}, u8s, sizeof u8s},
};
static const char *META_KEYS[2] = {"format", "note \"q\""};
static const char *META_VALUES[2] = {"pt", "tab\there\nand \xc3\xa9"};

static int tensors_equal(const tlm_st_tensor *a, const tlm_st_tensor *b) {
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static void test_round_trip(void) {
    check_case = "round trip";
    char path[256];
    path_in_tmp(path, sizeof path, "round.safetensors");
    CHECK(tlm_st_write(path, ROUND_TRIP, N_RT, META_KEYS, META_VALUES, 2) == TLM_OK);

    size_t n;
    unsigned char *bytes = read_bytes(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | bytes[i];
    uint64_t data_bytes = 0, last = 8 + hlen - 1;
    for (int i = 0; i < N_RT; i++) data_bytes += ROUND_TRIP[i].nbytes;
    CHECK(hlen % 8 == 0 && n == 8 + hlen + data_bytes && bytes[8] == '{');
    while (last > 8 && bytes[last] == ' ') last--;
    CHECK(bytes[last] == '}' && 8 + hlen - 1 - last < 8); /* space padding only, less than 8 */
    free(bytes);

    tlm_st_file *f = NULL;
    CHECK(tlm_st_open(path, &f) == TLM_OK);
    if (!f) return;
    CHECK(tlm_st_count(f) == N_RT);
    for (int64_t i = 0; i < N_RT && i < tlm_st_count(f); i++) {
        tlm_st_tensor got, found;
        CHECK(tlm_st_get(f, i, &got) == TLM_OK);
        CHECK(tensors_equal(&got, &ROUND_TRIP[i]));
        CHECK(tlm_st_find(f, ROUND_TRIP[i].name, &found) == TLM_OK);
        CHECK(found.data == got.data && found.name == got.name);
    }
    tlm_st_tensor t;
    CHECK(tlm_st_get(f, N_RT, &t) == TLM_EINVAL && contains(tlm_last_error(), path));
    CHECK(tlm_st_get(f, -1, &t) == TLM_EINVAL);
    CHECK(tlm_st_find(f, "model.missing", &t) == TLM_EINVAL && contains(tlm_last_error(), "\"model.missing\""));
    CHECK(tlm_st_metadata_count(f) == 2);
    for (int64_t i = 0; i < 2; i++) {
        const char *k = NULL, *v = NULL;
        CHECK(tlm_st_metadata_get(f, i, &k, &v) == TLM_OK && k && v);
        CHECK(k && v && strcmp(k, META_KEYS[i]) == 0 && strcmp(v, META_VALUES[i]) == 0);
    }
    const char *k, *v;
    CHECK(tlm_st_metadata_get(f, 2, &k, &v) == TLM_EINVAL);
    tlm_st_close(f);
}

static void test_empty_write(void) {
    check_case = "no tensors, no metadata";
    char path[256];
    path_in_tmp(path, sizeof path, "empty.safetensors");
    CHECK(tlm_st_write(path, NULL, 0, NULL, NULL, 0) == TLM_OK);
    size_t n = 0;
    unsigned char *bytes = read_bytes(path, &n);
    CHECK(n == 16 && memcmp(bytes + 8, "{}      ", 8) == 0);
    free(bytes);
    tlm_st_file *f = NULL;
    CHECK(tlm_st_open(path, &f) == TLM_OK && tlm_st_count(f) == 0 && tlm_st_metadata_count(f) == 0);
    tlm_st_close(f);
}

/* ------------------------------------------------------- header cases */

typedef struct {
    const char *label;
    const char *header;
    size_t data_len;
    tlm_status want;
    const char *needle1, *needle2; /* substrings the message must hold (besides the path) */
} header_case;

#define U8(n, b, e) "{\"dtype\":\"U8\",\"shape\":[" #n "],\"data_offsets\":[" #b "," #e "]}"

static const header_case HEADER_CASES[] = {
    {"non-JSON header", "{\"a\": nope}", 0, TLM_EFORMAT, "not valid JSON", NULL},
    {"truncated JSON", "{\"a\":" U8(1, 0, 1), 1, TLM_EFORMAT, "not valid JSON", NULL},
    {"unterminated string", "{\"abc", 0, TLM_EFORMAT, "ends inside a string", NULL},
    {"header not an object", "[1, 2]", 0, TLM_EFORMAT, "does not start with '{'", NULL},
    {"header is a string", "\"{}\"", 0, TLM_EFORMAT, "does not start with '{'", NULL},
    {"data after the object", "{} x", 0, TLM_EFORMAT, "data after the JSON object", NULL},
    {"NUL after the object", "{}\x01", 0, TLM_EFORMAT, "control character", NULL},
    {"invalid UTF-8", "{\"a\xff\":" U8(1, 0, 1) "}", 1, TLM_EFORMAT, "not valid UTF-8", NULL},
    {"overlong UTF-8", "{\"a\xc0\xaf\":" U8(1, 0, 1) "}", 1, TLM_EFORMAT, "not valid UTF-8", NULL},
    {"UTF-16 surrogate in UTF-8", "{\"a\xed\xa0\x80\":" U8(1, 0, 1) "}", 1, TLM_EFORMAT, "not valid UTF-8", NULL},
    {"control character in a name", "{\"a\tb\":" U8(1, 0, 1) "}", 1, TLM_EFORMAT, "control character", NULL},
    {"escaped NUL in a name", "{\"a\\u0000b\":" U8(1, 0, 1) "}", 1, TLM_EFORMAT, "escaped NUL", NULL},
    {"entry not an object", "{\"w\": 3}", 0, TLM_EFORMAT, "\"w\"", "not an object"},
    {"missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT, "\"w\"", "missing \"dtype\""},
    {"missing shape", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT, "\"w\"", "missing \"shape\""},
    {"missing data_offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, TLM_EFORMAT, "\"w\"",
     "missing \"data_offsets\""},
    {"repeated field", "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     TLM_EFORMAT, "\"w\"", "field \"dtype\" appears twice"},
    {"unknown dtype", "{\"w\":{\"dtype\":\"F13\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT, "\"w\"",
     "unknown dtype \"F13\""},
    {"dtype not a string", "{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT, "\"w\"",
     "dtype is not a string"},
    {"lower-case dtype", "{\"w\":{\"dtype\":\"u8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT, "\"w\"",
     "unknown dtype"},
    {"negative shape", "{\"w\":" U8(-1, 0, 1) "}", 1, TLM_EFORMAT, "\"w\"", "shape[0] is not a non-negative integer"},
    {"fractional shape", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2, 0.5],\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT,
     "\"w\"", "shape[1] is not a non-negative integer"},
    {"shape entry a string", "{\"w\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT,
     "\"w\"", "shape[0] is not"},
    {"shape beyond 2^53", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0, 1e300],\"data_offsets\":[0,0]}}", 0, TLM_EFORMAT,
     "\"w\"", "shape[1] is not"},
    {"shape not an array", "{\"w\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, TLM_EFORMAT, "\"w\"",
     "shape is not an array"},
    {"nine dimensions", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     TLM_EFORMAT, "\"w\"", "more than 8 dimensions"},
    {"numel overflows", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
     TLM_EFORMAT, "\"w\"", "too large"},
    {"bytes overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],\"data_offsets\":[0,8]}}", 8,
     TLM_EFORMAT, "\"w\"", "too large"},
    {"offsets begin > end", "{\"w\":" U8(0, 4, 0) "}", 4, TLM_EFORMAT, "\"w\"", "[4, 0] begin after end"},
    {"offsets end past buffer", "{\"w\":" U8(8, 0, 8) "}", 4, TLM_EFORMAT, "\"w\"", "end past the data buffer of 4"},
    {"offsets one item", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, TLM_EFORMAT, "\"w\"",
     "data_offsets is not a pair"},
    {"offsets three items", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", 1, TLM_EFORMAT,
     "\"w\"", "data_offsets is not a pair"},
    {"offsets negative", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, TLM_EFORMAT, "\"w\"",
     "data_offsets is not a pair"},
    {"offsets fractional", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.5]}}", 2, TLM_EFORMAT,
     "\"w\"", "data_offsets is not a pair"},
    {"size not numel*itemsize",
     "{\"model.norm.weight\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,12]}}", 12, TLM_EFORMAT,
     "tensor \"model.norm.weight\": data_offsets [0, 12] hold 12 bytes but shape [4] of F16 needs 8", NULL},
    {"overlapping offsets", "{\"a\":" U8(8, 0, 8) ",\"b\":" U8(8, 4, 12) "}", 12, TLM_EFORMAT, "\"b\"",
     "overlap tensor \"a\""},
    {"identical offsets", "{\"a\":" U8(4, 0, 4) ",\"b\":" U8(4, 0, 4) "}", 4, TLM_EFORMAT, "\"b\"",
     "overlap tensor \"a\""},
    {"empty tensor inside another", "{\"a\":" U8(8, 0, 8) ",\"z\":" U8(0, 4, 4) "}", 8, TLM_EFORMAT, "\"z\"",
     "overlap"},
    {"hole between tensors", "{\"a\":" U8(4, 0, 4) ",\"b\":" U8(4, 8, 12) "}", 12, TLM_EFORMAT,
     "bytes [4, 8) belong to no tensor", "\"b\""},
    {"hole at the start", "{\"b\":" U8(4, 4, 8) "}", 8, TLM_EFORMAT, "bytes [0, 4) belong to no tensor", "\"b\""},
    {"trailing bytes", "{\"a\":" U8(4, 0, 4) "}", 8, TLM_EFORMAT, "bytes [4, 8) after the last tensor", NULL},
    {"trailing bytes, no tensors", "{}", 8, TLM_EFORMAT, "bytes [0, 8) after the last tensor", NULL},
    {"metadata value not a string", "{\"__metadata__\":{\"format\":\"pt\",\"k\":1}}", 0, TLM_EFORMAT, "__metadata__",
     "\"k\" is not a string"},
    {"metadata not an object", "{\"__metadata__\":[\"a\"]}", 0, TLM_EFORMAT, "__metadata__ is not an object", NULL},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, TLM_EFORMAT, "\"k\" appears twice",
     NULL},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, TLM_EFORMAT, "__metadata__ appears twice",
     NULL},
    {"duplicate names", "{\"w\":" U8(4, 0, 4) ",\"w\":" U8(4, 4, 8) "}", 8, TLM_EFORMAT, "\"w\" appears twice", NULL},
    /* Files the reference reader accepts. */
    {"empty tensors at the edges", "{\"z\":" U8(0, 0, 0) ",\"a\":" U8(4, 0, 4) ",\"y\":" U8(0, 4, 4) "}", 4, TLM_OK,
     NULL, NULL},
    {"two empty tensors at one offset", "{\"z\":" U8(0, 0, 0) ",\"y\":" U8(0, 0, 0) "}", 0, TLM_OK, NULL, NULL},
    {"offsets not in header order", "{\"b\":" U8(4, 4, 8) ",\"a\":" U8(4, 0, 4) "}", 8, TLM_OK, NULL, NULL},
    {"null metadata", "{\"__metadata__\":null,\"a\":" U8(1, 0, 1) "}", 1, TLM_OK, NULL, NULL},
    {"extra fields ignored", "{\"a\":{\"dtype\":\"U8\",\"extra\":[1.5,{}],\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     TLM_OK, NULL, NULL},
    {"JSON whitespace", "{\n\t\"a\" :\r\n" U8(1, 0, 1) "\n}\n", 1, TLM_OK, NULL, NULL},
    {"escapes in a name", "{\"a\\\"\\\\\\u00e9\\n\":" U8(1, 0, 1) "}", 1, TLM_OK, NULL, NULL},
    {"scalar", "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, TLM_OK, NULL, NULL},
};

static void test_header_cases(void) {
    char path[256];
    path_in_tmp(path, sizeof path, "case.safetensors");
    for (size_t i = 0; i < sizeof HEADER_CASES / sizeof *HEADER_CASES; i++) {
        const header_case *c = &HEADER_CASES[i];
        check_case = c->label;
        make_file(path, c->header, c->data_len, 1);
        tlm_st_file *f = (tlm_st_file *)&f; /* must be reset to NULL on failure */
        tlm_status st = tlm_st_open(path, &f);
        CHECK(st == c->want);
        if (st == TLM_OK) {
            tlm_st_close(f);
            continue;
        }
        CHECK(f == NULL);
        const char *msg = tlm_last_error();
        CHECK(contains(msg, path));
        if (c->needle1) CHECK(contains(msg, c->needle1));
        if (c->needle2) CHECK(contains(msg, c->needle2));
    }
}

/* Valid files keep header order, and the unpadded header is accepted. */
static void test_header_order(void) {
    check_case = "header order, unpadded header";
    char path[256];
    path_in_tmp(path, sizeof path, "order.safetensors");
    make_file(path, "{\"b\":" U8(4, 4, 8) ",\"__metadata__\":{\"x\":\"1\"},\"a\":" U8(4, 0, 4) "}", 8, 0);
    tlm_st_file *f = NULL;
    CHECK(tlm_st_open(path, &f) == TLM_OK);
    if (!f) return;
    tlm_st_tensor b, a;
    CHECK(tlm_st_get(f, 0, &b) == TLM_OK && strcmp(b.name, "b") == 0);
    CHECK(tlm_st_get(f, 1, &a) == TLM_OK && strcmp(a.name, "a") == 0);
    CHECK((const char *)b.data - (const char *)a.data == 4 && a.nbytes == 4 && b.nbytes == 4);
    CHECK(((const unsigned char *)a.data)[0] == 1 && ((const unsigned char *)b.data)[0] == 4 * 7 + 1);
    CHECK(tlm_st_metadata_count(f) == 1);
    tlm_st_close(f);
}

/* -------------------------------------------------- file-level cases */

static void expect_open_fails(const char *label, const char *path, tlm_status want, const char *needle) {
    check_case = label;
    tlm_st_file *f = NULL;
    CHECK(tlm_st_open(path, &f) == want);
    CHECK(f == NULL);
    CHECK(contains(tlm_last_error(), path));
    CHECK(contains(tlm_last_error(), needle));
}

static void test_file_cases(void) {
    char path[256];
    unsigned char buf[64] = {0};
    path_in_tmp(path, sizeof path, "short.safetensors");

    write_bytes(path, buf, 0);
    expect_open_fails("empty file", path, TLM_EFORMAT, "file is 0 bytes, too short");
    write_bytes(path, buf, 5);
    expect_open_fails("file shorter than 8 bytes", path, TLM_EFORMAT, "file is 5 bytes, too short");

    put_u64(buf, 0);
    write_bytes(path, buf, 8);
    expect_open_fails("zero header length", path, TLM_EFORMAT, "does not start with '{'");

    put_u64(buf, 100);
    memcpy(buf + 8, "{}      ", 8);
    write_bytes(path, buf, 16);
    expect_open_fails("header length past the end", path, TLM_EFORMAT, "header length 100 runs past the end");

    put_u64(buf, 9);
    write_bytes(path, buf, 16);
    expect_open_fails("header length one past the end", path, TLM_EFORMAT, "runs past the end");

    put_u64(buf, UINT64_MAX);
    write_bytes(path, buf, 16);
    expect_open_fails("header length 2^64-1", path, TLM_EFORMAT, "exceeds the limit of 100000000 bytes");

    put_u64(buf, 100000001);
    write_bytes(path, buf, 16);
    expect_open_fails("header length just over the cap", path, TLM_EFORMAT, "exceeds the limit");

    path_in_tmp(path, sizeof path, "does-not-exist.safetensors");
    expect_open_fails("missing file", path, TLM_EIO, "No such file");
    expect_open_fails("a folder", tmpdir, TLM_EIO, "not a regular file");
}

/* ------------------------------------------------------------------ fuzz */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Bytes that steer mutations into JSON structure rather than only into names. */
static const char JSON_BYTES[] = "{}[],:\"\\0123456789-.eE ufnt\x80\xff";

static void mutate(unsigned char *buf, size_t header_end) {
    int n = 1 + (int)(rng() % 4);
    for (int k = 0; k < n; k++) {
        size_t pos = (size_t)(rng() % header_end);
        uint64_t r = rng() % 4;
        if (r == 0) buf[pos] = (unsigned char)rng();
        else if (r == 1) buf[pos] ^= (unsigned char)(1u << (rng() % 8));
        else buf[pos] = (unsigned char)JSON_BYTES[rng() % (sizeof JSON_BYTES - 1)];
    }
    if (rng() % 8 == 0) buf[rng() % 2] += (unsigned char)(rng() % 16 - 8); /* small change of the length */
}

/* Every tensor of an opened file must lie inside it: its bytes are read. */
static int touch_all(const tlm_st_file *f, uint64_t data_size) {
    uint64_t total = 0;
    unsigned sum = 0;
    for (int64_t i = 0; i < tlm_st_count(f); i++) {
        tlm_st_tensor t;
        if (tlm_st_get(f, i, &t) != TLM_OK) return 0;
        for (uint64_t j = 0; j < t.nbytes; j++) sum += ((const unsigned char *)t.data)[j];
        total += t.nbytes;
    }
    return total == data_size && sum != ~0u;
}

static void test_fuzz(void) {
    check_case = "mutation fuzz";
    char path[256], fuzz[256];
    path_in_tmp(path, sizeof path, "fuzz-seed.safetensors");
    path_in_tmp(fuzz, sizeof fuzz, "fuzz.safetensors");
    CHECK(tlm_st_write(path, ROUND_TRIP, N_RT, META_KEYS, META_VALUES, 2) == TLM_OK);
    size_t n = 0;
    unsigned char *seed = read_bytes(path, &n), *buf = malloc(n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | seed[i];
    int accepted = 0, rejected = 0, unclean = 0;
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(buf, seed, n);
        mutate(buf, 8 + hlen);
        size_t len = rng() % 16 == 0 ? (size_t)(rng() % n) : n; /* sometimes truncated too */
        write_bytes(fuzz, buf, len);
        tlm_st_file *f = NULL;
        tlm_status st = tlm_st_open(fuzz, &f);
        if (st == TLM_OK) {
            uint64_t got = 0;
            for (int i = 7; i >= 0; i--) got = (got << 8) | buf[i];
            accepted++;
            if (!touch_all(f, len - 8 - got)) unclean++;
            tlm_st_close(f);
        } else {
            rejected++;
            if (st != TLM_EFORMAT || f != NULL || !contains(tlm_last_error(), fuzz)) {
                unclean++;
                printf("fuzz iteration %d: status %d, message: %s\n", iter, (int)st, tlm_last_error());
            }
        }
    }
    CHECK(unclean == 0);
    /* Both outcomes must occur, or the loop is not exercising the parser. */
    CHECK(accepted > 50 && rejected > 1000);
    free(seed);
    free(buf);
}

/* -------------------------------------------------------------- writer */

static int file_is(const char *path, const unsigned char *want, size_t n) {
    size_t got_n = 0;
    unsigned char *got = read_bytes(path, &got_n);
    int same = got && got_n == n && memcmp(got, want, n) == 0;
    free(got);
    return same;
}

static void expect_refused(const char *label, const char *path, const tlm_st_tensor *t, int64_t n,
                           const char *const *keys, const char *const *values, int64_t n_meta,
                           const unsigned char *before, size_t before_n, const char *needle) {
    check_case = label;
    CHECK(tlm_st_write(path, t, n, keys, values, n_meta) == TLM_EINVAL);
    CHECK(contains(tlm_last_error(), path) && contains(tlm_last_error(), needle));
    CHECK(file_is(path, before, before_n));
    CHECK(count_dir_entries(tmpdir) == 1); /* no temporary file left */
}

static void test_writer_refusals(void) {
    /* A folder holding only the target, so leftovers are seen. */
    char path[256];
    path_in_tmp(path, sizeof path, "target.safetensors");
    CHECK(tlm_st_write(path, ROUND_TRIP, 2, NULL, NULL, 0) == TLM_OK);
    size_t before_n = 0;
    unsigned char *before = read_bytes(path, &before_n);

    tlm_st_tensor bad[2] = {ROUND_TRIP[0], ROUND_TRIP[1]};
    bad[1].name = bad[0].name;
    expect_refused("duplicate names", path, bad, 2, NULL, NULL, 0, before, before_n,
                   "\"model.embed_tokens.weight\" is given twice");
    bad[1] = ROUND_TRIP[1];
    bad[1].dtype = (tlm_dtype)99;
    expect_refused("bad dtype", path, bad, 2, NULL, NULL, 0, before, before_n, "invalid dtype 99");
    bad[1] = ROUND_TRIP[1];
    bad[1].nbytes = 6;
    expect_refused("size not matching shape", path, bad, 2, NULL, NULL, 0, before, before_n,
                   "\"model.norm.weight\": 6 bytes of data but shape [4] of F16 needs 8");
    bad[1] = ROUND_TRIP[1];
    bad[1].shape[0] = -4;
    expect_refused("negative shape", path, bad, 2, NULL, NULL, 0, before, before_n, "shape[0] is negative");
    bad[1] = ROUND_TRIP[1];
    bad[1].ndim = TLM_MAX_DIMS + 1;
    expect_refused("too many dims", path, bad, 2, NULL, NULL, 0, before, before_n, "ndim 9");
    bad[1] = ROUND_TRIP[1];
    bad[1].name = "__metadata__";
    expect_refused("reserved name", path, bad, 2, NULL, NULL, 0, before, before_n, "reserved");
    bad[1] = ROUND_TRIP[1];
    bad[1].name = "bad\xff";
    expect_refused("name not UTF-8", path, bad, 2, NULL, NULL, 0, before, before_n, "not valid UTF-8");
    const char *keys[2] = {"k", "k"}, *values[2] = {"1", "2"};
    expect_refused("duplicate metadata keys", path, ROUND_TRIP, 2, keys, values, 2, before, before_n,
                   "metadata key \"k\" is given twice");

    /* A failure after the temporary file exists: rename onto a non-empty folder. */
    check_case = "rename fails";
    char folder[256], inner[300];
    path_in_tmp(folder, sizeof folder, "a-folder");
    snprintf(inner, sizeof inner, "%s/x", folder);
    CHECK(mkdir(folder, 0755) == 0);
    write_bytes(inner, "x", 1);
    CHECK(tlm_st_write(folder, ROUND_TRIP, 2, NULL, NULL, 0) == TLM_EIO);
    CHECK(contains(tlm_last_error(), folder) && contains(tlm_last_error(), "cannot rename"));
    CHECK(count_dir_entries(tmpdir) == 2 && count_dir_entries(folder) == 1);
    unlink(inner);
    rmdir(folder);

    check_case = "overwrite";
    CHECK(tlm_st_write(path, ROUND_TRIP + 2, 1, NULL, NULL, 0) == TLM_OK);
    CHECK(!file_is(path, before, before_n) && count_dir_entries(tmpdir) == 1);
    tlm_st_file *f = NULL;
    CHECK(tlm_st_open(path, &f) == TLM_OK && tlm_st_count(f) == 1);
    tlm_st_close(f);
    unlink(path);
    free(before);
}

static void test_writer_missing_dir(void) {
    check_case = "folder does not exist";
    char path[256], dir[256];
    path_in_tmp(dir, sizeof dir, "no-such-dir");
    path_in_tmp(path, sizeof path, "no-such-dir/model.safetensors");
    CHECK(tlm_st_write(path, ROUND_TRIP, N_RT, NULL, NULL, 0) == TLM_EIO);
    CHECK(contains(tlm_last_error(), path) && contains(tlm_last_error(), "No such file"));
    struct stat sb;
    CHECK(stat(dir, &sb) != 0);
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    char path[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_round_trip();
    test_empty_write();
    test_header_cases();
    test_header_order();
    test_file_cases();
    test_fuzz();
    remove_tmpdir();
    CHECK(mkdtemp(strcpy(tmpdir, "/tmp/tlm-st-test-XXXXXX")) != NULL); /* an empty folder for the writer */
    test_writer_refusals();
    test_writer_missing_dir();
    remove_tmpdir();
    return check_summary();
}
