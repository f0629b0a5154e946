/*
 * ptyfds.bpf.c: the kernel side of the pty-fd finder (native/ptyfinder.c loads it). A BPF task_file
 * iterator visits every process's open files once, inside the kernel, and writes out (tgid, fd) of
 * each that is a pty end: a devpts slave (char major 136-143) or a ptmx master (char 5:2). This is
 * what a readlink of every /proc/PID/fd/N finds, without a dentry and a path per fd; the scan then
 * reads only these fds the usual way (readlinkat, stat, fdinfo), so what it reports is unchanged.
 *
 * Built with `clang -target bpf` (scripts/build-bpf.sh). The kernel types are declared here, only
 * the fields read, with preserve_access_index: libbpf relocates their offsets against the running
 * kernel's BTF when it loads the program (CO-RE), so no vmlinux.h is needed at build time.
 */
#include <linux/types.h>

#define SEC(name) __attribute__((section(name), used))
#define S_IFMT 0170000
#define S_IFCHR 0020000
#define PTMX_MAJOR 5
#define PTMX_MINOR 2
#define PTS_MAJOR_FIRST 136
#define PTS_MAJOR_LAST 143

struct seq_file;
struct bpf_iter_meta {
  struct seq_file *seq;
} __attribute__((preserve_access_index));
struct inode {
  __u16 i_mode;
  __u32 i_rdev;
} __attribute__((preserve_access_index));
struct file {
  struct inode *f_inode;
} __attribute__((preserve_access_index));
struct task_struct {
  int tgid;
} __attribute__((preserve_access_index));
struct bpf_iter__task_file {
  struct bpf_iter_meta *meta;
  struct task_struct *task;
  __u32 fd;
  struct file *file;
} __attribute__((preserve_access_index));

/* BPF_FUNC_seq_write: the helper's number is its ABI. */
static long (*bpf_seq_write)(struct seq_file *m, const void *data, __u32 len) = (void *)127;

/* bpf_seq_write is GPL-only. */
char LICENSE[] SEC("license") = "GPL";

SEC("iter/task_file")
int pty_fds(struct bpf_iter__task_file *ctx) {
  struct file *file = ctx->file;
  struct task_struct *task = ctx->task;
  if (file == 0 || task == 0) return 0;
  struct inode *inode = file->f_inode;
  if (inode == 0 || (inode->i_mode & S_IFMT) != S_IFCHR) return 0;
  /* The kernel's own dev_t: major above bit 20. */
  __u32 rdev = inode->i_rdev;
  __u32 major = rdev >> 20, minor = rdev & 0xfffff;
  int slave = major >= PTS_MAJOR_FIRST && major <= PTS_MAJOR_LAST;
  int master = major == PTMX_MAJOR && minor == PTMX_MINOR;
  if (!slave && !master) return 0;
  __u32 row[2] = {(__u32)task->tgid, ctx->fd};
  bpf_seq_write(ctx->meta->seq, row, sizeof row);
  return 0;
}
