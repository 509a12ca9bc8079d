// SPDX-License-Identifier: GPL-2.0
/*
 * rsrelay_test.ko, C side: the kernel's C relay channel used as the differential oracle (with
 * the same header callback as the Rust side and relay/tests/model), the debugfs control files,
 * and the stress writers' kthreads and timers. The logic lives in rsrelay_test.rs.
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/relay.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include "shim.h"
#include "ktext.h"

/* Implemented in Rust. */
int rt_command(const char *cmd, size_t len);
size_t rt_show(unsigned int which, char *buf, size_t cap);
void rt_stress_emit(unsigned int writer_id);

struct rt_cfg {
	size_t header;
	bool overwrite;
	bool global;
	u64 k[NR_CPUS];	/* successful starts per buffer (never reset) */
};

static int rt_subbuf_start(struct rchan_buf *buf, void *subbuf, void *prev_subbuf,
			   size_t prev_padding)
{
	struct rt_cfg *cfg = buf->chan->private_data;
	unsigned int cpu = buf->cpu;

	if (!cfg->overwrite && relay_buf_full(buf))
		return 0;
	if (cfg->header) {
		subbuf_start_reserve(buf, cfg->header);
		memset(subbuf, (u8)cfg->k[cpu], cfg->header);
	}
	cfg->k[cpu]++;
	return 1;
}

static struct dentry *rt_create_buf_file(const char *filename, struct dentry *parent,
					 umode_t mode, struct rchan_buf *buf, int *is_global)
{
	struct rt_cfg *cfg = buf->chan->private_data;

	if (cfg->global)
		*is_global = 1;
	/*
	 * The _unsafe variant: debugfs_create_file's proxy would fail reads after relay_close
	 * removed the file (readers must still drain it) and has no .mmap.
	 */
	return debugfs_create_file_unsafe(filename, mode, parent, buf, &relay_file_operations);
}

static int rt_remove_buf_file(struct dentry *dentry)
{
	debugfs_remove(dentry);
	return 0;
}

static const struct rchan_callbacks rt_c_callbacks = {
	.subbuf_start = rt_subbuf_start,
	.create_buf_file = rt_create_buf_file,
	.remove_buf_file = rt_remove_buf_file,
};

struct rchan *rt_c_open(struct dentry *parent, size_t subbuf_size, size_t n_subbufs,
			size_t header, bool overwrite, bool global)
{
	struct rt_cfg *cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);
	struct rchan *chan;

	if (!cfg)
		return NULL;
	cfg->header = header;
	cfg->overwrite = overwrite;
	cfg->global = global;
	chan = relay_open("cpu", parent, subbuf_size, n_subbufs, &rt_c_callbacks, cfg);
	if (!chan)
		kfree(cfg);
	return chan;
}

void rt_c_close(struct rchan *chan)
{
	void *cfg = chan->private_data;

	relay_close(chan);
	kfree(cfg);
}

void rt_c_write(struct rchan *chan, const void *data, size_t len)
{
	relay_write(chan, data, len);
}

int rt_c_reserve(struct rchan *chan, size_t len, unsigned int seed)
{
	u8 *p = relay_reserve(chan, len);
	size_t i;

	if (!p)
		return 0;
	for (i = 0; i < len; i++)
		p[i] = (u8)(seed + i);
	return 1;
}

void rt_c_flush(struct rchan *chan)
{
	relay_flush(chan);
}

void rt_c_reset(struct rchan *chan)
{
	relay_reset(chan);
}

void rt_c_subbufs_consumed(struct rchan *chan, unsigned int cpu, size_t n)
{
	relay_subbufs_consumed(chan, cpu, n);
}

int rt_on_cpu(unsigned int cpu, void (*fn)(void *), void *info)
{
	return smp_call_function_single(cpu, fn, info, 1);
}

unsigned int rt_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}

bool rt_cpu_possible(unsigned int cpu)
{
	return cpu < nr_cpu_ids && cpu_possible(cpu);
}

bool rt_cpu_online(unsigned int cpu)
{
	return cpu < nr_cpu_ids && cpu_online(cpu);
}

unsigned int rt_this_cpu(void)
{
	return raw_smp_processor_id();
}

u64 rt_ktime_ns(void)
{
	return ktime_get_ns();
}

unsigned long rt_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void rt_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
}

void rt_cond_resched(void)
{
	cond_resched();
}

bool rt_is_err_or_null(const void *p)
{
	return IS_ERR_OR_NULL(p);
}

/* ---- control files ---- */

static ssize_t rt_ctl_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	char cmd[128];
	int ret;

	ret = ktext_copy_cmd(cmd, sizeof(cmd), ubuf, count);
	if (ret)
		return ret;
	ret = rt_command(cmd, count);
	return ret < 0 ? ret : count;
}

static ssize_t rt_show_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	unsigned long which = (unsigned long)file->f_inode->i_private;
	size_t cap = 8192, len;
	ssize_t ret;
	char *buf = kmalloc(cap, GFP_KERNEL);

	if (!buf)
		return -ENOMEM;
	len = rt_show(which, buf, cap);
	ret = simple_read_from_buffer(ubuf, count, ppos, buf, len);
	kfree(buf);
	return ret;
}

static const struct file_operations rt_ctl_fops = {
	.owner = THIS_MODULE,
	.write = rt_ctl_write,
};

static const struct file_operations rt_show_fops = {
	.owner = THIS_MODULE,
	.read = rt_show_read,
};

struct dentry *rt_create_files(struct dentry *dir)
{
	static const char *const names[] = { "last", "stats", "stress", "bench" };
	unsigned long i;

	debugfs_create_file("ctl", 0200, dir, NULL, &rt_ctl_fops);
	for (i = 0; i < ARRAY_SIZE(names); i++)
		debugfs_create_file(names[i], 0400, dir, (void *)i, &rt_show_fops);
	return dir;
}

/* ---- stress writers ---- */

static struct task_struct *rt_threads[NR_CPUS];
static struct hrtimer rt_timers[NR_CPUS];
static u64 rt_deadline;
static atomic_t rt_running = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(rt_done_wq);

static int rt_stress_thread(void *arg)
{
	unsigned int id = (unsigned long)arg;
	unsigned long n = 0;

	while (ktime_get_ns() < rt_deadline && !kthread_should_stop()) {
		rt_stress_emit(id);
		if (++n % 64 == 0)
			usleep_range(20, 50);	/* let the user-space readers run */
	}
	if (atomic_dec_and_test(&rt_running))
		wake_up(&rt_done_wq);
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop())
			break;
		schedule();
	}
	__set_current_state(TASK_RUNNING);
	return 0;
}

static enum hrtimer_restart rt_timer_fn(struct hrtimer *t)
{
	unsigned int cpu = t - rt_timers;

	rt_stress_emit(100 + cpu);	/* hardirq context */
	if (ktime_get_ns() >= rt_deadline) {
		if (atomic_dec_and_test(&rt_running))
			wake_up(&rt_done_wq);
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(t, ns_to_ktime(50 * NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

static void rt_timer_start_here(void *unused)
{
	unsigned int cpu = smp_processor_id();

	hrtimer_init(&rt_timers[cpu], CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
	rt_timers[cpu].function = rt_timer_fn;
	hrtimer_start(&rt_timers[cpu], ns_to_ktime(50 * NSEC_PER_USEC),
		      HRTIMER_MODE_REL_PINNED_HARD);
}

int rt_stress_start(unsigned int ms)
{
	unsigned int cpu;

	if (atomic_read(&rt_running))
		return -EBUSY;
	rt_deadline = ktime_get_ns() + (u64)ms * NSEC_PER_MSEC;
	for_each_online_cpu(cpu) {
		struct task_struct *t;

		t = kthread_create_on_cpu(rt_stress_thread, (void *)(unsigned long)cpu, cpu,
					  "rsrelay_stress/%u");
		if (IS_ERR(t))
			return PTR_ERR(t);
		rt_threads[cpu] = t;
		atomic_add(2, &rt_running);
		wake_up_process(t);
		smp_call_function_single(cpu, rt_timer_start_here, NULL, 1);
	}
	return 0;
}

void rt_stress_wait(void)
{
	unsigned int cpu;

	wait_event(rt_done_wq, atomic_read(&rt_running) == 0);
	for (cpu = 0; cpu < NR_CPUS; cpu++) {
		if (rt_threads[cpu]) {
			kthread_stop(rt_threads[cpu]);
			rt_threads[cpu] = NULL;
			hrtimer_cancel(&rt_timers[cpu]);
		}
	}
}
