// SPDX-License-Identifier: GPL-2.0
/*
 * kleak.ko, C side: kmalloc/kfree for the Rust workload, the kthreads, the timer and the
 * debugfs files `run` (write "N T") and `expected` (read). The workload is kleak.rs.
 */
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "ktext.h"

/* Implemented in Rust. */
void kl_churn(u32 cpu, u32 n, bool leaker);
void kl_timer_tick(u32 tick, bool last);
void kl_run_done(void);
size_t kl_expected(char *buf, size_t cap);

int kl_glue_init(void);
void kl_glue_exit(void);
void *kl_kmalloc(size_t size, bool atomic);
void kl_kfree(void *p);

static struct dentry *kl_dir;
static u32 kl_n;
static atomic_t kl_left;
static DECLARE_COMPLETION(kl_done);
static struct hrtimer kl_timer;
static u32 kl_tick, kl_ticks;
static DEFINE_MUTEX(kl_lock);

void *kl_kmalloc(size_t size, bool atomic)
{
	return kmalloc(size, atomic ? GFP_ATOMIC : GFP_KERNEL);
}

void kl_kfree(void *p)
{
	kfree(p);
}

static void kl_one_done(void)
{
	if (atomic_dec_and_test(&kl_left))
		complete(&kl_done);
}

/* arg: the CPU in the low 16 bits, bit 16 = the leaking kthread. */
static int kl_thread(void *arg)
{
	unsigned long a = (unsigned long)arg;

	kl_churn(a & 0xffff, kl_n, a >> 16);
	kl_one_done();
	return 0;
}

static enum hrtimer_restart kl_timer_fn(struct hrtimer *t)
{
	bool last = ++kl_tick == kl_ticks;

	kl_timer_tick(kl_tick, last);
	if (last) {
		kl_one_done();
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(t, ns_to_ktime(150 * NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

static void kl_timer_start(void *unused)
{
	hrtimer_start(&kl_timer, ns_to_ktime(150 * NSEC_PER_USEC), HRTIMER_MODE_REL_PINNED_HARD);
}

static int kl_run(u32 n, u32 ticks)
{
	unsigned long leaker = 1UL << 16;
	unsigned int cpu;

	reinit_completion(&kl_done);
	kl_n = n;
	atomic_set(&kl_left, 1);	/* held until everything started */
	for_each_online_cpu(cpu) {
		struct task_struct *k;

		k = kthread_create_on_cpu(kl_thread, (void *)(cpu | leaker), cpu, "kleak/%u");
		if (IS_ERR(k))
			continue;
		leaker = 0;
		atomic_inc(&kl_left);
		wake_up_process(k);
	}
	if (ticks) {
		kl_tick = 0;
		kl_ticks = ticks;
		atomic_inc(&kl_left);
		smp_call_function_single(0, kl_timer_start, NULL, 1);
	}
	kl_one_done();
	wait_for_completion(&kl_done);
	kl_run_done();
	return 0;
}

static ssize_t kl_run_write(struct file *file, const char __user *ubuf, size_t count,
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
	mutex_lock(&kl_lock);
	ret = kl_run(n, t);
	mutex_unlock(&kl_lock);
	return ret < 0 ? ret : count;
}

static ssize_t kl_expected_read(struct file *file, char __user *ubuf, size_t count,
				loff_t *ppos)
{
	return ktext_read(ubuf, count, ppos, PAGE_SIZE, kl_expected);
}

static const struct file_operations kl_run_fops = {
	.owner = THIS_MODULE,
	.write = kl_run_write,
};

static const struct file_operations kl_expected_fops = {
	.owner = THIS_MODULE,
	.read = kl_expected_read,
};

int kl_glue_init(void)
{
	hrtimer_init(&kl_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
	kl_timer.function = kl_timer_fn;
	kl_dir = debugfs_create_dir("kleak", NULL);
	if (IS_ERR(kl_dir))
		return PTR_ERR(kl_dir);
	debugfs_create_file("run", 0200, kl_dir, NULL, &kl_run_fops);
	debugfs_create_file("expected", 0400, kl_dir, NULL, &kl_expected_fops);
	return 0;
}

void kl_glue_exit(void)
{
	debugfs_remove(kl_dir);
	hrtimer_cancel(&kl_timer);
}
