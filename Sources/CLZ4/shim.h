#ifndef CHATLOG_CLZ4_SHIM_H
#define CHATLOG_CLZ4_SHIM_H
#include <lz4.h>
#endif
