#ifndef CHATLOG_BYTESCAN_H
#define CHATLOG_BYTESCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/// Eight or four bytes from anywhere, as a word (byte i of the text is byte i of the word on
/// little-endian hosts).
static inline uint64_t chatlog_load64(const uint8_t *bytes) {
    uint64_t word;
    memcpy(&word, bytes, 8);
    return word;
}

static inline uint32_t chatlog_load32(const uint8_t *bytes) {
    uint32_t word;
    memcpy(&word, bytes, 4);
    return word;
}

/// Nonzero where (and only where, for the lowest one) a byte of `word` is `"`, `\` or < 0x20;
/// zero exactly when none is.
static inline uint64_t chatlog_json_specials64(uint64_t word) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quotes = word ^ (ones * 0x22), backslashes = word ^ (ones * 0x5C);
    return ((quotes - ones) & ~quotes & highs) | ((backslashes - ones) & ~backslashes & highs)
         | ((word - ones * 0x20) & ~word & highs);
}

#if defined(__SSE2__)
/// 0xFF in each byte of the result where `chunk` has `"`, `\` or a control character.
static inline __m128i chatlog_json_specials128(__m128i chunk) {
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i controlMax = _mm_set1_epi8(0x1F);
    // A byte is a control character when min(byte, 0x1F) == byte (unsigned).
    return _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)),
                        _mm_cmpeq_epi8(_mm_min_epu8(chunk, controlMax), chunk));
}
#endif

/// The index of the first byte at or after `start` (and before `count`) that a JSON string
/// cannot hold as it is: `"`, `\` or a control character (< 0x20); `count` when there is none.
///
/// Sixteen bytes at a time with SSE2 (every x86-64 CPU has it), eight at a time elsewhere.
/// `static inline` so that Swift callers get it inlined: it runs once per JSON string.
static inline size_t chatlog_json_first_special(const uint8_t *bytes, size_t start, size_t count) {
    size_t index = start;
#if defined(__SSE2__)
    while (index + 16 <= count) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(bytes + index));
        __m128i special = chatlog_json_specials128(chunk);
        unsigned mask = (unsigned)_mm_movemask_epi8(special);
        if (mask != 0) return index + (size_t)__builtin_ctz(mask);
        index += 16;
    }
    if (index < count && count >= 16) {
        // Fewer than sixteen bytes left: the text's last sixteen, overlapping bytes already
        // scanned, whose bits are shifted out.
        size_t last = count - 16;
        __m128i chunk = _mm_loadu_si128((const __m128i *)(bytes + last));
        __m128i special = chatlog_json_specials128(chunk);
        unsigned mask = (unsigned)_mm_movemask_epi8(special) >> (index - last);
        return mask != 0 ? index + (size_t)__builtin_ctz(mask) : count;
    }
#endif
    while (index + 8 <= count) {
        uint64_t special = chatlog_json_specials64(chatlog_load64(bytes + index));
        if (special != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return index + (size_t)(__builtin_ctzll(special) / 8);
#else
            break;  // big-endian: the bytewise loop below finds it
#endif
        }
        index += 8;
    }
    while (index < count) {
        uint8_t byte = bytes[index];
        if (byte == '"' || byte == '\\' || byte < 0x20) break;
        index += 1;
    }
    return index;
}

/// Copies `count` bytes from `src` to `dst` (which do not overlap): short runs, what JSON
/// writers copy most (names, small strings, headers), with two overlapping loads and stores
/// instead of a call to `memcpy`.
static inline void chatlog_copy(uint8_t *dst, const uint8_t *src, size_t count) {
    if (count > 32) {
        memcpy(dst, src, count);
    } else if (count >= 16) {
        uint64_t a[2], b[2];
        memcpy(a, src, 16);
        memcpy(b, src + count - 16, 16);
        memcpy(dst, a, 16);
        memcpy(dst + count - 16, b, 16);
    } else if (count >= 8) {
        uint64_t first = chatlog_load64(src), last = chatlog_load64(src + count - 8);
        memcpy(dst, &first, 8);
        memcpy(dst + count - 8, &last, 8);
    } else if (count >= 4) {
        uint32_t first = chatlog_load32(src), last = chatlog_load32(src + count - 4);
        memcpy(dst, &first, 4);
        memcpy(dst + count - 4, &last, 4);
    } else if (count > 0) {
        dst[0] = src[0];
        dst[count / 2] = src[count / 2];
        dst[count - 1] = src[count - 1];
    }
}

/// Copies the `count` bytes of a string's content from `src` to `dst` (which do not overlap)
/// and returns 1 when none of them needs escaping in JSON (`"`, `\`, < 0x20); returns 0
/// otherwise, the first `count` bytes of `dst` then holding anything. Writes nothing past
/// `dst + count`. Copying while checking is one pass over the string instead of two.
static inline int chatlog_json_copy_plain(uint8_t *dst, const uint8_t *src, size_t count) {
#if defined(__SSE2__)
    if (count >= 16) {
        __m128i any = _mm_setzero_si128();
        size_t index = 0;
        for (;;) {
            // The last step is the last sixteen bytes, overlapping the step before.
            if (index + 16 > count) index = count - 16;
            __m128i chunk = _mm_loadu_si128((const __m128i *)(src + index));
            any = _mm_or_si128(any, chatlog_json_specials128(chunk));
            _mm_storeu_si128((__m128i *)(dst + index), chunk);
            index += 16;
            if (index >= count) break;
        }
        return _mm_movemask_epi8(any) == 0;
    }
#endif
    if (count >= 8) {
        uint64_t special = 0;
        size_t index = 0;
        for (;;) {
            if (index + 8 > count) index = count - 8;
            uint64_t word = chatlog_load64(src + index);
            special |= chatlog_json_specials64(word);
            memcpy(dst + index, &word, 8);
            index += 8;
            if (index >= count) break;
        }
        return special == 0;
    }
    if (count >= 4) {
        // Both halves (overlapping) in one word: the check is on eight real bytes.
        uint32_t first = chatlog_load32(src), last = chatlog_load32(src + count - 4);
        memcpy(dst, &first, 4);
        memcpy(dst + count - 4, &last, 4);
        return chatlog_json_specials64((uint64_t)first | (uint64_t)last << 32) == 0;
    }
    int plain = 1;
    for (size_t index = 0; index < count; index++) {
        uint8_t byte = src[index];
        if (byte == '"' || byte == '\\' || byte < 0x20) plain = 0;
        dst[index] = byte;
    }
    return plain;
}

/// 1 when the `count` bytes at `a` and `b` are equal, else 0: short runs (member names) with
/// two overlapping loads each instead of a call to `memcmp`.
static inline int chatlog_equal(const uint8_t *a, const uint8_t *b, size_t count) {
    if (count > 16) return memcmp(a, b, count) == 0;
    if (count >= 8) {
        return ((chatlog_load64(a) ^ chatlog_load64(b)) | (chatlog_load64(a + count - 8) ^ chatlog_load64(b + count - 8))) == 0;
    }
    if (count >= 4) {
        return ((chatlog_load32(a) ^ chatlog_load32(b)) | (chatlog_load32(a + count - 4) ^ chatlog_load32(b + count - 4))) == 0;
    }
    for (size_t index = 0; index < count; index++) {
        if (a[index] != b[index]) return 0;
    }
    return 1;
}

#endif
