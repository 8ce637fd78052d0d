#include "crc32c.h"

#include <string.h>

#define CRC32C_POLY 0x82F63B78u

/* Slicing-by-8 tables, built once on first use. Built tables are identical on every call, so
 * a benign race between two first callers writes the same values. */
static uint32_t crc32c_table[8][256];
static volatile int crc32c_table_ready = 0;

static void crc32c_build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ CRC32C_POLY : crc >> 1;
        }
        crc32c_table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = crc32c_table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = crc32c_table[0][crc & 0xFF] ^ (crc >> 8);
            crc32c_table[k][n] = crc;
        }
    }
    __atomic_store_n(&crc32c_table_ready, 1, __ATOMIC_RELEASE);
}

static inline uint64_t load_le64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint32_t chatlog_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&crc32c_table_ready, __ATOMIC_ACQUIRE)) {
        crc32c_build_table();
    }
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (length >= 8) {
        uint64_t word = load_le64(p) ^ c;
        c = crc32c_table[7][word & 0xFF] ^
            crc32c_table[6][(word >> 8) & 0xFF] ^
            crc32c_table[5][(word >> 16) & 0xFF] ^
            crc32c_table[4][(word >> 24) & 0xFF] ^
            crc32c_table[3][(word >> 32) & 0xFF] ^
            crc32c_table[2][(word >> 40) & 0xFF] ^
            crc32c_table[1][(word >> 48) & 0xFF] ^
            crc32c_table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) {
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    }
    return ~c;
}

#if defined(__x86_64__)

__attribute__((target("sse4.2")))
uint32_t chatlog_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = (uint32_t)~crc;
    while (length > 0 && ((uintptr_t)p & 7) != 0) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        length--;
    }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof word);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        length -= 8;
    }
    while (length--) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    }
    return ~(uint32_t)c;
}

int chatlog_crc32c_hardware_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)

#include <arm_acle.h>

uint32_t chatlog_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof word);
        c = __crc32cd(c, word);
        p += 8;
        length -= 8;
    }
    while (length--) {
        c = __crc32cb(c, *p++);
    }
    return ~c;
}

int chatlog_crc32c_hardware_available(void) { return 1; }

#else

uint32_t chatlog_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    return chatlog_crc32c_portable(crc, data, length);
}

int chatlog_crc32c_hardware_available(void) { return 0; }

#endif

static int crc32c_use_hardware = -1;

uint32_t chatlog_crc32c(uint32_t crc, const void *data, size_t length) {
    int use = __atomic_load_n(&crc32c_use_hardware, __ATOMIC_RELAXED);
    if (use < 0) {
        use = chatlog_crc32c_hardware_available();
        __atomic_store_n(&crc32c_use_hardware, use, __ATOMIC_RELAXED);
    }
    return use ? chatlog_crc32c_hardware(crc, data, length)
               : chatlog_crc32c_portable(crc, data, length);
}
