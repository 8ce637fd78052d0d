#ifndef CHATLOG_BYTESCAN_H
#define CHATLOG_BYTESCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/// The index of the first byte at or after `start` (and before `count`) that a JSON string
/// cannot hold as it is: `"`, `\` or a control character (< 0x20); `count` when there is none.
///
/// Sixteen bytes at a time with SSE2 (every x86-64 CPU has it), eight at a time elsewhere.
/// `static inline` so that Swift callers get it inlined: it runs once per JSON string.
static inline size_t chatlog_json_first_special(const uint8_t *bytes, size_t start, size_t count) {
    size_t index = start;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i controlMax = _mm_set1_epi8(0x1F);
    while (index + 16 <= count) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(bytes + index));
        // A byte is a control character when min(byte, 0x1F) == byte (unsigned).
        __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)),
                                       _mm_cmpeq_epi8(_mm_min_epu8(chunk, controlMax), chunk));
        unsigned mask = (unsigned)_mm_movemask_epi8(special);
        if (mask != 0) return index + (size_t)__builtin_ctz(mask);
        index += 16;
    }
    if (index < count && count >= 16) {
        // Fewer than sixteen bytes left: the text's last sixteen, overlapping bytes already
        // scanned, whose bits are shifted out.
        size_t last = count - 16;
        __m128i chunk = _mm_loadu_si128((const __m128i *)(bytes + last));
        __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)),
                                       _mm_cmpeq_epi8(_mm_min_epu8(chunk, controlMax), chunk));
        unsigned mask = (unsigned)_mm_movemask_epi8(special) >> (index - last);
        return mask != 0 ? index + (size_t)__builtin_ctz(mask) : count;
    }
#endif
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (index + 8 <= count) {
        uint64_t word;
        memcpy(&word, bytes + index, 8);  // byte i of the text is byte i of the word on little-endian hosts
        uint64_t quotes = word ^ (ones * 0x22), backslashes = word ^ (ones * 0x5C);
        uint64_t special = ((quotes - ones) & ~quotes & highs) | ((backslashes - ones) & ~backslashes & highs)
                         | ((word - ones * 0x20) & ~word & highs);
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

#endif
