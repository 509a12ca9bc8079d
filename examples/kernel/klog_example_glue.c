// SPDX-License-Identifier: GPL-2.0
/* klog_example.ko, C side: kthreads, the timer and the `run` control file. */
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/uaccess.h>
#include "ktext.h"

void kx_emit_events(u32 cpu, u32 n);
void kx_timer_event(u32 cpu, u32 n);
void kx_spin_event(u32 cpu, u64 seq);
int kx_glue_init(void);
void kx_glue_exit(void);

static struct dentry *kx_dir;
static u32 kx_n;
static atomic_t kx_left;
static DECLARE_COMPLETION(kx_done);
static struct hrtimer kx_timer;
static u32 kx_timer_left, kx_timer_n;
static struct task_struct *kx_spin[NR_CPUS];
static DEFINE_MUTEX(kx_lock);

static int kx_run_thread(void *arg)
{
	kx_emit_events((unsigned long)arg, kx_n);
	if (atomic_dec_and_test(&kx_left))
		complete(&kx_done);
	return 0;
}

static enum hrtimer_restart kx_timer_fn(struct hrtimer *t)
{
	kx_timer_event(smp_processor_id(), kx_timer_n++);
	if (--kx_timer_left == 0) {
		if (atomic_dec_and_test(&kx_left))
			complete(&kx_done);
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(t, ns_to_ktime(200 * NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

static void kx_timer_start(void *unused)
{
	hrtimer_start(&kx_timer, ns_to_ktime(200 * NSEC_PER_USEC), HRTIMER_MODE_REL_PINNED_HARD);
}

static int kx_run(u32 n, u32 t)
{
	unsigned int cpu;

	reinit_completion(&kx_done);
	kx_n = n;
	atomic_set(&kx_left, 1);	/* held until everything started */
	for_each_online_cpu(cpu) {
		struct task_struct *k;

		k = kthread_create_on_cpu(kx_run_thread, (void *)(unsigned long)cpu, cpu, "klog_ex/%u");
		if (IS_ERR(k))
			continue;
		atomic_inc(&kx_left);
		wake_up_process(k);
	}
	if (t) {
		kx_timer_left = t;
		kx_timer_n = 0;
		atomic_inc(&kx_left);
		smp_call_function_single(0, kx_timer_start, NULL, 1);
	}
	if (atomic_dec_and_test(&kx_left))
		complete(&kx_done);
	wait_for_completion(&kx_done);
	return 0;
}

static int kx_spin_thread(void *arg)
{
	u64 seq = 0;

	while (!kthread_should_stop()) {
		kx_spin_event((unsigned long)arg, seq++);
		if (seq % 32 == 0)
			usleep_range(50, 100);
	}
	return 0;
}

static void kx_spin_stop(void)
{
	unsigned int cpu;

	for (cpu = 0; cpu < NR_CPUS; cpu++) {
		if (kx_spin[cpu]) {
			kthread_stop(kx_spin[cpu]);
			kx_spin[cpu] = NULL;
		}
	}
}

static void kx_spin_start(void)
{
	unsigned int cpu;

	for_each_online_cpu(cpu) {
		struct task_struct *k;

		if (kx_spin[cpu])
			continue;
		k = kthread_create_on_cpu(kx_spin_thread, (void *)(unsigned long)cpu, cpu, "klog_spin/%u");
		if (IS_ERR(k))
			continue;
		kx_spin[cpu] = k;
		wake_up_process(k);
	}
}

static ssize_t kx_ctl_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char cmd[64];
	u32 n = 0, t = 0;
	int ret;

	ret = ktext_copy_cmd(cmd, sizeof(cmd), ubuf, count);
	if (ret)
		return ret;
	mutex_lock(&kx_lock);
	if (sscanf(cmd, "spin %u", &n) == 1) {
		if (n)
			kx_spin_start();
		else
			kx_spin_stop();
	} else if (sscanf(cmd, "%u %u", &n, &t) >= 1) {
		ret = kx_run(n, t);
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&kx_lock);
	return ret < 0 ? ret : count;
}

static const struct file_operations kx_ctl_fops = {
	.owner = THIS_MODULE,
	.write = kx_ctl_write,
};

int kx_glue_init(void)
{
	hrtimer_init(&kx_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
	kx_timer.function = kx_timer_fn;
	kx_dir = debugfs_create_dir("klog_example", NULL);
	if (IS_ERR(kx_dir))
		return PTR_ERR(kx_dir);
	debugfs_create_file("run", 0200, kx_dir, NULL, &kx_ctl_fops);
	return 0;
}

void kx_glue_exit(void)
{
	debugfs_remove(kx_dir);
	mutex_lock(&kx_lock);
	kx_spin_stop();
	mutex_unlock(&kx_lock);
	hrtimer_cancel(&kx_timer);
}
