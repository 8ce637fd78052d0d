// Everything is in include/bytescan.h (static inline, for Swift callers to inline).
