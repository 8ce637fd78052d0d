#ifndef CHATLOG_SQLITETUNING_H
#define CHATLOG_SQLITETUNING_H

/// Turns off SQLite's memory statistics (`SQLITE_CONFIG_MEMSTATUS`) for the whole process, as
/// SQLite's documentation recommends for speed (its "recommended compile-time options":
/// `SQLITE_DEFAULT_MEMSTATUS=0`; Debian builds with statistics on). With them on, every
/// allocation SQLite makes takes one process-wide mutex: History's writer and the search
/// index's, each on its own thread and file, waited on each other there.
///
/// Takes effect only before SQLite is initialized (its first connection): returns SQLITE_OK
/// (0) then, SQLITE_MISUSE (21) after, when it changes nothing. `sqlite3_config` is variadic,
/// which Swift cannot call: hence this C function.
int chatlog_sqlite_disable_memory_statistics(void);

#endif
