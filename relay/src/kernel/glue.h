/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of rsrelay.ko for what Rust cannot reach directly in 6.12: static inline functions
 * and macros (interrupt flags, the CPU number, irq_work, wait queues, mutexes, user copies,
 * VMA fields). bindgen reads this header (see Kbuild); glue.c implements it.
 */
#ifndef RSRELAY_GLUE_H
#define RSRELAY_GLUE_H

#include "rsrelay.h"

struct file;
struct inode;
struct vm_area_struct;
struct vm_fault;
struct poll_table_struct;
struct iov_iter;
struct kiocb;
struct page;

/* Sleeping/waking side of one buffer: irq_work + wait queue + reader mutex. */
struct rsr_kobj;
/* chan: the channel's callback mutex (its own lock class), else a buffer's reader mutex. */
struct rsr_kobj *rsr_kobj_new(bool chan);
void rsr_kobj_free(struct rsr_kobj *k);		/* waits for a pending irq_work first */
void rsr_kobj_wake_deferred(struct rsr_kobj *k);	/* any context: irq_work if a reader sleeps */
void rsr_kobj_wake_now(struct rsr_kobj *k);		/* process context */
void rsr_kobj_poll_wait(struct rsr_kobj *k, struct file *file, struct poll_table_struct *pt);
void rsr_kobj_lock(struct rsr_kobj *k);
void rsr_kobj_unlock(struct rsr_kobj *k);

unsigned long rsr_irq_save(void);
void rsr_irq_restore(unsigned long flags);
void rsr_preempt_disable(void);
void rsr_preempt_enable(void);
unsigned int rsr_this_cpu(void);
unsigned int rsr_nr_cpu_ids(void);
bool rsr_cpu_possible(unsigned int cpu);
/* Runs fn(info) on `cpu` with interrupts off and waits (locally if cpu is offline). */
void rsr_on_cpu(unsigned int cpu, void (*fn)(void *), void *info);
unsigned long rsr_page_size(void);

/* Zeroed pages mapped contiguously (relay_alloc_buf). NULL on failure. */
void *rsr_vmap_alloc(size_t size, struct page ***pages_out, unsigned int *n_pages_out);
void rsr_vmap_free(void *mem, struct page **pages, unsigned int n_pages);

struct dentry *rsr_debugfs_create(const char *name, struct dentry *parent, umode_t mode,
				  void *data);
void rsr_debugfs_remove(struct dentry *d);
bool rsr_is_err_or_null(const void *p);

void *rsr_inode_private(struct inode *inode);
void *rsr_file_private(struct file *file);
void rsr_file_set_private(struct file *file, void *p);

/* Returns the number of bytes NOT copied. */
unsigned long rsr_copy_to_user(void *to_user, const void *from, unsigned long n);
size_t rsr_copy_to_iter(const void *from, size_t n, struct iov_iter *iter);
void rsr_iov_iter_revert(struct iov_iter *iter, size_t n);
size_t rsr_iov_iter_count(const struct iov_iter *iter);
struct file *rsr_kiocb_file(struct kiocb *iocb);

unsigned long rsr_vma_len(const struct vm_area_struct *vma);
unsigned long rsr_vma_pgoff(const struct vm_area_struct *vma);
void rsr_vma_setup(struct vm_area_struct *vma, void *buf);
void *rsr_vma_private(const struct vm_area_struct *vma);
/* Fault in page `pgoff` of `mem`: 0 or VM_FAULT_SIGBUS. */
unsigned int rsr_vmf_fault(struct vm_fault *vmf, void *mem, unsigned int n_pages);
void *rsr_vmf_private(const struct vm_fault *vmf);

#endif
