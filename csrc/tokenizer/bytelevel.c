/* bytelevel.c: GPT-2's bytes_to_unicode alphabet. Printable bytes ('!'..'~',
 * '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes take the code
 * points 256, 257, ... in byte order (so ' ' is 'Ġ' and '\n' is 'Ċ'). */
#include "tokenizer/tok.h"

#include <string.h>

static int printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

void tok_bytelevel_init(tok_bytelevel *bl) {
    memset(bl->dec, 0xFF, sizeof bl->dec);
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = printable(b) ? (uint32_t)b : next++;
        char u[4];
        size_t n = tok_utf8_put(cp, u);
        memcpy(bl->enc[b], u, n);
        bl->enc_len[b] = (uint8_t)n;
        bl->dec[cp] = (int16_t)b;
    }
}
