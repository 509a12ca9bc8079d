// SPDX-License-Identifier: GPL-2.0
/*
 * reserve_example.ko, C side: interrupt save/restore around reserve + fill, the kthreads and
 * the timer of a run, and the debugfs files `run` (write "N T") and `stats` (read). The
 * channel and its header callback are reserve_example.rs.
 */
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/uaccess.h>
#include "reserve_shim.h"
#include "ktext.h"

/* Implemented in Rust. */
bool rx_write(u32 src, u32 seq);
void rx_thread_body(u32 n);
void rx_flush(void);
size_t rx_stats(char *buf, size_t cap);

static u32 rx_n;
static atomic_t rx_left;
static DECLARE_COMPLETION(rx_done);
static struct hrtimer rx_timer;
static u32 rx_tick, rx_ticks;
static DEFINE_MUTEX(rx_lock);
static struct dentry *rx_files[2];

unsigned long rx_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void rx_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
}

unsigned int rx_this_cpu(void)
{
	return raw_smp_processor_id();
}

unsigned int rx_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}

bool rx_is_err_or_null(const void *p)
{
	return IS_ERR_OR_NULL(p);
}

static void rx_one_done(void)
{
	if (atomic_dec_and_test(&rx_left))
		complete(&rx_done);
}

static int rx_thread(void *arg)
{
	rx_thread_body(rx_n);
	rx_one_done();
	return 0;
}

static enum hrtimer_restart rx_timer_fn(struct hrtimer *t)
{
	rx_write(1, rx_tick);
	if (++rx_tick == rx_ticks) {
		rx_one_done();
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(t, ns_to_ktime(100 * NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

static void rx_timer_start(void *unused)
{
	hrtimer_start(&rx_timer, ns_to_ktime(100 * NSEC_PER_USEC), HRTIMER_MODE_REL_PINNED_HARD);
}

static void rx_run(u32 n, u32 ticks)
{
	unsigned int cpu;

	reinit_completion(&rx_done);
	rx_n = n;
	atomic_set(&rx_left, 1);	/* held until everything started */
	for_each_online_cpu(cpu) {
		struct task_struct *k;

		k = kthread_create_on_cpu(rx_thread, NULL, cpu, "rx_writer/%u");
		if (IS_ERR(k))
			continue;
		atomic_inc(&rx_left);
		wake_up_process(k);
	}
	if (ticks) {
		rx_tick = 0;
		rx_ticks = ticks;
		atomic_inc(&rx_left);
		smp_call_function_single(0, rx_timer_start, NULL, 1);
	}
	rx_one_done();
	wait_for_completion(&rx_done);
	rx_flush();
}

static ssize_t rx_run_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	char cmd[64];
	u32 n = 0, t = 0;
	int ret;

	ret = ktext_copy_cmd(cmd, sizeof(cmd), ubuf, count);
	if (ret)
		return ret;
	if (sscanf(cmd, "%u %u", &n, &t) < 1)
		return -EINVAL;
	mutex_lock(&rx_lock);
	rx_run(n, t);
	mutex_unlock(&rx_lock);
	return count;
}

static ssize_t rx_stats_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	return ktext_read(ubuf, count, ppos, PAGE_SIZE, rx_stats);
}

static const struct file_operations rx_run_fops = {
	.owner = THIS_MODULE,
	.write = rx_run_write,
};

static const struct file_operations rx_stats_fops = {
	.owner = THIS_MODULE,
	.read = rx_stats_read,
};

int rx_glue_init(struct dentry *dir)
{
	hrtimer_init(&rx_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
	rx_timer.function = rx_timer_fn;
	rx_files[0] = debugfs_create_file("run", 0200, dir, NULL, &rx_run_fops);
	rx_files[1] = debugfs_create_file("stats", 0400, dir, NULL, &rx_stats_fops);
	return 0;
}

void rx_glue_exit(void)
{
	debugfs_remove(rx_files[0]);
	debugfs_remove(rx_files[1]);
	hrtimer_cancel(&rx_timer);
}
