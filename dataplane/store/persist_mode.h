/*
 * persist_mode.h — the store's persistence modes: a config value
 * (store.persist) and, resolved against the mapping's granularity, the mode
 * the store runs in (store.h). Apart from store.h so that the config library
 * and the tools read the names without the store's headers.
 */
#ifndef TALLY_PERSIST_MODE_H
#define TALLY_PERSIST_MODE_H

enum tally_persist_mode {
  TALLY_PERSIST_AUTO = 0,     /* per burst if the mapping allows it, else group commit */
  TALLY_PERSIST_GROUP_COMMIT, /* persister thread, msync every interval */
  TALLY_PERSIST_PER_BURST,    /* lcores flush + drain per burst (needs byte/cache-line pmem) */
  TALLY_PERSIST_LOG,          /* image on tmpfs/hugetlbfs, never msync'd; acks wait for the
                                 write-ahead log's fdatasync (the persister; store.log_dir) */
};

#endif
