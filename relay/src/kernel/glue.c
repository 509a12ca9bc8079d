// SPDX-License-Identifier: GPL-2.0
/*
 * rsrelay.ko's C side: the file_operations / vm_operations tables (the operations themselves are
 * Rust functions in rsrelay.rs), the symbol exports of the C ABI, and small helpers for static
 * inline functions and macros.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/irq_work.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/splice.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include "glue.h"

/* Implemented in Rust (rsrelay.rs). */
bool rsr_write_cpu(struct rsrelay_chan *chan, unsigned int cpu, const void *data, size_t length);
bool rsr_write_with_cpu(struct rsrelay_chan *chan, unsigned int cpu, size_t max,
			size_t (*fill)(void *ctx, void *slot, size_t max), void *ctx);
int rsr_fop_open(struct inode *inode, struct file *file);
ssize_t rsr_fop_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos);
ssize_t rsr_fop_read_iter(struct kiocb *iocb, struct iov_iter *to);
__poll_t rsr_fop_poll(struct file *file, struct poll_table_struct *pt);
int rsr_fop_mmap(struct file *file, struct vm_area_struct *vma);
int rsr_fop_release(struct inode *inode, struct file *file);
void rsr_vm_open(struct vm_area_struct *vma);
void rsr_vm_close(struct vm_area_struct *vma);
vm_fault_t rsr_vm_fault(struct vm_fault *vmf);
void rsr_fop_read_pos(struct file *file, u64 *subbuf, u64 *offset);
int rsr_fop_read_prefix(struct file *file, u64 *subbuf, u64 *offset, char __user *ubuf, u64 *len);

/* RSRELAY_IOC_READ_POS and RSRELAY_IOC_READ_PREFIX (rsrelay.h); any other command is not ours. */
static long rsr_fop_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct rsrelay_read_pos pos;
	struct rsrelay_read_prefix pre;
	int err;

	if (cmd == RSRELAY_IOC_READ_PREFIX) {
		if (copy_from_user(&pre, (void __user *)arg, sizeof(pre)))
			return -EFAULT;
		err = rsr_fop_read_prefix(file, &pre.subbuf, &pre.offset,
					  u64_to_user_ptr(pre.buf), &pre.len);
		if (err)
			return err;
		if (copy_to_user((void __user *)arg, &pre, sizeof(pre)))
			return -EFAULT;
		return 0;
	}
	if (cmd != RSRELAY_IOC_READ_POS)
		return -ENOTTY;
	rsr_fop_read_pos(file, &pos.subbuf, &pos.offset);
	if (copy_to_user((void __user *)arg, &pos, sizeof(pos)))
		return -EFAULT;
	return 0;
}

/*
 * .owner pins rsrelay.ko (the code behind these operations) while a file is open; the client
 * module that opened the channel may go away, as with the C relay.
 */
const struct file_operations rsrelay_file_operations = {
	.owner = THIS_MODULE,
	.open = rsr_fop_open,
	.read = rsr_fop_read,
	.read_iter = rsr_fop_read_iter,
	.splice_read = copy_splice_read,	/* sendfile(2): the C relay lost it in 6.8 */
	.poll = rsr_fop_poll,
	.mmap = rsr_fop_mmap,
	.release = rsr_fop_release,
	.unlocked_ioctl = rsr_fop_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	/*
	 * Not nonseekable_open() as relay.c: sendfile(2) to a regular file needs FMODE_LSEEK on the
	 * source in 6.12. The position is ignored (reads consume), so seeking is a no-op.
	 */
	.llseek = noop_llseek,
};
EXPORT_SYMBOL_GPL(rsrelay_file_operations);

static const struct vm_operations_struct rsr_vm_ops = {
	.open = rsr_vm_open,
	.close = rsr_vm_close,
	.fault = rsr_vm_fault,
};

EXPORT_SYMBOL_GPL(rsrelay_open);
EXPORT_SYMBOL_GPL(rsrelay_close);
EXPORT_SYMBOL_GPL(rsrelay_write);
EXPORT_SYMBOL_GPL(__rsrelay_write);
EXPORT_SYMBOL_GPL(rsrelay_write_with);
EXPORT_SYMBOL_GPL(__rsrelay_write_with);
EXPORT_SYMBOL_GPL(rsrelay_reserve);
EXPORT_SYMBOL_GPL(rsrelay_flush);
EXPORT_SYMBOL_GPL(rsrelay_reset);
EXPORT_SYMBOL_GPL(rsrelay_subbufs_consumed);
EXPORT_SYMBOL_GPL(rsrelay_buf_full);
EXPORT_SYMBOL_GPL(rsrelay_buf_stats);
EXPORT_SYMBOL_GPL(rsrelay_private_data);
EXPORT_SYMBOL_GPL(rsrelay_is_global);
EXPORT_SYMBOL_GPL(rsrelay_start_cpu);
EXPORT_SYMBOL_GPL(rsrelay_start_subbuf);
EXPORT_SYMBOL_GPL(rsrelay_start_prev_subbuf);
EXPORT_SYMBOL_GPL(rsrelay_start_prev_padding);
EXPORT_SYMBOL_GPL(rsrelay_start_buf_full);
EXPORT_SYMBOL_GPL(rsrelay_start_reserve);
EXPORT_SYMBOL_GPL(rsrelay_start_write);

/*
 * The write entry points disable interrupts (preemption) here, where local_irq_save is a few
 * inline instructions, and make a single call into the Rust core (relay_write is inline C).
 */
bool rsrelay_write(struct rsrelay_chan *chan, const void *data, size_t length)
{
	unsigned long flags;
	bool ret;

	local_irq_save(flags);
	ret = rsr_write_cpu(chan, raw_smp_processor_id(), data, length);
	local_irq_restore(flags);
	return ret;
}

bool rsrelay_write_with(struct rsrelay_chan *chan, size_t max,
			size_t (*fill)(void *ctx, void *slot, size_t max), void *ctx)
{
	unsigned long flags;
	bool ret;

	local_irq_save(flags);
	ret = rsr_write_with_cpu(chan, raw_smp_processor_id(), max, fill, ctx);
	local_irq_restore(flags);
	return ret;
}

bool __rsrelay_write_with(struct rsrelay_chan *chan, size_t max,
			  size_t (*fill)(void *ctx, void *slot, size_t max), void *ctx)
{
	lockdep_assert_irqs_disabled();
	return rsr_write_with_cpu(chan, raw_smp_processor_id(), max, fill, ctx);
}

bool __rsrelay_write(struct rsrelay_chan *chan, const void *data, size_t length)
{
	bool ret;

	preempt_disable();
	ret = rsr_write_cpu(chan, raw_smp_processor_id(), data, length);
	preempt_enable();
	return ret;
}

struct rsr_kobj {
	struct irq_work work;
	wait_queue_head_t wait;
	struct mutex read_mutex;
};

static void rsr_wakeup_work(struct irq_work *work)
{
	struct rsr_kobj *k = container_of(work, struct rsr_kobj, work);

	wake_up_interruptible(&k->wait);
}

struct rsr_kobj *rsr_kobj_new(bool chan)
{
	struct rsr_kobj *k = kzalloc(sizeof(*k), GFP_KERNEL);

	if (!k)
		return NULL;
	init_irq_work(&k->work, rsr_wakeup_work);
	init_waitqueue_head(&k->wait);
	/*
	 * Two lock classes for lockdep: a buffer's reader mutex is held across copy_to_user (which
	 * may take mmap_lock), the channel's mutex is taken under mmap_lock (buf_mapped/unmapped).
	 */
	if (chan)
		mutex_init(&k->read_mutex);
	else
		mutex_init(&k->read_mutex);
	return k;
}

void rsr_kobj_free(struct rsr_kobj *k)
{
	irq_work_sync(&k->work);
	mutex_destroy(&k->read_mutex);
	kfree(k);
}

void rsr_kobj_wake_deferred(struct rsr_kobj *k)
{
	/*
	 * As relay.c: waking directly could deadlock when the writer runs under the scheduler's
	 * locks, so defer to irq_work. wq_has_sleeper() has the full barrier that pairs with the
	 * reader's poll_wait() before it re-checks the buffer.
	 */
	if (wq_has_sleeper(&k->wait))
		irq_work_queue(&k->work);
}

void rsr_kobj_wake_now(struct rsr_kobj *k)
{
	wake_up_interruptible_all(&k->wait);
}

void rsr_kobj_poll_wait(struct rsr_kobj *k, struct file *file, struct poll_table_struct *pt)
{
	poll_wait(file, &k->wait, pt);
}

void rsr_kobj_lock(struct rsr_kobj *k)
{
	mutex_lock(&k->read_mutex);
}

void rsr_kobj_unlock(struct rsr_kobj *k)
{
	mutex_unlock(&k->read_mutex);
}

unsigned long rsr_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void rsr_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
}

void rsr_preempt_disable(void)
{
	preempt_disable();
}

void rsr_preempt_enable(void)
{
	preempt_enable();
}

unsigned int rsr_this_cpu(void)
{
	return smp_processor_id();
}

unsigned int rsr_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}

bool rsr_cpu_possible(unsigned int cpu)
{
	return cpu < nr_cpu_ids && cpu_possible(cpu);
}

void rsr_on_cpu(unsigned int cpu, void (*fn)(void *), void *info)
{
	unsigned long flags;

	if (smp_call_function_single(cpu, fn, info, 1) == 0)
		return;
	/* Offline: no writer can run on that CPU's buffer; run here with interrupts off. */
	local_irq_save(flags);
	fn(info);
	local_irq_restore(flags);
}

unsigned long rsr_page_size(void)
{
	return PAGE_SIZE;
}

void *rsr_vmap_alloc(size_t size, struct page ***pages_out, unsigned int *n_pages_out)
{
	unsigned int n = PAGE_ALIGN(size) >> PAGE_SHIFT, i;
	struct page **pages;
	void *mem;

	pages = kvcalloc(n, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return NULL;
	for (i = 0; i < n; i++) {
		pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!pages[i])
			goto fail;
	}
	mem = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	if (!mem)
		goto fail;
	*pages_out = pages;
	*n_pages_out = n;
	return mem;
fail:
	while (i--)
		__free_page(pages[i]);
	kvfree(pages);
	return NULL;
}

void rsr_vmap_free(void *mem, struct page **pages, unsigned int n_pages)
{
	unsigned int i;

	vunmap(mem);
	for (i = 0; i < n_pages; i++)
		__free_page(pages[i]);
	kvfree(pages);
}

struct dentry *rsr_debugfs_create(const char *name, struct dentry *parent, umode_t mode,
				  void *data)
{
	/* Not debugfs_create_file(): its proxy fops in 6.12 do not forward .mmap. */
	return debugfs_create_file_unsafe(name, mode, parent, data, &rsrelay_file_operations);
}

void rsr_debugfs_remove(struct dentry *d)
{
	debugfs_remove(d);
}

bool rsr_is_err_or_null(const void *p)
{
	return IS_ERR_OR_NULL(p);
}

void *rsr_inode_private(struct inode *inode)
{
	return inode->i_private;
}

void *rsr_file_private(struct file *file)
{
	return file->private_data;
}

void rsr_file_set_private(struct file *file, void *p)
{
	file->private_data = p;
}

unsigned long rsr_copy_to_user(void *to_user, const void *from, unsigned long n)
{
	return copy_to_user((void __user *)to_user, from, n);
}

size_t rsr_copy_to_iter(const void *from, size_t n, struct iov_iter *iter)
{
	return copy_to_iter(from, n, iter);
}

void rsr_iov_iter_revert(struct iov_iter *iter, size_t n)
{
	iov_iter_revert(iter, n);
}

size_t rsr_iov_iter_count(const struct iov_iter *iter)
{
	return iov_iter_count(iter);
}

struct file *rsr_kiocb_file(struct kiocb *iocb)
{
	return iocb->ki_filp;
}

unsigned long rsr_vma_len(const struct vm_area_struct *vma)
{
	return vma->vm_end - vma->vm_start;
}

unsigned long rsr_vma_pgoff(const struct vm_area_struct *vma)
{
	return vma->vm_pgoff;
}

void rsr_vma_setup(struct vm_area_struct *vma, void *buf)
{
	vma->vm_ops = &rsr_vm_ops;
	vm_flags_set(vma, VM_DONTEXPAND);
	vma->vm_private_data = buf;
}

void *rsr_vma_private(const struct vm_area_struct *vma)
{
	return vma->vm_private_data;
}

void *rsr_vmf_private(const struct vm_fault *vmf)
{
	return vmf->vma->vm_private_data;
}

unsigned int rsr_vmf_fault(struct vm_fault *vmf, void *mem, unsigned int n_pages)
{
	struct page *page;

	if (vmf->pgoff >= n_pages)
		return VM_FAULT_SIGBUS;
	page = vmalloc_to_page(mem + (vmf->pgoff << PAGE_SHIFT));
	if (!page)
		return VM_FAULT_SIGBUS;
	get_page(page);
	vmf->page = page;
	return 0;
}
