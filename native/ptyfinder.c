/*
 * ptyfinder: loads native/ptyfds.bpf.c's task_file iterator and reads its rows. libbpf is opened
 * with dlopen, not linked: a host without libbpf (or a build machine without its headers) keeps the
 * scan addon and reads every fd link instead. Only the handful of libbpf calls below are used, so
 * their prototypes are declared here with opaque types.
 */
#define _GNU_SOURCE
#include "ptyfinder.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bpf_object;
struct bpf_program;
struct bpf_link;
typedef int (*print_fn)(int level, const char *format, va_list args);

struct libbpf {
  struct bpf_object *(*open_file)(const char *path, const void *opts);
  int (*load)(struct bpf_object *object);
  struct bpf_program *(*find_program)(const struct bpf_object *object, const char *name);
  struct bpf_link *(*attach_iter)(const struct bpf_program *program, const void *opts);
  int (*link_fd)(const struct bpf_link *link);
  int (*iter_create)(int link_fd);
  int (*link_destroy)(struct bpf_link *link);
  void (*close)(struct bpf_object *object);
  print_fn (*set_print)(print_fn fn);
};

/* libbpf's own warnings would go to the command's stderr; the reason returned says what failed. */
static int quiet(int level, const char *format, va_list args) {
  return 0;
}

static int open_libbpf(struct libbpf *lib, char *reason, size_t reason_size) {
  void *handle = dlopen("libbpf.so.1", RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) handle = dlopen("libbpf.so", RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    snprintf(reason, reason_size, "libbpf is not installed (libbpf.so.1)");
    return -1;
  }
  struct {
    void **slot;
    const char *name;
  } symbols[] = {
      {(void **)&lib->open_file, "bpf_object__open_file"}, {(void **)&lib->load, "bpf_object__load"},
      {(void **)&lib->find_program, "bpf_object__find_program_by_name"}, {(void **)&lib->attach_iter, "bpf_program__attach_iter"},
      {(void **)&lib->link_fd, "bpf_link__fd"}, {(void **)&lib->iter_create, "bpf_iter_create"},
      {(void **)&lib->link_destroy, "bpf_link__destroy"}, {(void **)&lib->close, "bpf_object__close"},
      {(void **)&lib->set_print, "libbpf_set_print"},
  };
  for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
    *symbols[i].slot = dlsym(handle, symbols[i].name);
    if (*symbols[i].slot == NULL) {
      snprintf(reason, reason_size, "libbpf has no %s (too old)", symbols[i].name);
      return -1;
    }
  }
  /* The handle stays open: dlopen counts references, and the next call finds it loaded. */
  return 0;
}

static int by_pid_then_fd(const void *a, const void *b) {
  const struct pty_fd_row *x = a, *y = b;
  if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
  return (x->fd > y->fd) - (x->fd < y->fd);
}

/* Every row of the iterator; -1 with errno when a read fails (the caller then reads all links). */
static int read_rows(int fd, struct pty_fd_row **rows, size_t *count) {
  size_t capacity = 1024 * sizeof(struct pty_fd_row), used = 0; /* bytes */
  char *buffer = malloc(capacity);
  if (buffer == NULL) return -1;
  for (;;) {
    if (capacity - used < 4096) {
      char *grown = realloc(buffer, capacity * 2);
      if (grown == NULL) goto fail;
      buffer = grown;
      capacity *= 2;
    }
    ssize_t got = read(fd, buffer + used, capacity - used);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) goto fail;
    if (got == 0) break;
    used += (size_t)got;
  }
  *rows = (struct pty_fd_row *)buffer;
  *count = used / sizeof(struct pty_fd_row);
  qsort(*rows, *count, sizeof **rows, by_pid_then_fd);
  return 0;
fail:
  free(buffer);
  return -1;
}

int find_pty_fds(const char *object_path, struct pty_fd_row **rows, size_t *count, char *reason, size_t reason_size) {
  struct libbpf lib;
  if (open_libbpf(&lib, reason, reason_size) != 0) return -1;
  lib.set_print(quiet);
  int result = -1;
  struct bpf_link *link = NULL;
  int iter = -1;
  struct bpf_object *object = lib.open_file(object_path, NULL);
  if (object == NULL) {
    snprintf(reason, reason_size, "cannot open %s: %s", object_path, strerror(errno));
    return -1;
  }
  int err = lib.load(object);
  if (err != 0) {
    snprintf(reason, reason_size, "the kernel refused the BPF iterator: %s", strerror(err < 0 ? -err : err));
    goto done;
  }
  struct bpf_program *program = lib.find_program(object, "pty_fds");
  if (program == NULL) {
    snprintf(reason, reason_size, "%s has no pty_fds program", object_path);
    goto done;
  }
  link = lib.attach_iter(program, NULL);
  if (link == NULL) {
    snprintf(reason, reason_size, "cannot attach the BPF iterator: %s", strerror(errno));
    goto done;
  }
  iter = lib.iter_create(lib.link_fd(link));
  if (iter < 0) {
    snprintf(reason, reason_size, "cannot start the BPF iterator: %s", strerror(-iter));
    goto done;
  }
  if (read_rows(iter, rows, count) != 0) {
    snprintf(reason, reason_size, "reading the BPF iterator failed: %s", strerror(errno));
    goto done;
  }
  result = 0;
done:
  if (iter >= 0) close(iter);
  if (link != NULL) lib.link_destroy(link);
  lib.close(object);
  return result;
}
