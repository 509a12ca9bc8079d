/* SPDX-License-Identifier: GPL-2.0 */
/* bindgen input of klog_relay.ko: rsrelay's and klog_core's C ABI, and relay_glue.c. */
#include <linux/debugfs.h>
#include "rsrelay.h"
#include "klog_core.h"

/* Module parameters (relay_glue.c). */
unsigned int klr_param_subbuf_size(void);
unsigned int klr_param_n_subbufs(void);
bool klr_param_overwrite(void);

/* The append-only metadata stream, readable as /sys/kernel/debug/klog/metadata. */
int klr_meta_init(struct dentry *dir, size_t cap);
void klr_meta_exit(void);
/* Appends one record atomically (any context but NMI); false if it does not fit. */
bool klr_meta_append(const void *rec, size_t len);
unsigned long klr_meta_lock(void);
void klr_meta_unlock(unsigned long flags);

/*
 * The write-only `flush` file (any write flushes the channel, e.g. before an mmap snapshot).
 * klr_flush_exit returns after writes in progress finished.
 */
void klr_flush_init(struct dentry *dir);
void klr_flush_exit(void);

u64 klr_clock_ns(void);
/* A random, nonzero trace id (get_random_u64). */
u64 klr_trace_id(void);
unsigned int klr_this_cpu(void);
unsigned int klr_nr_cpu_ids(void);
