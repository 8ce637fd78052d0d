#ifndef CHATLOG_CRC32C_H
#define CHATLOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and Kafka.
///
/// `crc` is the value returned by a previous call (0 to start); the function applies the
/// initial and final inversion itself, so `chatlog_crc32c(chatlog_crc32c(0, a), b)` equals the
/// CRC of `a` followed by `b`. Uses the SSE4.2 `crc32` instruction (or the ARMv8 CRC
/// extension) when the CPU has it, otherwise the portable table implementation.
uint32_t chatlog_crc32c(uint32_t crc, const void *data, size_t length);

/// The portable (table, slicing-by-8) implementation, exposed so tests can check it against
/// the hardware one.
uint32_t chatlog_crc32c_portable(uint32_t crc, const void *data, size_t length);

/// The hardware implementation. Only call it when `chatlog_crc32c_hardware_available()`.
uint32_t chatlog_crc32c_hardware(uint32_t crc, const void *data, size_t length);

/// 1 when this CPU has CRC-32C instructions that `chatlog_crc32c_hardware` uses, else 0.
int chatlog_crc32c_hardware_available(void);

#endif
