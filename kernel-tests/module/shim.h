/* SPDX-License-Identifier: GPL-2.0 */
/* bindgen input of rsrelay_test.ko: rsrelay's C ABI, debugfs, and this module's C helpers. */
#include <linux/debugfs.h>
#include "rsrelay.h"

struct rchan;

/* The C relay side (helpers.c): channel with the model's header callback. */
struct rchan *rt_c_open(struct dentry *parent, size_t subbuf_size, size_t n_subbufs,
			size_t header, bool overwrite, bool global);
void rt_c_close(struct rchan *chan);
void rt_c_write(struct rchan *chan, const void *data, size_t len);
/* relay_reserve + fill: 1 if a slot was returned. Call with interrupts off. */
int rt_c_reserve(struct rchan *chan, size_t len, unsigned int seed);
void rt_c_flush(struct rchan *chan);
void rt_c_reset(struct rchan *chan);
void rt_c_subbufs_consumed(struct rchan *chan, unsigned int cpu, size_t n);

/* Plumbing. */
int rt_on_cpu(unsigned int cpu, void (*fn)(void *), void *info);	/* IPI, waits; -errno */
unsigned int rt_nr_cpu_ids(void);
bool rt_cpu_possible(unsigned int cpu);
bool rt_cpu_online(unsigned int cpu);
unsigned int rt_this_cpu(void);
u64 rt_ktime_ns(void);
unsigned long rt_irq_save(void);
void rt_irq_restore(unsigned long flags);
/* The control files; the Rust side implements rt_command and rt_show. */
struct dentry *rt_create_files(struct dentry *dir);
/* Stress: a kthread per online CPU and a pinned hrtimer per online CPU calling rt_stress_emit. */
int rt_stress_start(unsigned int ms);
void rt_stress_wait(void);
void rt_cond_resched(void);
bool rt_is_err_or_null(const void *p);
