// SPDX-License-Identifier: GPL-2.0
/*
 * klog_relay.ko, C side: module parameters, the metadata file, the clock. The handler itself is
 * klog_relay.rs.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/random.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/timekeeping.h>
#include <linux/vmalloc.h>
#include "relay_shim.h"

/* Implemented in Rust (klog_relay.rs). */
void klr_flush(void);

static unsigned int subbuf_size = 65536;
module_param(subbuf_size, uint, 0444);
MODULE_PARM_DESC(subbuf_size, "relay sub-buffer size in bytes (default 65536)");
static unsigned int n_subbufs = 8;
module_param(n_subbufs, uint, 0444);
MODULE_PARM_DESC(n_subbufs, "sub-buffers per CPU (default 8)");
static bool overwrite;
module_param(overwrite, bool, 0444);
MODULE_PARM_DESC(overwrite, "flight-recorder mode: overwrite the oldest data (default 0)");

unsigned int klr_param_subbuf_size(void) { return subbuf_size; }
unsigned int klr_param_n_subbufs(void) { return n_subbufs; }
bool klr_param_overwrite(void) { return overwrite; }

static DEFINE_RAW_SPINLOCK(klr_meta_spin);
static u8 *klr_meta;
static size_t klr_meta_cap;
static size_t klr_meta_len;	/* published with release semantics */
static struct dentry *klr_meta_file;

static ssize_t klr_meta_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	size_t len = smp_load_acquire(&klr_meta_len);

	return simple_read_from_buffer(ubuf, count, ppos, klr_meta, len);
}

static const struct file_operations klr_meta_fops = {
	.owner = THIS_MODULE,
	.read = klr_meta_read,
	.llseek = default_llseek,
};

int klr_meta_init(struct dentry *dir, size_t cap)
{
	klr_meta = vzalloc(cap);
	if (!klr_meta)
		return -ENOMEM;
	klr_meta_cap = cap;
	klr_meta_len = 0;
	klr_meta_file = debugfs_create_file("metadata", 0400, dir, NULL, &klr_meta_fops);
	return 0;
}

void klr_meta_exit(void)
{
	debugfs_remove(klr_meta_file);
	vfree(klr_meta);
	klr_meta = NULL;
}

unsigned long klr_meta_lock(void)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&klr_meta_spin, flags);
	return flags;
}

void klr_meta_unlock(unsigned long flags)
{
	raw_spin_unlock_irqrestore(&klr_meta_spin, flags);
}

/* Called with klr_meta_lock held. */
bool klr_meta_append(const void *rec, size_t len)
{
	size_t at = klr_meta_len;

	if (len > klr_meta_cap - at)
		return false;
	memcpy(klr_meta + at, rec, len);
	smp_store_release(&klr_meta_len, at + len);
	return true;
}

static struct dentry *klr_flush_file;

/* Any write flushes the channel: every CPU's current sub-buffer is completed. */
static ssize_t klr_flush_write(struct file *file, const char __user *ubuf, size_t count,
			       loff_t *ppos)
{
	klr_flush();
	return count;
}

static const struct file_operations klr_flush_fops = {
	.owner = THIS_MODULE,
	.write = klr_flush_write,
};

/*
 * The write-only `flush` file. debugfs_create_file (not _unsafe) guards every call with the
 * file's active-user count: klr_flush_exit waits for writes in progress.
 */
void klr_flush_init(struct dentry *dir)
{
	klr_flush_file = debugfs_create_file("flush", 0200, dir, NULL, &klr_flush_fops);
}

void klr_flush_exit(void)
{
	debugfs_remove(klr_flush_file);
	klr_flush_file = NULL;
}

u64 klr_clock_ns(void)
{
	/* NMI-safe, lockless CLOCK_MONOTONIC (docs/FORMAT.md: source 0, ns). */
	return ktime_get_mono_fast_ns();
}

u64 klr_trace_id(void)
{
	u64 id;

	do {
		id = get_random_u64();
	} while (!id);
	return id;
}

unsigned int klr_this_cpu(void)
{
	return raw_smp_processor_id();
}

unsigned int klr_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}
