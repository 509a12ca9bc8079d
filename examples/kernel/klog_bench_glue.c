// SPDX-License-Identifier: GPL-2.0
/*
 * klog_bench.ko, C side: the trace_printk and pr_info loops, the timing of one round with
 * preemption off, and the debugfs files `run` (write "VARIANT ITERS") and `results` (read).
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include "ktext.h"

/* Implemented in Rust. */
void kb_klog_loop(u32 n);
void kb_empty_loop(u32 n);
int kb_variant(const char *name, size_t len);
void kb_record(int variant, u32 iters, u64 ns);
size_t kb_results(char *buf, size_t cap);

int kb_glue_init(void);
void kb_glue_exit(void);

/* Variant numbers: the index in kb_variant's table. */
enum { KB_KLOG_ON, KB_KLOG_OFF, KB_TRACE_PRINTK, KB_PR_INFO, KB_LOOP };

static struct dentry *kb_dir;
static DEFINE_MUTEX(kb_lock);

static noinline void kb_trace_printk_loop(u32 n)
{
	u32 i;

	for (i = 0; i < n; i++)
		trace_printk("bench %u %u %u\n", i, i ^ 0x5a5a, i * 3);
}

static noinline void kb_pr_info_loop(u32 n)
{
	u32 i;

	for (i = 0; i < n; i++)
		pr_info("bench %u %u %u\n", i, i ^ 0x5a5a, i * 3);
}

static void kb_loop(int variant, u32 n)
{
	switch (variant) {
	case KB_KLOG_ON:
	case KB_KLOG_OFF:
		kb_klog_loop(n);
		break;
	case KB_TRACE_PRINTK:
		kb_trace_printk_loop(n);
		break;
	case KB_PR_INFO:
		kb_pr_info_loop(n);
		break;
	default:
		kb_empty_loop(n);
		break;
	}
}

/* One round: a short warm-up (first use of a callsite, cache), then `iters` timed events. */
static void kb_round(int variant, u32 iters)
{
	u64 t0, t1;

	preempt_disable();
	kb_loop(variant, 16);
	t0 = ktime_get_ns();
	kb_loop(variant, iters);
	t1 = ktime_get_ns();
	preempt_enable();
	kb_record(variant, iters, t1 - t0);
}

static ssize_t kb_run_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	char cmd[64], name[32];
	u32 iters;
	int variant, ret;

	ret = ktext_copy_cmd(cmd, sizeof(cmd), ubuf, count);
	if (ret)
		return ret;
	if (sscanf(cmd, "%31s %u", name, &iters) != 2 || !iters || iters > 10000000)
		return -EINVAL;
	variant = kb_variant(name, strlen(name));
	if (variant < 0)
		return -EINVAL;
	mutex_lock(&kb_lock);
	kb_round(variant, iters);
	mutex_unlock(&kb_lock);
	return count;
}

static ssize_t kb_results_read(struct file *file, char __user *ubuf, size_t count,
			       loff_t *ppos)
{
	return ktext_read(ubuf, count, ppos, PAGE_SIZE, kb_results);
}

static const struct file_operations kb_run_fops = {
	.owner = THIS_MODULE,
	.write = kb_run_write,
};

static const struct file_operations kb_results_fops = {
	.owner = THIS_MODULE,
	.read = kb_results_read,
};

int kb_glue_init(void)
{
	kb_dir = debugfs_create_dir("klog_bench", NULL);
	if (IS_ERR(kb_dir))
		return PTR_ERR(kb_dir);
	debugfs_create_file("run", 0200, kb_dir, NULL, &kb_run_fops);
	debugfs_create_file("results", 0400, kb_dir, NULL, &kb_results_fops);
	return 0;
}

void kb_glue_exit(void)
{
	debugfs_remove(kb_dir);
}
