/* Only the kernel types holdfast.c uses. Structs carry preserve_access_index,
 * so field offsets are relocated (CO-RE) against the running kernel's BTF and
 * only the names here have to match; layouts need not. Map-type and flag
 * values are UAPI and stable. Keeping this small avoids committing a
 * multi-megabyte vmlinux.h. */
#ifndef HOLDFAST_VMLINUX_MIN_H
#define HOLDFAST_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef int pid_t;
typedef __u32 dev_t;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_F_NO_PREALLOC = 1,
	BPF_F_RDONLY_PROG = 128,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;
	__u32 user_ip6[4];
	__u32 user_port;
	__u32 family;
	__u32 type;
	__u32 protocol;
};

struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
};

struct __sk_buff {
	__u32 len;
	__u32 protocol;
	struct bpf_sock *sk;
};

struct qstr {
	union {
		struct {
			u32 hash;
			u32 len;
		};
		u64 hash_len;
	};
	const unsigned char *name;
};

struct super_block;

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	struct super_block *d_sb;
};

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
};

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct fs_struct {
	struct path root;
	struct path pwd;
};

struct super_block {
	dev_t s_dev;
};

struct file {
	unsigned int f_mode;
	struct inode *f_inode;
	struct path f_path;
};

/* Kernels >= 6.5: a file the kernel opens on behalf of another (overlayfs's
 * layer file) with the path the user opened. */
struct backing_file {
	struct file file;
	struct path user_path;
};

struct linux_binprm {
	struct file *file;
	const char *filename;
};

struct thread_info {
	u32 status;
};

typedef struct {
	unsigned long sig[1];
} sigset_t;

struct sigpending {
	sigset_t signal;
};

struct kernfs_node {
	u64 id;
};

struct cgroup_root {
	int hierarchy_id; /* 0: the default (v2) hierarchy */
};

struct cgroup {
	int level;
	struct kernfs_node *kn;
	struct cgroup_root *root;
	struct cgroup *ancestors[0]; /* by level, this cgroup last */
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID,
};

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live; /* threads not yet exiting */
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	unsigned long env_start;
	unsigned long env_end;
};

struct task_struct {
	struct css_set *cgroups;
	u64 start_boottime;
	struct signal_struct *signal;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct fs_struct *fs;
	struct thread_info thread_info;
	unsigned int personality;
	struct files_struct *files;
	struct sigpending pending;
	struct mm_struct *mm;
	unsigned int flags;
	struct task_struct *group_leader;
};

struct pt_regs {
	unsigned long bp;
	unsigned long bx;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct vm_area_struct {
	union {
		struct {
			unsigned long vm_start;
			unsigned long vm_end;
		};
	};
	union {
		const unsigned long vm_flags;
	};
	struct file *vm_file;
};

#pragma clang attribute pop

#endif
