/* ptyfinder: which fds of which processes are pty ends, asked of the kernel (see ptyfinder.c). */
#ifndef PTYREAPER_PTYFINDER_H
#define PTYREAPER_PTYFINDER_H
#include <stddef.h>
#include <stdint.h>

/* One fd the kernel found to be a pty end. */
struct pty_fd_row {
  int32_t pid;
  int32_t fd;
};

/*
 * Runs the task_file iterator in the BPF object at object_path: 0 with *rows (malloc'd, sorted by
 * pid then fd) and *count, or -1 with a one-line reason (no libbpf, not permitted, kernel too old...).
 */
int find_pty_fds(const char *object_path, struct pty_fd_row **rows, size_t *count, char *reason, size_t reason_size);

#endif
