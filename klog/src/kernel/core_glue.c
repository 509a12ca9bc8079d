// SPDX-License-Identifier: GPL-2.0
/*
 * klog_core.ko, C side: exports, the registry's spinlock, the debugfs directory with the
 * `control` file, and the module notifier that drops the callsites of unloading modules. The
 * logic is in klog_core.rs.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include "klog_core.h"
#include "ktext.h"

/* Implemented in Rust. */
size_t klog_control_show(char *buf, size_t cap);
int klog_control_write(const char *cmd, size_t len);
void klog_module_going(struct module *mod);

EXPORT_SYMBOL_GPL(klog_register_callsite);
EXPORT_SYMBOL_GPL(klog_emit);
EXPORT_SYMBOL_GPL(klog_register_handler);
EXPORT_SYMBOL_GPL(klog_unregister_handler);
EXPORT_SYMBOL_GPL(klog_debugfs_dir);

static DEFINE_RAW_SPINLOCK(klog_reg_spin);
static struct dentry *klog_dir;

unsigned long klog_reg_lock(void)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&klog_reg_spin, flags);
	return flags;
}

void klog_reg_unlock(unsigned long flags)
{
	raw_spin_unlock_irqrestore(&klog_reg_spin, flags);
}

unsigned long klog_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void klog_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
}

void klog_synchronize_rcu(void)
{
	/* Emitters run with interrupts off: an RCU read-side critical section. */
	synchronize_rcu();
}

bool klog_within_module(const void *addr, struct module *mod)
{
	return within_module((unsigned long)addr, mod);
}

const char *klog_module_name(const struct module *mod)
{
	return mod->name;
}

void klog_refuse_layout(const struct module *mod, u32 theirs, u32 ours)
{
	pr_err_ratelimited("klog_core: refusing the klog! callsites of module %s: built against klog layout %#x, klog_core.ko has %#x; rebuild %s against the klog sources of klog_core.ko\n",
			   mod ? mod->name : "?", theirs, ours, mod ? mod->name : "it");
}

struct dentry *klog_debugfs_dir(void)
{
	return klog_dir;
}

#define KLOG_CONTROL_CAP (256 * 1024)

static ssize_t klog_control_read(struct file *file, char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	return ktext_read(ubuf, count, ppos, KLOG_CONTROL_CAP, klog_control_show);
}

static ssize_t klog_control_write_fop(struct file *file, const char __user *ubuf, size_t count,
				      loff_t *ppos)
{
	char cmd[256];
	int ret;

	ret = ktext_copy_cmd(cmd, sizeof(cmd), ubuf, count);
	if (ret)
		return ret;
	ret = klog_control_write(cmd, count);
	return ret < 0 ? ret : count;
}

static const struct file_operations klog_control_fops = {
	.owner = THIS_MODULE,
	.read = klog_control_read,
	.write = klog_control_write_fop,
};

static int klog_module_cb(struct notifier_block *nb, unsigned long action, void *data)
{
	if (action == MODULE_STATE_GOING)
		klog_module_going(data);
	return NOTIFY_OK;
}

static struct notifier_block klog_module_nb = {
	.notifier_call = klog_module_cb,
};

struct dentry *klog_glue_init(void)
{
	klog_dir = debugfs_create_dir("klog", NULL);
	if (IS_ERR(klog_dir))
		return klog_dir;
	debugfs_create_file("control", 0600, klog_dir, NULL, &klog_control_fops);
	register_module_notifier(&klog_module_nb);
	return klog_dir;
}

void klog_glue_exit(void)
{
	unregister_module_notifier(&klog_module_nb);
	debugfs_remove(klog_dir);
}
