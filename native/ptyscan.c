/*
 * ptyscan: reads, for many processes at once and on several threads, what one /proc pass needs of
 * each (see src/procfs/native.ts for the record it becomes): the stat text, the fd count (what the
 * steady pass compares for holders, src/procfs/scan.ts), and the fd links that pass the
 * caller's pty filter, each with a stat of its file and, for character devices, its fdinfo. Why
 * native: a readlink of the full path /proc/PID/fd/N makes the kernel walk /proc and the pid's
 * directory again for every fd, and those walks contend across threads; readlinkat from an open
 * /proc/PID/fd does not, and Node has no readlinkat. Mount tables, status, cmdline and cgroup stay
 * in TypeScript (read once per holder, not per fd).
 *
 * Cost is linear in the fds read: fds of one process naming the same file (dup'd, up to the
 * nofile limit) come back as one link with a count, not one entry each. Given the BPF finder's
 * object (ptyfinder.c), a call first asks the kernel which fds are pty ends and reads only those;
 * when the finder cannot run, it reads every link as before and says why.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ptyfinder.h"

#define MAX_THREADS 8
#define MAX_NEEDLES 8
#define PIDS_PER_TAKE 16
#define LINK_MAX_LEN 4096

/* What a call reads, per pid (the fifth argument; `true` as in older callers means STAT | LINKS). */
#define WANT_STAT 1
#define WANT_LINKS 2
#define WANT_FD_COUNT 4
#define WANT_FD_STAT 8
/* Per link in fdStat: st_dev, st_ino, st_rdev, st_mode, atime s and ns, mtime s and ns (NaN, errno when unread). */
#define FD_STAT_FIELDS 8
/* tty_index of a match that is not a ptmx master. */
#define NOT_MASTER (-2)

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
  /* With WANT_FD_STAT: stat of the file the link names (stat_errno 0), and /proc/PID/fdinfo/FD of a character device. */
  int stat_errno;
  struct stat st;
  char *fdinfo;
  /*
   * fds of the process naming this same pty end; `fd` is the first one read. A slave is known by
   * st_dev and st_ino; every master opened through one ptmx node shares that node's inode, so a
   * master is known by its tty-index too (-1 when fdinfo has none; NOT_MASTER for others).
   */
  int32_t count;
  int32_t tty_index;
};

struct job {
  int proc_dir;
  const int32_t *pids;
  size_t *next;      /* shared by the threads: the first pid index no thread has taken yet */
  size_t pid_count;
  int32_t *status;   /* errno per pid, 0 when read */
  int want;          /* WANT_* bits */
  char **stat_texts; /* /proc/PID/stat per pid when asked for (NULL: unread, the caller reads it) */
  int32_t *fd_counts; /* st_size of /proc/PID/fd per pid with WANT_FD_COUNT; -1 when unread */
  const char *needles[MAX_NEEDLES];
  size_t needle_count;
  struct match *matches;
  size_t match_count, match_capacity;
  /*
   * Open-addressing table of this pid's matches by (st_dev, st_ino): slot = match index + 1, 0
   * empty. A slot naming a match of an earlier pid (index below pid_mark) counts as empty, so
   * moving to the next pid costs nothing.
   */
  uint32_t *slots;
  size_t slot_capacity;
  size_t pid_mark;
  int failed; /* ENOMEM */
  /* From the finder, when it ran: each pid's pty fds are rows[hint_start[i] .. + hint_length[i]]. */
  const struct pty_fd_row *rows;
  const int32_t *hint_start, *hint_length;
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
  job->matches[job->match_count++] = (struct match){.pid_index = (int32_t)pid_index, .fd = fd, .target = copy, .length = length, .stat_errno = ENODATA, .count = 1, .tty_index = NOT_MASTER};
  return 0;
}

static void free_match(struct match *match) {
  free(match->target);
  free(match->fdinfo);
}

static size_t file_hash(const struct stat *st, int32_t tty_index, size_t capacity) {
  uint64_t key = ((uint64_t)st->st_dev * 0x9E3779B97F4A7C15ull) ^ (uint64_t)st->st_ino ^ ((uint64_t)(uint32_t)tty_index << 40);
  key ^= key >> 29;
  key *= 0xBF58476D1CE4E5B9ull;
  key ^= key >> 32;
  return (size_t)key & (capacity - 1);
}

/* Whether a slot holds a match of the current pid (not one of an earlier pid or one undone since). */
static int slot_live(const struct job *job, uint32_t slot) {
  return slot != 0 && slot - 1 >= job->pid_mark && slot - 1 < job->match_count;
}

/* The slot where this pty end's match of the current pid is, or the free one where it would go. */
static size_t find_slot(const struct job *job, const struct stat *st, int32_t tty_index) {
  for (size_t at = file_hash(st, tty_index, job->slot_capacity);; at = (at + 1) & (job->slot_capacity - 1)) {
    uint32_t slot = job->slots[at];
    if (!slot_live(job, slot)) return at;
    const struct match *known = &job->matches[slot - 1];
    if (known->st.st_dev == st->st_dev && known->st.st_ino == st->st_ino && known->tty_index == tty_index) return at;
  }
}

/* Keeps the table under half full for this pid's matches; -1 when out of memory. */
static int reserve_slots(struct job *job) {
  size_t live = job->match_count - job->pid_mark + 1;
  if (job->slot_capacity != 0 && live * 2 <= job->slot_capacity) return 0;
  size_t capacity = job->slot_capacity ? job->slot_capacity * 2 : 64;
  while (live * 2 > capacity) capacity *= 2;
  uint32_t *slots = calloc(capacity, sizeof *slots);
  if (slots == NULL) return -1;
  free(job->slots);
  job->slots = slots;
  job->slot_capacity = capacity;
  for (size_t m = job->pid_mark; m < job->match_count; m++) {
    if (job->matches[m].stat_errno != 0) continue;
    job->slots[find_slot(job, &job->matches[m].st, job->matches[m].tty_index)] = (uint32_t)(m + 1);
  }
  return 0;
}

/*
 * A whole small /proc file in one read, or NULL when unreadable or a page or more. Read into the
 * thread's buffer and copied at its length: a page per process held to the end of the call would be
 * 16 MB on a host of 4,000 processes.
 */
static char *read_small_file(int dir, const char *name, char *buffer) {
  int file = openat(dir, name, O_RDONLY | O_CLOEXEC);
  if (file < 0) return NULL;
  ssize_t got = read(file, buffer, LINK_MAX_LEN - 1);
  close(file);
  if (got < 0 || got == LINK_MAX_LEN - 1) return NULL;
  char *text = malloc((size_t)got + 1);
  if (text == NULL) return NULL;
  memcpy(text, buffer, (size_t)got);
  text[got] = '\0';
  return text;
}

/* /proc/PID/fdinfo/FD, which holds a master's tty-index; NULL when unreadable. */
static char *read_fdinfo(struct job *job, size_t pid_index, const char *fd_name, char *buffer) {
  char name[48];
  snprintf(name, sizeof name, "%d/fdinfo/%s", job->pids[pid_index], fd_name);
  return read_small_file(job->proc_dir, name, buffer);
}

/* The tty-index line of an fdinfo text (parseFdinfoTtyIndex in parse.ts reads it for the record; this only keys the fold). */
static int32_t fdinfo_tty_index(const char *fdinfo) {
  const char *line = fdinfo ? strstr(fdinfo, "tty-index:") : NULL;
  if (line == NULL) return -1;
  char *end;
  long index = strtol(line + strlen("tty-index:"), &end, 10);
  return end == line + strlen("tty-index:") || index < 0 || index > INT32_MAX ? -1 : (int32_t)index;
}

static int is_ptmx(const struct stat *st) {
  return S_ISCHR(st->st_mode) && major(st->st_rdev) == 5 && minor(st->st_rdev) == 2;
}

/*
 * Reads one link; 1 when it matched, 0 when not (or closed meanwhile), -1 with errno on failure.
 * With WANT_FD_STAT the file it names is stat'ed, and a master's fdinfo read (what readPtyFd in
 * scan.ts asks next, read here on the batch's threads); a link to a pty end this pid already
 * holds only adds to that match's count.
 */
static int read_link(struct job *job, size_t pid_index, int dir, const char *fd_name, int fd, char *link) {
  ssize_t length = readlinkat(dir, fd_name, link, LINK_MAX_LEN - 1);
  if (length < 0) return errno == ENOENT ? 0 : -1;
  link[length] = '\0';
  if (!may_be_pty(job, link)) return 1;
  struct stat st;
  int stat_errno = ENODATA;
  size_t at = 0;
  char *fdinfo = NULL;
  int32_t tty_index = NOT_MASTER;
  if (job->want & WANT_FD_STAT) {
    stat_errno = fstatat(dir, fd_name, &st, 0) == 0 ? 0 : errno;
    if (stat_errno == 0) {
      if (is_ptmx(&st)) {
        /* The link text is copied below: until then its buffer holds it, so fdinfo gets its own. */
        char buffer[LINK_MAX_LEN];
        fdinfo = read_fdinfo(job, pid_index, fd_name, buffer);
        tty_index = fdinfo_tty_index(fdinfo);
      }
      if (reserve_slots(job) != 0) goto oom;
      at = find_slot(job, &st, tty_index);
      if (slot_live(job, job->slots[at])) {
        job->matches[job->slots[at] - 1].count++;
        free(fdinfo);
        return 1;
      }
    }
  }
  if (add_match(job, pid_index, fd, link, (size_t)length) != 0) goto oom;
  struct match *match = &job->matches[job->match_count - 1];
  match->stat_errno = stat_errno;
  if (stat_errno == 0) {
    match->st = st;
    match->fdinfo = fdinfo;
    match->tty_index = tty_index;
    job->slots[at] = (uint32_t)job->match_count;
  }
  return 1;
oom:
  free(fdinfo);
  job->failed = 1;
  errno = ENOMEM;
  return -1;
}

/*
 * The probe: on Linux >= 6.2 the fd directory's st_size is the number
 * of open fds, and fd tables are dense, so reading links 0, 1, 2... until that many answered skips
 * the listing, which costs the kernel about as much as the links. 1 when done; 0 when the listing
 * is needed (old kernel, sparse table, or the table changed meanwhile), with the matches undone.
 * `count`: the directory's st_size, taken before any link was read.
 */
static int probe_pid(struct job *job, size_t pid_index, int dir, off_t count, char *link, int *error) {
  if (count <= 0) return 0;
  size_t mark = job->match_count;
  off_t seen = 0;
  int misses = 0;
  char fd_name[16];
  for (int fd = 0; seen < count; fd++) {
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
  if (fstat(dir, &after) == 0 && after.st_size == count) return 1;
undo:
  while (job->match_count > mark) free_match(&job->matches[--job->match_count]);
  return 0;
}

/* /proc/PID/stat as read (one read: the kernel makes it whole), or NULL when unreadable or empty. */
static char *read_stat(int proc_dir, int32_t pid, char *buffer) {
  char name[24];
  snprintf(name, sizeof name, "%d/stat", pid);
  char *text = read_small_file(proc_dir, name, buffer);
  if (text != NULL && text[0] == '\0') {
    free(text);
    return NULL;
  }
  return text;
}

/* One process: 0 when its fd table was read, else the errno that stopped it (ENOENT: gone, EACCES: denied). */
static int scan_pid(struct job *job, size_t pid_index, char *dents, size_t dents_size, char *link) {
  char name[16];
  int32_t pid = job->pids[pid_index];
  job->pid_mark = job->match_count;
  if (job->want & WANT_STAT) job->stat_texts[pid_index] = read_stat(job->proc_dir, pid, link);
  /* The finder saw no pty fd in this process: there are no links to read. */
  int links = (job->want & WANT_LINKS) && !(job->hint_start != NULL && job->hint_length[pid_index] == 0);
  snprintf(name, sizeof name, "%d/fd", pid);
  /* One stat of the fd directory serves the count and the probe's. */
  struct stat st;
  int dir = -1, dir_errno = 0;
  if (links) {
    dir = openat(job->proc_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    dir_errno = dir < 0 ? errno : fstat(dir, &st) == 0 ? 0 : errno;
  } else if (job->want & WANT_FD_COUNT) {
    dir_errno = fstatat(job->proc_dir, name, &st, 0) == 0 ? 0 : errno;
  }
  /* Counted before the links are read, so an fd opened while they are read moves the next count. */
  if (job->want & WANT_FD_COUNT) job->fd_counts[pid_index] = dir_errno == 0 ? (int32_t)st.st_size : -1;
  if (!links) return 0;
  if (dir_errno != 0) {
    if (dir >= 0) close(dir);
    return dir_errno;
  }
  int result = 0;
  if (job->hint_start != NULL) {
    /* The kernel named this pid's pty fds: each is read and checked as a listed one would be. */
    const struct pty_fd_row *row = job->rows + job->hint_start[pid_index];
    for (int32_t r = 0; r < job->hint_length[pid_index]; r++) {
      snprintf(name, sizeof name, "%d", row[r].fd);
      if (read_link(job, pid_index, dir, name, row[r].fd, link) < 0) {
        result = errno;
        break;
      }
    }
    close(dir);
    return result;
  }
  if (probe_pid(job, pid_index, dir, st.st_size, link, &result)) {
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
    /* Pids are taken a few at a time as threads come free: a thread that met big fd tables does fewer. */
    while (!job->failed) {
      size_t first = __atomic_fetch_add(job->next, PIDS_PER_TAKE, __ATOMIC_RELAXED);
      if (first >= job->pid_count) break;
      size_t end = first + PIDS_PER_TAKE < job->pid_count ? first + PIDS_PER_TAKE : job->pid_count;
      for (size_t i = first; i < end && !job->failed; i++) job->status[i] = scan_pid(job, i, dents, 32768, link);
    }
  }
  free(dents);
  free(link);
  free(job->slots);
  job->slots = NULL;
  job->slot_capacity = 0; /* a later round (run_jobs) allocates its own */
  return NULL;
}

/* texts[i] as a JS string, or null where it is NULL. */
static napi_status make_text_array(napi_env env, char **texts, size_t count, napi_value *array) {
  napi_status status = napi_create_array_with_length(env, count, array);
  for (size_t i = 0; status == napi_ok && i < count; i++) {
    napi_value text;
    status = texts != NULL && texts[i] != NULL ? napi_create_string_utf8(env, texts[i], NAPI_AUTO_LENGTH, &text) : napi_get_null(env, &text);
    if (status == napi_ok) status = napi_set_element(env, *array, (uint32_t)i, text);
  }
  return status;
}

/*
 * One call, sync or async: its arguments copied out of JS (the async one runs while JS goes on),
 * the jobs its threads run, and what they found until it becomes the answer object.
 */
struct call {
  char root[LINK_MAX_LEN];
  int32_t *pids;
  size_t pid_count;
  char needle_text[MAX_NEEDLES][64];
  uint32_t needle_count;
  int32_t threads;
  int want;
  int32_t *status;
  char **stat_texts;
  int32_t *fd_counts;
  size_t next_pid;
  /* The finder's BPF object (empty: read every link), and what came of it: used, or why not. */
  char finder_path[LINK_MAX_LEN];
  int finder_used;
  char finder_reason[256];
  struct pty_fd_row *rows;
  int32_t *hint_start, *hint_length;
  struct job jobs[MAX_THREADS];
  size_t job_count;
  napi_async_work work;
  napi_deferred deferred;
};

static void free_call(struct call *call) {
  if (call == NULL) return;
  for (size_t t = 0; t < call->job_count; t++) {
    for (size_t m = 0; m < call->jobs[t].match_count; m++) free_match(&call->jobs[t].matches[m]);
    free(call->jobs[t].matches);
  }
  for (size_t i = 0; i < call->pid_count; i++) {
    if (call->stat_texts) free(call->stat_texts[i]);
  }
  free(call->stat_texts);
  free(call->fd_counts);
  free(call->rows);
  free(call->hint_start);
  free(call->hint_length);
  free(call->status);
  free(call->pids);
  free(call);
}

#define CHECK(call)                                             \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error(env, "PTYR_NATIVE_SCAN", #call " failed"); \
      goto cleanup;                                             \
    }                                                           \
  } while (0)

/* The arguments (procRoot, pids, needles, threads, want?, finder?) copied into a new call; NULL when it threw. */
static struct call *parse_call(napi_env env, size_t argc, napi_value *argv) {
  struct call *call = calloc(1, sizeof *call);
  if (call == NULL) {
    napi_throw_error(env, "PTYR_NATIVE_SCAN", "out of memory");
    return NULL;
  }
  if (argc < 4) {
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "scanFdLinks(procRoot, pids, needles, threads)");
    goto cleanup;
  }
  size_t root_length;
  CHECK(napi_get_value_string_utf8(env, argv[0], call->root, sizeof call->root, &root_length));

  bool is_typed;
  CHECK(napi_is_typedarray(env, argv[1], &is_typed));
  napi_typedarray_type type = napi_int8_array;
  void *pid_data = NULL;
  if (is_typed) CHECK(napi_get_typedarray_info(env, argv[1], &type, &call->pid_count, &pid_data, NULL, NULL));
  if (!is_typed || type != napi_int32_array) {
    call->pid_count = 0;
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "pids must be an Int32Array");
    goto cleanup;
  }

  CHECK(napi_get_array_length(env, argv[2], &call->needle_count));
  if (call->needle_count > MAX_NEEDLES) {
    napi_throw_range_error(env, "PTYR_NATIVE_SCAN", "too many needles");
    goto cleanup;
  }
  for (uint32_t n = 0; n < call->needle_count; n++) {
    napi_value needle;
    CHECK(napi_get_element(env, argv[2], n, &needle));
    CHECK(napi_get_value_string_utf8(env, needle, call->needle_text[n], sizeof call->needle_text[n], NULL));
  }
  CHECK(napi_get_value_int32(env, argv[3], &call->threads));
  call->want = WANT_LINKS;
  if (argc >= 5) {
    napi_valuetype kind;
    CHECK(napi_typeof(env, argv[4], &kind));
    if (kind == napi_boolean) {
      bool with_stat;
      CHECK(napi_get_value_bool(env, argv[4], &with_stat));
      if (with_stat) call->want |= WANT_STAT;
    } else if (kind == napi_number) {
      int32_t bits;
      CHECK(napi_get_value_int32(env, argv[4], &bits));
      call->want = bits & (WANT_STAT | WANT_LINKS | WANT_FD_COUNT | WANT_FD_STAT);
    }
  }
  if (argc >= 6) {
    napi_valuetype kind;
    CHECK(napi_typeof(env, argv[5], &kind));
    if (kind == napi_string) CHECK(napi_get_value_string_utf8(env, argv[5], call->finder_path, sizeof call->finder_path, NULL));
  }
  if (call->threads < 1) call->threads = 1;
  if (call->threads > MAX_THREADS) call->threads = MAX_THREADS;
  if ((size_t)call->threads > call->pid_count) call->threads = call->pid_count > 0 ? (int32_t)call->pid_count : 1;

  /* At least one element each, so an empty request needs no special case. */
  size_t slots = call->pid_count > 0 ? call->pid_count : 1;
  call->pids = malloc(slots * sizeof *call->pids);
  call->status = calloc(slots, sizeof *call->status);
  call->stat_texts = calloc(slots, sizeof *call->stat_texts);
  call->fd_counts = malloc(slots * sizeof *call->fd_counts);
  if (call->pids == NULL || call->status == NULL || call->stat_texts == NULL || call->fd_counts == NULL) {
    napi_throw_error(env, "PTYR_NATIVE_SCAN", "out of memory");
    goto cleanup;
  }
  if (call->pid_count > 0) memcpy(call->pids, pid_data, call->pid_count * sizeof *call->pids);
  for (size_t i = 0; i < call->pid_count; i++) call->fd_counts[i] = -1;
  return call;
cleanup:
  free_call(call);
  return NULL;
}

/* Asks the finder for every pty fd, and points each requested pid at its rows; on failure keeps the reason. */
static void find_hints(struct call *call) {
  size_t count = 0;
  if (find_pty_fds(call->finder_path, &call->rows, &count, call->finder_reason, sizeof call->finder_reason) != 0) return;
  size_t slots = call->pid_count > 0 ? call->pid_count : 1;
  call->hint_start = calloc(slots, sizeof *call->hint_start);
  call->hint_length = calloc(slots, sizeof *call->hint_length);
  if (call->hint_start == NULL || call->hint_length == NULL) {
    snprintf(call->finder_reason, sizeof call->finder_reason, "out of memory");
    return;
  }
  for (size_t i = 0; i < call->pid_count; i++) {
    /* The first row of this pid, by bisection over rows sorted by pid. */
    size_t low = 0, high = count;
    while (low < high) {
      size_t mid = low + (high - low) / 2;
      if (call->rows[mid].pid < call->pids[i]) low = mid + 1;
      else high = mid;
    }
    size_t end = low;
    while (end < count && call->rows[end].pid == call->pids[i]) end++;
    call->hint_start[i] = (int32_t)low;
    call->hint_length[i] = (int32_t)(end - low);
  }
  call->finder_used = 1;
}

static void *find_hints_thread(void *call) {
  find_hints(call);
  return NULL;
}

/* One round of the jobs over every pid, with these WANT_* bits, on `threads` threads (this one included). */
static void run_jobs(struct call *call, int want) {
  call->next_pid = 0;
  for (size_t t = 0; t < call->job_count; t++) call->jobs[t].want = want;
  pthread_t tids[MAX_THREADS];
  int joinable[MAX_THREADS] = {0};
  for (size_t t = 1; t < call->job_count; t++) {
    if (pthread_create(&tids[t], NULL, run_job, &call->jobs[t]) == 0) joinable[t] = 1;
    else joinable[t] = 0; /* no thread to be had: the others take its pids */
  }
  run_job(&call->jobs[0]);
  for (size_t t = 1; t < call->job_count; t++)
    if (joinable[t]) pthread_join(tids[t], NULL);
}

/* The reading itself. No JS here: the async call runs it off the JS thread. */
static void run_call(struct call *call) {
  int proc_dir = open(call->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc_dir < 0) {
    /* The whole root is unreadable: every pid reports why, like a per-pid open would. */
    int err = errno;
    for (size_t i = 0; i < call->pid_count; i++) call->status[i] = err;
    return;
  }
  call->job_count = (size_t)call->threads;
  for (size_t t = 0; t < call->job_count; t++) {
    struct job *job = &call->jobs[t];
    job->proc_dir = proc_dir;
    job->pids = call->pids;
    job->status = call->status;
    job->stat_texts = call->stat_texts;
    job->fd_counts = call->fd_counts;
    job->next = &call->next_pid;
    job->pid_count = call->pid_count;
    for (uint32_t n = 0; n < call->needle_count; n++) job->needles[n] = call->needle_text[n];
    job->needle_count = call->needle_count;
  }
  if (call->finder_path[0] == '\0' || !(call->want & WANT_LINKS)) {
    run_jobs(call, call->want);
    close(proc_dir);
    return;
  }
  int links = WANT_LINKS | WANT_FD_STAT;
  /*
   * The counts first, then the kernel's walk: a pty a process opens after its count was read moves its
   * next count, and one opened before is there for the walk to see. The stat reads run beside the walk.
   */
  if (call->want & WANT_FD_COUNT) run_jobs(call, WANT_FD_COUNT);
  pthread_t finder;
  int started = pthread_create(&finder, NULL, find_hints_thread, call) == 0;
  if (!started) find_hints(call);
  if (call->want & WANT_STAT) run_jobs(call, WANT_STAT);
  if (started) pthread_join(finder, NULL);
  for (size_t t = 0; t < call->job_count && call->finder_used; t++) {
    call->jobs[t].rows = call->rows;
    call->jobs[t].hint_start = call->hint_start;
    call->jobs[t].hint_length = call->hint_length;
  }
  /* Then the links: only the fds the finder named, or every one when it could not run. */
  run_jobs(call, call->want & links);
  close(proc_dir);
}

/* What the threads found, as the answer object (see scanFdLinks below); NULL when it threw. */
static napi_value build_answer(napi_env env, struct call *call) {
  napi_value result = NULL;
  size_t pid_count = call->pid_count;
  int want = call->want;
  for (size_t t = 0; t < call->job_count; t++) {
    if (call->jobs[t].failed) {
      napi_throw_error(env, "PTYR_NATIVE_SCAN", "out of memory while scanning fd links");
      return NULL;
    }
  }
  napi_value status_buffer, status_array;
  void *status_data;
  CHECK(napi_create_arraybuffer(env, pid_count * sizeof(int32_t), &status_data, &status_buffer));
  if (pid_count > 0) memcpy(status_data, call->status, pid_count * sizeof(int32_t));
  CHECK(napi_create_typedarray(env, napi_int32_array, pid_count, status_buffer, 0, &status_array));

  size_t total = 0;
  for (size_t t = 0; t < call->job_count; t++) total += call->jobs[t].match_count;
  napi_value index_buffer, index_array, fd_buffer, fd_array, targets;
  void *index_data, *fd_data;
  CHECK(napi_create_arraybuffer(env, total * sizeof(int32_t), &index_data, &index_buffer));
  CHECK(napi_create_typedarray(env, napi_int32_array, total, index_buffer, 0, &index_array));
  CHECK(napi_create_arraybuffer(env, total * sizeof(int32_t), &fd_data, &fd_buffer));
  CHECK(napi_create_typedarray(env, napi_int32_array, total, fd_buffer, 0, &fd_array));
  CHECK(napi_create_array_with_length(env, total, &targets));
  int with_fd_stat = (want & WANT_FD_STAT) != 0;
  napi_value fd_stat_buffer = NULL, fd_stat_array = NULL, fdinfos = NULL, count_buffer = NULL, count_array = NULL;
  double *fd_stat = NULL;
  int32_t *link_counts = NULL;
  if (with_fd_stat) {
    CHECK(napi_create_arraybuffer(env, total * sizeof(int32_t), (void **)&link_counts, &count_buffer));
    CHECK(napi_create_typedarray(env, napi_int32_array, total, count_buffer, 0, &count_array));
    CHECK(napi_create_arraybuffer(env, total * FD_STAT_FIELDS * sizeof(double), (void **)&fd_stat, &fd_stat_buffer));
    CHECK(napi_create_typedarray(env, napi_float64_array, total * FD_STAT_FIELDS, fd_stat_buffer, 0, &fd_stat_array));
    CHECK(napi_create_array_with_length(env, total, &fdinfos));
  }
  size_t k = 0;
  for (size_t t = 0; t < call->job_count; t++) {
    for (size_t m = 0; m < call->jobs[t].match_count; m++, k++) {
      struct match *match = &call->jobs[t].matches[m];
      ((int32_t *)index_data)[k] = match->pid_index;
      ((int32_t *)fd_data)[k] = match->fd;
      napi_value text;
      CHECK(napi_create_string_utf8(env, match->target, match->length, &text));
      CHECK(napi_set_element(env, targets, (uint32_t)k, text));
      if (with_fd_stat) {
        link_counts[k] = match->count;
        double *row = fd_stat + k * FD_STAT_FIELDS;
        if (match->stat_errno == 0) {
          const struct stat *st = &match->st;
          double values[FD_STAT_FIELDS] = {(double)st->st_dev, (double)st->st_ino, (double)st->st_rdev, (double)st->st_mode,
                                           (double)st->st_atim.tv_sec, (double)st->st_atim.tv_nsec, (double)st->st_mtim.tv_sec, (double)st->st_mtim.tv_nsec};
          memcpy(row, values, sizeof values);
        } else {
          row[0] = NAN; /* unread: row[1] says why */
          row[1] = (double)match->stat_errno;
        }
        napi_value info;
        if (match->fdinfo != NULL) CHECK(napi_create_string_utf8(env, match->fdinfo, NAPI_AUTO_LENGTH, &info));
        else CHECK(napi_get_null(env, &info));
        CHECK(napi_set_element(env, fdinfos, (uint32_t)k, info));
      }
    }
  }
  napi_value answer;
  CHECK(napi_create_object(env, &answer));
  CHECK(napi_set_named_property(env, answer, "status", status_array));
  CHECK(napi_set_named_property(env, answer, "pidIndex", index_array));
  CHECK(napi_set_named_property(env, answer, "fd", fd_array));
  CHECK(napi_set_named_property(env, answer, "target", targets));
  if (with_fd_stat) {
    CHECK(napi_set_named_property(env, answer, "fdStat", fd_stat_array));
    CHECK(napi_set_named_property(env, answer, "fdinfo", fdinfos));
    CHECK(napi_set_named_property(env, answer, "linkCount", count_array));
  }
  if (want & WANT_STAT) {
    napi_value stats;
    CHECK(make_text_array(env, call->stat_texts, pid_count, &stats));
    CHECK(napi_set_named_property(env, answer, "stat", stats));
  }
  if (want & WANT_FD_COUNT) {
    napi_value counts_buffer, counts_array;
    void *count_data;
    CHECK(napi_create_arraybuffer(env, pid_count * sizeof(int32_t), &count_data, &counts_buffer));
    if (pid_count > 0) memcpy(count_data, call->fd_counts, pid_count * sizeof(int32_t));
    CHECK(napi_create_typedarray(env, napi_int32_array, pid_count, counts_buffer, 0, &counts_array));
    CHECK(napi_set_named_property(env, answer, "fdCount", counts_array));
  }
  if (call->finder_path[0] != '\0') {
    napi_value finder;
    CHECK(napi_create_string_utf8(env, call->finder_used ? "bpf" : call->finder_reason, NAPI_AUTO_LENGTH, &finder));
    CHECK(napi_set_named_property(env, answer, "finder", finder));
  }
  result = answer;
cleanup:
  return result;
}

/* The call's arguments, taken from JS and copied (see parse_call); NULL when it threw. */
static struct call *take_call(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, "PTYR_NATIVE_SCAN", "napi_get_cb_info failed");
    return NULL;
  }
  return parse_call(env, argc, argv);
}

/*
 * scanFdLinks(procRoot: string, pids: Int32Array, needles: string[], threads: number, want?: boolean | number, finder?: string)
 *   finder: path of the BPF object (ptyfds.bpf.o): read only the fds it names as pty ends
 *   want: WANT_* bits (true: STAT | LINKS; absent or false: LINKS)
 *   → { status: Int32Array (errno per pid of its fd directory, 0 when read or not asked), pidIndex: Int32Array, fd: Int32Array, target: string[],
 *       stat?: (string | null)[] (each pid's /proc/PID/stat, read just before its fds; null when unreadable),
 *       fdCount?: Int32Array (st_size of /proc/PID/fd with WANT_FD_COUNT, -1 when unread),
 *       fdStat?: Float64Array (FD_STAT_FIELDS per link), fdinfo?: (string | null)[] (per link, ptmx masters only),
 *       linkCount?: Int32Array (per link: the fds of its pid naming the same file, folded into it),
 *       finder?: string ("bpf" when the finder named the fds read, else why it could not: every link was read) }
 */
static napi_value scan_fd_links(napi_env env, napi_callback_info info) {
  struct call *call = take_call(env, info);
  if (call == NULL) return NULL;
  run_call(call);
  napi_value result = build_answer(env, call);
  free_call(call);
  return result;
}

static void execute_async(napi_env env, void *data) {
  run_call(data);
}

static void complete_async(napi_env env, napi_status status, void *data) {
  struct call *call = data;
  napi_value result = status == napi_ok ? build_answer(env, call) : NULL;
  if (result != NULL) {
    napi_resolve_deferred(env, call->deferred, result);
  } else {
    napi_value error = NULL;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &error);
    if (error == NULL) {
      napi_value message;
      napi_create_string_utf8(env, "native scan did not complete", NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, NULL, message, &error);
    }
    napi_reject_deferred(env, call->deferred, error);
  }
  napi_delete_async_work(env, call->work);
  free_call(call);
}

/*
 * scanFdLinksAsync(...the same arguments) → Promise of the same answer: the reading runs on a libuv
 * pool thread and its helpers, so the JS thread goes on meanwhile (the one-shot CLI loads its
 * config and asks the engine while /proc is read).
 */
static napi_value scan_fd_links_async(napi_env env, napi_callback_info info) {
  struct call *call = take_call(env, info);
  if (call == NULL) return NULL;
  napi_value promise, name;
  if (napi_create_promise(env, &call->deferred, &promise) != napi_ok) {
    free_call(call);
    napi_throw_error(env, "PTYR_NATIVE_SCAN", "napi_create_promise failed");
    return NULL;
  }
  if (napi_create_string_utf8(env, "ptyscan", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute_async, complete_async, call, &call->work) != napi_ok ||
      napi_queue_async_work(env, call->work) != napi_ok) {
    /* The promise is never settled: throw instead, and the caller never sees it. */
    free_call(call);
    napi_throw_error(env, "PTYR_NATIVE_SCAN", "cannot queue the native scan");
    return NULL;
  }
  return promise;
}

/*
 * exitNow(code): _exit(2), for a process whose scan thread is blocked in a /proc read. Node joins
 * its worker threads on every exit path (process.exit included), so such a thread would hold the
 * process until the read returns, which may be never.
 */
static napi_value exit_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t code = 1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1) napi_get_value_int32(env, argv[0], &code);
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}

/*
 * listPids(procRoot, from?, to?): the numeric entries of procRoot, ascending, as an Int32Array, read with getdents64
 * (Node's readdir makes a string per entry). With `from`, only pids from..to: the listing starts at `from` itself.
 * procfs lists process pid P at directory offset P + PROC_PID_OFFSET (TGID_OFFSET in fs/proc/base.c, the same since
 * Linux 2.6) and seeks there, so the kernel walks only the pids asked for, not the whole host; the caller checks
 * that offset against a whole listing before it relies on it (PidCursor). Throws with the errno's code when the
 * directory cannot be read.
 */
#define PROC_PID_OFFSET 258

static int compare_pids(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static napi_value list_pids(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result = NULL;
  char root[LINK_MAX_LEN];
  int32_t *pids = NULL;
  char *dents = NULL;
  int dir = -1;
  int32_t from = 0, to = INT32_MAX;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "listPids(procRoot, from?, to?)");
    return NULL;
  }
  CHECK(napi_get_value_string_utf8(env, argv[0], root, sizeof root, NULL));
  if (argc >= 2) CHECK(napi_get_value_int32(env, argv[1], &from));
  if (argc >= 3) CHECK(napi_get_value_int32(env, argv[2], &to));
  dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  size_t count = 0, capacity = from > 0 ? 256 : 4096;
  /*
   * The kernel fills the whole buffer, a dentry made for each entry: a listing from..to asks for no more entries
   * than the range holds (a pid's entry is at most 32 bytes), or it would walk on past `to` for nothing.
   */
  size_t dents_size = 65536;
  if (from > 0 && to >= from && (size_t)(to - from) < dents_size / 32 - 2) dents_size = ((size_t)(to - from) + 2) * 32;
  pids = malloc(capacity * sizeof *pids);
  dents = malloc(dents_size);
  int err = dir < 0 ? errno : (pids == NULL || dents == NULL) ? ENOMEM : 0;
  if (err == 0 && from > 0 && lseek(dir, (off_t)from + PROC_PID_OFFSET, SEEK_SET) < 0) err = errno;
  int past = 0;
  while (err == 0 && !past) {
    long got = syscall(SYS_getdents64, dir, dents, dents_size);
    if (got < 0) err = errno;
    if (got <= 0) break;
    for (long offset = 0; offset < got && err == 0;) {
      struct linux_dirent64 *entry = (struct linux_dirent64 *)(dents + offset);
      offset += entry->d_reclen;
      if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
      char *end;
      long pid = strtol(entry->d_name, &end, 10);
      if (*end != '\0' || pid <= 0 || pid > INT32_MAX || pid < from) continue;
      if (pid > to) {
        past = 1;
        break;
      }
      if (count == capacity) {
        int32_t *grown = realloc(pids, 2 * capacity * sizeof *pids);
        if (grown == NULL) {
          err = ENOMEM;
          break;
        }
        pids = grown;
        capacity *= 2;
      }
      pids[count++] = (int32_t)pid;
    }
  }
  if (err != 0) {
    char message[LINK_MAX_LEN + 64];
    snprintf(message, sizeof message, "%s: %s", strerror(err), root);
    napi_value code, text, error;
    CHECK(napi_create_string_utf8(env, err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == ENOMEM ? "ENOMEM" : "EIO", NAPI_AUTO_LENGTH, &code));
    CHECK(napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text));
    CHECK(napi_create_error(env, code, text, &error));
    CHECK(napi_set_named_property(env, error, "code", code));
    napi_throw(env, error);
    goto cleanup;
  }
  qsort(pids, count, sizeof *pids, compare_pids);
  napi_value buffer;
  void *data;
  CHECK(napi_create_arraybuffer(env, count * sizeof(int32_t), &data, &buffer));
  if (count > 0) memcpy(data, pids, count * sizeof(int32_t));
  CHECK(napi_create_typedarray(env, napi_int32_array, count, buffer, 0, &result));
cleanup:
  if (dir >= 0) close(dir);
  free(pids);
  free(dents);
  return result;
}

/*
 * statFds(procRoot, pids, fds): a stat of the file /proc/PID/fd/FD names, for each pair of the two Int32Arrays, as
 * FD_STAT_FIELDS numbers per pair in one Float64Array (the rows of scanFdLinks's fdStat); a pair that could not be
 * stat'd has NaN first and its errno second. A steady pass confirms every pty slave held this way, in one call with
 * no Stats object or Date made per slave.
 */
static napi_value stat_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result = NULL, buffer;
  char root[LINK_MAX_LEN], path[LINK_MAX_LEN + 32];
  napi_typedarray_type pid_type, fd_type;
  size_t pid_count = 0, fd_count = 0;
  void *pid_data = NULL, *fd_data = NULL;
  double *rows = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "statFds(procRoot, pids, fds)");
    return NULL;
  }
  CHECK(napi_get_value_string_utf8(env, argv[0], root, sizeof root, NULL));
  CHECK(napi_get_typedarray_info(env, argv[1], &pid_type, &pid_count, &pid_data, NULL, NULL));
  CHECK(napi_get_typedarray_info(env, argv[2], &fd_type, &fd_count, &fd_data, NULL, NULL));
  if (pid_type != napi_int32_array || fd_type != napi_int32_array || pid_count != fd_count) {
    napi_throw_type_error(env, "PTYR_NATIVE_SCAN", "statFds: pids and fds must be Int32Arrays of one length");
    return NULL;
  }
  const int32_t *pids = pid_data, *fds = fd_data;
  CHECK(napi_create_arraybuffer(env, pid_count * FD_STAT_FIELDS * sizeof(double), (void **)&rows, &buffer));
  for (size_t i = 0; i < pid_count; i++) {
    double *row = rows + i * FD_STAT_FIELDS;
    struct stat st;
    snprintf(path, sizeof path, "%s/%d/fd/%d", root, (int)pids[i], (int)fds[i]);
    if (stat(path, &st) != 0) {
      double unread[FD_STAT_FIELDS] = {NAN, (double)errno, 0, 0, 0, 0, 0, 0};
      memcpy(row, unread, sizeof unread);
      continue;
    }
    double values[FD_STAT_FIELDS] = {(double)st.st_dev, (double)st.st_ino, (double)st.st_rdev, (double)st.st_mode,
                                     (double)st.st_atim.tv_sec, (double)st.st_atim.tv_nsec, (double)st.st_mtim.tv_sec, (double)st.st_mtim.tv_nsec};
    memcpy(row, values, sizeof values);
  }
  CHECK(napi_create_typedarray(env, napi_float64_array, pid_count * FD_STAT_FIELDS, buffer, 0, &result));
cleanup:
  return result;
}

/* Context-aware (NAPI_MODULE_INIT), with no global state: loadable in every worker thread. */
NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "scanFdLinks", NAPI_AUTO_LENGTH, scan_fd_links, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "scanFdLinks", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "scanFdLinksAsync", NAPI_AUTO_LENGTH, scan_fd_links_async, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "scanFdLinksAsync", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "listPids", NAPI_AUTO_LENGTH, list_pids, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "listPids", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "statFds", NAPI_AUTO_LENGTH, stat_fds, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "statFds", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "exitNow", NAPI_AUTO_LENGTH, exit_now, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "exitNow", fn) != napi_ok) return NULL;
  return exports;
}
