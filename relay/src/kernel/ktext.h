/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Text control files of this project's kernel modules (debugfs): copying a command in, and
 * rendering a text file out. Shared by the modules' C glue (static inline: each module has its
 * own copy, no exported symbols).
 */
#ifndef RSRELAY_KTEXT_H
#define RSRELAY_KTEXT_H

#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

/*
 * Copies a command written to a control file into cmd[size] (NUL-terminated). Returns 0, or
 * -EINVAL if it does not fit, -EFAULT on a bad user pointer.
 */
static inline int ktext_copy_cmd(char *cmd, size_t size, const char __user *ubuf, size_t count)
{
	if (count >= size)
		return -EINVAL;
	if (copy_from_user(cmd, ubuf, count))
		return -EFAULT;
	cmd[count] = 0;
	return 0;
}

/* A read handler's body: fill(buf, cap) renders the whole text, returning its length. */
static inline ssize_t ktext_read(char __user *ubuf, size_t count, loff_t *ppos, size_t cap,
				 size_t (*fill)(char *buf, size_t cap))
{
	char *buf = kvmalloc(cap, GFP_KERNEL);
	ssize_t ret;

	if (!buf)
		return -ENOMEM;
	ret = simple_read_from_buffer(ubuf, count, ppos, buf, fill(buf, cap));
	kvfree(buf);
	return ret;
}

#endif
