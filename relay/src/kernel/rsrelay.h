/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rsrelay: the Rust relay channel (relay/src/core) as a kernel module.
 *
 * The C ABI exported by rsrelay.ko (EXPORT_SYMBOL_GPL). Rust modules use the safe wrapper in
 * relay/src/kernel/client.rs instead; C modules can call this directly. Semantics follow
 * kernel/relay.c (relay_open, relay_write, ...) except where docs/ARCHITECTURE.md lists a
 * difference.
 */
#ifndef RSRELAY_H
#define RSRELAY_H

#include <linux/ioctl.h>
#include <linux/types.h>

struct dentry;
struct rsrelay_chan;	/* a channel: one buffer per possible CPU, or one global buffer */
struct rsrelay_start;	/* the context of one subbuf_start call */

struct rsrelay_callbacks {
	/*
	 * A new sub-buffer is about to start (also once at open and after reset). Return false to
	 * refuse (no-overwrite mode when full). May call rsrelay_start_*() on ctx. Runs with
	 * interrupts off. NULL: relay's default (refuse while the buffer is full).
	 */
	bool (*subbuf_start)(void *private_data, struct rsrelay_start *ctx);
	/* A user mapping of buffer `cpu` was created / went away. May sleep. */
	void (*buf_mapped)(void *private_data, unsigned int cpu);
	void (*buf_unmapped)(void *private_data, unsigned int cpu);
	/*
	 * Create the file for one buffer: pass `buf` as the inode's private data and
	 * rsrelay_file_operations as its fops (debugfs_create_file_unsafe keeps .mmap). Set
	 * *is_global to make the channel use one buffer. NULL: debugfs_create_file_unsafe.
	 */
	struct dentry *(*create_buf_file)(const char *filename, struct dentry *parent,
					  umode_t mode, void *buf, int *is_global);
	/* Remove a file made by create_buf_file. NULL: debugfs_remove. */
	int (*remove_buf_file)(struct dentry *dentry);
};

/* Per-buffer counters (rsrelay_buf_stats). */
struct rsrelay_stats {
	u64 produced;
	u64 consumed;
	u64 dropped_msgs;
	u64 dropped_bytes;
	u64 toobig_msgs;
	u64 last_toobig;
	u64 lapped_subbufs;
};

extern const struct file_operations rsrelay_file_operations;

/*
 * ioctl(fd, RSRELAY_IOC_READ_POS, &pos) on an rsrelay file: the reader's position, i.e.
 * sub-buffers consumed so far (an absolute count, as relay's subbufs_consumed) and bytes
 * consumed in the current one. A reader that starts after another one stopped (a second
 * `klog-decode record`) learns where in a sub-buffer its stream begins. The C relay's files
 * have no such ioctl (-ENOTTY).
 */
struct rsrelay_read_pos {
	__u64 subbuf;
	__u64 offset;
};
#define RSRELAY_IOC_READ_POS _IOR(0xb9, 1, struct rsrelay_read_pos)

/*
 * ioctl(fd, RSRELAY_IOC_READ_PREFIX, &p): the reader's position as RSRELAY_IOC_READ_POS, and
 * the `offset` bytes of its sub-buffer before it (the part an earlier reader consumed: its
 * header, and the time reference of the frames after it) copied to user address `buf`, both
 * under the reader lock. In: `buf`, `len` (its size). Out: `subbuf`, `offset`, `len` = bytes
 * copied (0 at a sub-buffer start, when `len` < `offset`, or when the writer has reused the
 * slot).
 */
struct rsrelay_read_prefix {
	__u64 subbuf;
	__u64 offset;
	__u64 buf;
	__u64 len;
};
#define RSRELAY_IOC_READ_PREFIX _IOWR(0xb9, 2, struct rsrelay_read_prefix)

/* relay_open: returns a channel or an ERR_PTR (-EINVAL bad sizes, -ENOMEM, create errors). */
struct rsrelay_chan *rsrelay_open(const char *base_filename, struct dentry *parent,
				  size_t subbuf_size, size_t n_subbufs,
				  const struct rsrelay_callbacks *cb, void *private_data);
/* relay_close: finalizes every buffer, removes the files; readers keep what they hold open. */
void rsrelay_close(struct rsrelay_chan *chan);
/* relay_write: any context but NMI (interrupts are disabled inside). false = dropped. */
bool rsrelay_write(struct rsrelay_chan *chan, const void *data, size_t length);
/*
 * Like rsrelay_write for a message encoded in place: room for `max` bytes is found in the
 * current CPU's buffer (switching if needed), fill(ctx, slot, max) encodes into it and returns
 * how many bytes it used, and only those are published. Interrupts are off during fill.
 */
bool rsrelay_write_with(struct rsrelay_chan *chan, size_t max,
			size_t (*fill)(void *ctx, void *slot, size_t max), void *ctx);
/* The same for a caller that already runs with interrupts off (e.g. a klog handler). */
bool __rsrelay_write_with(struct rsrelay_chan *chan, size_t max,
			  size_t (*fill)(void *ctx, void *slot, size_t max), void *ctx);
/* __relay_write: preemption disabled inside; no writer on this CPU may run in interrupts. */
bool __rsrelay_write(struct rsrelay_chan *chan, const void *data, size_t length);
/*
 * relay_reserve: a `length`-byte slot in the current CPU's buffer, published at once, or NULL.
 * The caller disables interrupts (or preemption, if no interrupt context writes) around the
 * reserve and the filling of the slot, as relay requires.
 */
void *rsrelay_reserve(struct rsrelay_chan *chan, size_t length);
void rsrelay_flush(struct rsrelay_chan *chan);
void rsrelay_reset(struct rsrelay_chan *chan);
/* relay_subbufs_consumed; process context. */
void rsrelay_subbufs_consumed(struct rsrelay_chan *chan, unsigned int cpu, size_t consumed);
bool rsrelay_buf_full(struct rsrelay_chan *chan, unsigned int cpu);
int rsrelay_buf_stats(struct rsrelay_chan *chan, unsigned int cpu, struct rsrelay_stats *out);
void *rsrelay_private_data(struct rsrelay_chan *chan);
bool rsrelay_is_global(struct rsrelay_chan *chan);

/* Inside subbuf_start. */
unsigned int rsrelay_start_cpu(const struct rsrelay_start *ctx);
size_t rsrelay_start_subbuf(const struct rsrelay_start *ctx);
/* Index of the previous sub-buffer, or -1 at open/reset. */
long rsrelay_start_prev_subbuf(const struct rsrelay_start *ctx);
size_t rsrelay_start_prev_padding(const struct rsrelay_start *ctx);
bool rsrelay_start_buf_full(const struct rsrelay_start *ctx);
/* subbuf_start_reserve: 0, or -EINVAL for a header that leaves < 2 payload bytes. */
int rsrelay_start_reserve(struct rsrelay_start *ctx, size_t length);
/* Write into the new (prev = false) or previous (prev = true) sub-buffer; false if outside. */
bool rsrelay_start_write(struct rsrelay_start *ctx, bool prev, size_t offset,
			 const void *bytes, size_t len);

#endif
