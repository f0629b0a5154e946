/*
 * ptyscan: lists the fds of many processes and reads their links relative to an open
 * /proc/PID/fd directory (openat + getdents64 + readlinkat), returning only the links that pass
 * the caller's pty filter. Why native: a readlink of the full path /proc/PID/fd/N makes the kernel
 * walk /proc and the pid's directory again for every fd, and those walks contend across threads;
 * readlinkat from the directory fd does not. Node has no readlinkat. Everything else about a pty
 * (stat, fdinfo, mounts) stays in TypeScript.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 8
#define MAX_NEEDLES 8
#define LINK_MAX_LEN 4096

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/* One matching link: which pid (its index in the request), which fd, and the link text. */
struct match {
  int32_t pid_index;
  int32_t fd;
  char *target;
  size_t length;
};

struct job {
  int proc_dir;
  const int32_t *pids;
  size_t first, end; /* this thread's share of pids: [first, end) */
  int32_t *status;   /* errno per pid, 0 when read */
  char **stat_texts; /* /proc/PID/stat per pid when asked for (NULL: unread, the caller reads it) */
  const char *needles[MAX_NEEDLES];
  size_t needle_count;
  struct match *matches;
  size_t match_count, match_capacity;
  int failed; /* ENOMEM */
};

/* Mirror of mayBePty (src/procfs/parse.ts): absolute, and contains one of the needles it passes in. */
static int may_be_pty(const struct job *job, const char *target) {
  if (target[0] != '/') return 0;
  for (size_t i = 0; i < job->needle_count; i++)
    if (strstr(target, job->needles[i]) != NULL) return 1;
  return 0;
}

static int add_match(struct job *job, size_t pid_index, int fd, const char *target, size_t length) {
  if (job->match_count == job->match_capacity) {
    size_t capacity = job->match_capacity ? job->match_capacity * 2 : 256;
    struct match *grown = realloc(job->matches, capacity * sizeof *grown);
    if (grown == NULL) return -1;
    job->matches = grown;
    job->match_capacity = capacity;
  }
  char *copy = malloc(length + 1);
  if (copy == NULL) return -1;
  memcpy(copy, target, length + 1);
  job->matches[job->match_count++] = (struct match){(int32_t)pid_index, fd, copy, length};
  return 0;
}

/* Reads one link; 1 when it matched, 0 when not (or closed meanwhile), -1 with errno on failure. */
static int read_link(struct job *job, size_t pid_index, int dir, const char *fd_name, int fd, char *link) {
  ssize_t length = readlinkat(dir, fd_name, link, LINK_MAX_LEN - 1);
  if (length < 0) return errno == ENOENT ? 0 : -1;
  link[length] = '\0';
  if (!may_be_pty(job, link)) return 1;
  if (add_match(job, pid_index, fd, link, (size_t)length) != 0) {
    job->failed = 1;
    errno = ENOMEM;
    return -1;
  }
  return 1;
}

/*
 * The probe (as readPtyFds in scan.ts): on Linux >= 6.2 the fd directory's st_size is the number
 * of open fds, and fd tables are dense, so reading links 0, 1, 2... until that many answered skips
 * the listing, which costs the kernel about as much as the links. 1 when done; 0 when the listing
 * is needed (old kernel, sparse table, or the table changed meanwhile), with the matches undone.
 */
static int probe_pid(struct job *job, size_t pid_index, int dir, char *link, int *error) {
  struct stat st;
  if (fstat(dir, &st) != 0) {
    *error = errno;
    return 1;
  }
  if (st.st_size <= 0) return 0;
  size_t mark = job->match_count;
  off_t seen = 0;
  int misses = 0;
  char fd_name[16];
  for (int fd = 0; seen < st.st_size; fd++) {
    if (misses >= 2) goto undo;
    snprintf(fd_name, sizeof fd_name, "%d", fd);
    int got = read_link(job, pid_index, dir, fd_name, fd, link);
    if (got < 0) {
      *error = errno;
      return 1;
    }
    if (got == 0) misses++;
    else seen++;
  }
  struct stat after;
  if (fstat(dir, &after) == 0 && after.st_size == st.st_size) return 1;
undo:
  while (job->match_count > mark) free(job->matches[--job->match_count].target);
  return 0;
}

/* /proc/PID/stat as read (one read: the kernel makes it whole), or NULL when unreadable. */
static char *read_stat(int proc_dir, int32_t pid) {
  char name[24];
  snprintf(name, sizeof name, "%d/stat", pid);
  int file = openat(proc_dir, name, O_RDONLY | O_CLOEXEC);
  if (file < 0) return NULL;
  char *text = malloc(LINK_MAX_LEN);
  ssize_t got = text ? read(file, text, LINK_MAX_LEN - 1) : -1;
  close(file);
  if (got <= 0 || got == LINK_MAX_LEN - 1) {
    free(text);
    return NULL;
  }
  text[got] = '\0';
  return text;
}

/* One process: 0 when its fd table was read, else the errno that stopped it (ENOENT: gone, EACCES: denied). */
static int scan_pid(struct job *job, size_t pid_index, char *dents, size_t dents_size, char *link) {
  char name[16];
  if (job->stat_texts != NULL) job->stat_texts[pid_index] = read_stat(job->proc_dir, job->pids[pid_index]);
  snprintf(name, sizeof name, "%d/fd", job->pids[pid_index]);
  int dir = openat(job->proc_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return errno;
  int result = 0;
  if (probe_pid(job, pid_index, dir, link, &result)) {
    close(dir);
    return result;
  }
  for (;;) {
    long got = syscall(SYS_getdents64, dir, dents, dents_size);
    if (got < 0) {
      result = errno;
      break;
    }
    if (got == 0) break;
    for (long offset = 0; offset < got;) {
      struct linux_dirent64 *entry = (struct linux_dirent64 *)(dents + offset);
      offset += entry->d_reclen;
      const char *fd_name = entry->d_name;
      if (fd_name[0] < '0' || fd_name[0] > '9') continue; /* "." and ".." */
      /* 0: closed between listing and reading, skipped */
      if (read_link(job, pid_index, dir, fd_name, atoi(fd_name), link) < 0) {
        result = errno;
        goto done;
      }
    }
  }
done:
  close(dir);
  return result;
}

static void *run_job(void *arg) {
  struct job *job = arg;
  char *dents = malloc(32768);
  char *link = malloc(LINK_MAX_LEN);
  if (dents == NULL || link == NULL) {
    job->failed = 1;
  } else {
    for (size_t i = job->first; i < job->end && !job->failed; i++) job->status[i] = scan_pid(job, i, dents, 32768, link);
  }
  free(dents);
  free(link);
  return NULL;
}

#define CHECK(call)                                             \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error(env, "PTYR_NATIVE_SCAN", #call " failed"); \
      goto cleanup;                                             \
    }                                                           \
  } while (0)

/*
 * scanFdLinks(procRoot: string, pids: Int32Array, needles: string[], threads: number, withStat?: boolean)
 *   → { status: Int32Array (errno per pid, 0 when read), pidIndex: Int32Array, fd: Int32Array, target: string[],
 *       stat?: (string | null)[] (each pid's /proc/PID/stat, read just before its fds; null when unreadable) }
 */
static napi_value scan_fd_links(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char **stat_texts = NULL;
  size_t stat_count = 0;
  napi_value result = NULL;
  char root[LINK_MAX_LEN];
  char needle_text[MAX_NEEDLES][64];
  struct job jobs[MAX_THREADS];
  size_t job_count = 0;
  int proc_dir = -1;
  memset(jobs, 0, sizeof jobs);

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "scanFdLinks(procRoot, pids, needles, threads)");
    return NULL;
  }
  size_t root_length;
  CHECK(napi_get_value_string_utf8(env, argv[0], root, sizeof root, &root_length));

  bool is_typed;
  CHECK(napi_is_typedarray(env, argv[1], &is_typed));
  napi_typedarray_type type = napi_int8_array;
  size_t pid_count = 0;
  void *pid_data = NULL;
  if (is_typed) CHECK(napi_get_typedarray_info(env, argv[1], &type, &pid_count, &pid_data, NULL, NULL));
  if (!is_typed || type != napi_int32_array) {
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "pids must be an Int32Array");
    return NULL;
  }

  uint32_t needle_count;
  CHECK(napi_get_array_length(env, argv[2], &needle_count));
  if (needle_count > MAX_NEEDLES) {
    napi_throw_range_error(env, "PTYR_NATIVE_SCAN", "too many needles");
    return NULL;
  }
  int32_t threads;
  CHECK(napi_get_value_int32(env, argv[3], &threads));
  bool with_stat = false;
  if (argc >= 5) {
    napi_valuetype kind;
    CHECK(napi_typeof(env, argv[4], &kind));
    if (kind == napi_boolean) CHECK(napi_get_value_bool(env, argv[4], &with_stat));
  }
  if (threads < 1) threads = 1;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if ((size_t)threads > pid_count) threads = pid_count > 0 ? (int32_t)pid_count : 1;

  napi_value status_buffer, status_array;
  void *status_data;
  CHECK(napi_create_arraybuffer(env, pid_count * sizeof(int32_t), &status_data, &status_buffer));
  CHECK(napi_create_typedarray(env, napi_int32_array, pid_count, status_buffer, 0, &status_array));

  if (with_stat && pid_count > 0) {
    stat_texts = calloc(pid_count, sizeof *stat_texts);
    if (stat_texts == NULL) {
      napi_throw_error(env, "PTYR_NATIVE_SCAN", "out of memory");
      goto cleanup;
    }
    stat_count = pid_count;
  }
  proc_dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc_dir < 0) {
    /* The whole root is unreadable: every pid reports why, like a per-pid open would. */
    int err = errno;
    for (size_t i = 0; i < pid_count; i++) ((int32_t *)status_data)[i] = err;
  } else {
    job_count = (size_t)threads;
    size_t share = (pid_count + job_count - 1) / job_count;
    for (size_t t = 0; t < job_count; t++) {
      struct job *job = &jobs[t];
      job->proc_dir = proc_dir;
      job->pids = pid_data;
      job->status = status_data;
      job->stat_texts = stat_texts;
      /* Interleaved shares would balance better, but contiguous ones keep each pid's work local; pids vary little. */
      job->first = t * share < pid_count ? t * share : pid_count;
      job->end = job->first + share < pid_count ? job->first + share : pid_count;
      for (uint32_t n = 0; n < needle_count; n++) {
        napi_value needle;
        CHECK(napi_get_element(env, argv[2], n, &needle));
        CHECK(napi_get_value_string_utf8(env, needle, needle_text[n], sizeof needle_text[n], NULL));
        job->needles[n] = needle_text[n];
      }
      job->needle_count = needle_count;
    }
    pthread_t tids[MAX_THREADS];
    int joinable[MAX_THREADS] = {0};
    for (size_t t = 1; t < job_count; t++) {
      if (pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0) joinable[t] = 1;
      else run_job(&jobs[t]); /* no thread to be had: this one does that share too */
    }
    run_job(&jobs[0]);
    for (size_t t = 1; t < job_count; t++)
      if (joinable[t]) pthread_join(tids[t], NULL);
  }

  for (size_t t = 0; t < job_count; t++) {
    if (jobs[t].failed) {
      napi_throw_error(env, "PTYR_NATIVE_SCAN", "out of memory while scanning fd links");
      goto cleanup;
    }
  }

  size_t total = 0;
  for (size_t t = 0; t < job_count; t++) total += jobs[t].match_count;
  napi_value index_buffer, index_array, fd_buffer, fd_array, targets;
  void *index_data, *fd_data;
  CHECK(napi_create_arraybuffer(env, total * sizeof(int32_t), &index_data, &index_buffer));
  CHECK(napi_create_typedarray(env, napi_int32_array, total, index_buffer, 0, &index_array));
  CHECK(napi_create_arraybuffer(env, total * sizeof(int32_t), &fd_data, &fd_buffer));
  CHECK(napi_create_typedarray(env, napi_int32_array, total, fd_buffer, 0, &fd_array));
  CHECK(napi_create_array_with_length(env, total, &targets));
  size_t k = 0;
  for (size_t t = 0; t < job_count; t++) {
    for (size_t m = 0; m < jobs[t].match_count; m++, k++) {
      struct match *match = &jobs[t].matches[m];
      ((int32_t *)index_data)[k] = match->pid_index;
      ((int32_t *)fd_data)[k] = match->fd;
      napi_value text;
      CHECK(napi_create_string_utf8(env, match->target, match->length, &text));
      CHECK(napi_set_element(env, targets, (uint32_t)k, text));
    }
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "status", status_array));
  CHECK(napi_set_named_property(env, result, "pidIndex", index_array));
  CHECK(napi_set_named_property(env, result, "fd", fd_array));
  CHECK(napi_set_named_property(env, result, "target", targets));
  if (with_stat) {
    napi_value stats, text;
    CHECK(napi_create_array_with_length(env, pid_count, &stats));
    for (size_t i = 0; i < pid_count; i++) {
      if (stat_texts != NULL && stat_texts[i] != NULL) CHECK(napi_create_string_utf8(env, stat_texts[i], NAPI_AUTO_LENGTH, &text));
      else CHECK(napi_get_null(env, &text));
      CHECK(napi_set_element(env, stats, (uint32_t)i, text));
    }
    CHECK(napi_set_named_property(env, result, "stat", stats));
  }

cleanup:
  for (size_t t = 0; t < job_count; t++) {
    for (size_t m = 0; m < jobs[t].match_count; m++) free(jobs[t].matches[m].target);
    free(jobs[t].matches);
  }
  for (size_t i = 0; i < stat_count; i++) free(stat_texts[i]);
  free(stat_texts);
  if (proc_dir >= 0) close(proc_dir);
  return result;
}

/* Context-aware (NAPI_MODULE_INIT), with no global state: loadable in every worker thread. */
NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "scanFdLinks", NAPI_AUTO_LENGTH, scan_fd_links, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "scanFdLinks", fn) != napi_ok) return NULL;
  return exports;
}
